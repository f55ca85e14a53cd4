//! Alert evaluation, in two scopes. `operation`: `operation_max_execution_time` and
//! `operation_max_retries` against one operation, on every run. `session`: the seed's
//! `monitoring.alerts` thresholds (`min_success_rate`, `max_average_retries`,
//! `max_execution_time`, `max_error_rate`) against a session's statistics, at finalize only (a
//! single operation's retry count is not the session's average). Pure:
//! no I/O, no clock, nothing sent — the alerts are data, ready for the sinks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::OperationRecord;
use super::stats::FinalStatistics;
use crate::config::notify::AlertThresholds;

/// One breached threshold. `name`, `message` and `severity` are what the sinks read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// The threshold's key: min_success_rate, max_average_retries, max_execution_time, max_error_rate.
    pub name: String,
    /// The statistic compared (success_rate, average_retry_count, execution_time, ...).
    pub metric: String,
    /// `session` or `operation`.
    pub scope: String,
    pub session_id: String,
    pub operation_id: Option<String>,
    pub operation_name: Option<String>,
    pub value: f64,
    pub threshold: f64,
    /// `below` (value under a minimum) or `above` (value over a maximum).
    pub comparison: String,
    /// `warning`, or `error` when the value is twice as far from the limit as allowed.
    pub severity: String,
    pub message: String,
}

struct Check<'a> {
    name: &'a str,
    metric: &'a str,
    value: f64,
    limit: Option<f64>,
    below: bool,
    unit: &'a str,
}

fn evaluate(checks: &[Check], mk: impl Fn(&Check, String, String) -> Alert) -> Vec<Alert> {
    let mut out = Vec::new();
    for c in checks {
        let Some(limit) = c.limit.filter(|l| l.is_finite()) else {
            continue;
        };
        let breached = if c.below {
            c.value < limit
        } else {
            c.value > limit
        };
        if !breached {
            continue;
        }
        // "error" when the value is off by more than the limit itself (e.g. twice the max time,
        // or a success rate under half the minimum): worth waking someone for.
        let severe = if c.below {
            c.value < limit / 2.0
        } else {
            c.value > limit * 2.0
        };
        let message = format!(
            "{} {}{} is {} the threshold {}{}",
            c.metric,
            c.value,
            c.unit,
            if c.below { "below" } else { "above" },
            limit,
            c.unit
        );
        out.push(mk(
            c,
            message,
            if severe { "error" } else { "warning" }.into(),
        ));
    }
    out
}

/// The operation-scope thresholds against one operation: its execution time against
/// `operation_max_execution_time`, its retries against `operation_max_retries`. The seed's four
/// are about a session and are never compared with one operation.
pub fn operation_alerts(op: &OperationRecord, t: &AlertThresholds) -> Vec<Alert> {
    let retries = f64::from(op.attempt_count.saturating_sub(1));
    let checks = [
        Check {
            name: "operation_max_execution_time",
            metric: "execution_time",
            value: op.execution_time,
            limit: t.operation_max_execution_time,
            below: false,
            unit: "s",
        },
        Check {
            name: "operation_max_retries",
            metric: "retry_count",
            value: retries,
            limit: t.operation_max_retries,
            below: false,
            unit: "",
        },
    ];
    evaluate(&checks, |c, message, severity| Alert {
        name: c.name.into(),
        metric: c.metric.into(),
        scope: "operation".into(),
        session_id: op.session_id.clone(),
        operation_id: Some(op.operation_id.clone()),
        operation_name: Some(op.operation_name.clone()),
        value: c.value,
        threshold: c.limit.unwrap_or_default(),
        comparison: if c.below { "below" } else { "above" }.into(),
        severity,
        message: format!("{}: {message}", op.operation_name),
    })
}

/// All four thresholds against a session's statistics. An empty session raises nothing.
pub fn session_alerts(session_id: &str, s: &FinalStatistics, t: &AlertThresholds) -> Vec<Alert> {
    if s.total_operations == 0 {
        return vec![];
    }
    let checks = [
        Check {
            name: "min_success_rate",
            metric: "success_rate",
            value: s.success_rate,
            limit: t.min_success_rate,
            below: true,
            unit: "%",
        },
        Check {
            name: "max_average_retries",
            metric: "average_retry_count",
            value: s.average_retry_count,
            limit: t.max_average_retries,
            below: false,
            unit: "",
        },
        Check {
            name: "max_execution_time",
            metric: "total_execution_time",
            value: s.total_execution_time,
            limit: t.max_execution_time,
            below: false,
            unit: "s",
        },
        Check {
            name: "max_error_rate",
            metric: "failure_rate",
            value: s.failure_rate,
            limit: t.max_error_rate,
            below: false,
            unit: "%",
        },
    ];
    evaluate(&checks, |c, message, severity| Alert {
        name: c.name.into(),
        metric: c.metric.into(),
        scope: "session".into(),
        session_id: session_id.into(),
        operation_id: None,
        operation_name: None,
        value: c.value,
        threshold: c.limit.unwrap_or_default(),
        comparison: if c.below { "below" } else { "above" }.into(),
        severity,
        message: format!("session {session_id}: {message}"),
    })
}

/// The four thresholds against a session's `final_statistics` given as JSON (the notifier
/// reads them from a session record that carries no alerts of its own). Missing numbers raise
/// nothing; a missing `total_operations` counts as a non-empty session.
pub fn threshold_alerts(stats: &serde_json::Value, t: &AlertThresholds) -> Vec<Alert> {
    let num = |k: &str| stats.get(k).and_then(serde_json::Value::as_f64);
    let mut s = FinalStatistics {
        total_operations: stats
            .get("total_operations")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1),
        ..Default::default()
    };
    let sid = stats
        .get("session_id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    // A number that is absent must not be compared: leave only the thresholds whose metric is there.
    let t = AlertThresholds {
        min_success_rate: t.min_success_rate.filter(|_| num("success_rate").is_some()),
        max_average_retries: t
            .max_average_retries
            .filter(|_| num("average_retry_count").is_some()),
        max_execution_time: t
            .max_execution_time
            .filter(|_| num("total_execution_time").is_some()),
        max_error_rate: t.max_error_rate.filter(|_| num("failure_rate").is_some()),
        operation_max_execution_time: None,
        operation_max_retries: None,
    };
    s.success_rate = num("success_rate").unwrap_or(0.0);
    s.average_retry_count = num("average_retry_count").unwrap_or(0.0);
    s.total_execution_time = num("total_execution_time").unwrap_or(0.0);
    s.failure_rate = num("failure_rate").unwrap_or(0.0);
    session_alerts(sid, &s, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::OperationStatus;
    use crate::record::stats::StatsAcc;
    use proptest::prelude::*;

    fn seed_thresholds() -> AlertThresholds {
        AlertThresholds {
            min_success_rate: Some(85.0),
            max_average_retries: Some(2.5),
            max_execution_time: Some(1800.0),
            max_error_rate: Some(15.0),
            ..Default::default()
        }
    }

    #[test]
    fn seed_example_breaches_success_and_error_rate() {
        let mut acc = StatsAcc::default();
        for ok in [true, true, true, true, false] {
            let st = if ok {
                OperationStatus::Completed
            } else {
                OperationStatus::Failed
            };
            acc.add(st, 1, 66.0);
        }
        let a = session_alerts("s", &acc.finish(330.0), &seed_thresholds());
        let names: Vec<_> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["min_success_rate", "max_error_rate"]);
        assert_eq!(a[0].value, 80.0);
        assert_eq!(a[0].comparison, "below");
        assert_eq!(a[0].severity, "warning");
        assert_eq!(a[1].severity, "warning");
        assert!(
            a[1].message
                .contains("failure_rate 20% is above the threshold 15%")
        );
    }

    #[test]
    fn no_thresholds_no_alerts_and_empty_sessions_are_quiet() {
        let mut acc = StatsAcc::default();
        acc.add(OperationStatus::Failed, 9, 1e9);
        assert!(session_alerts("s", &acc.finish(1.0), &AlertThresholds::default()).is_empty());
        assert!(
            session_alerts("s", &StatsAcc::default().finish(0.0), &seed_thresholds()).is_empty()
        );
    }

    proptest! {
        #[test]
        fn an_alert_means_a_breach(ok in 0u64..50, bad in 0u64..50, t in 0.0f64..100.0) {
            let mut acc = StatsAcc::default();
            for _ in 0..ok { acc.add(OperationStatus::Completed, 1, 1.0); }
            for _ in 0..bad { acc.add(OperationStatus::Failed, 2, 1.0); }
            let s = acc.finish(10.0);
            let th = AlertThresholds { min_success_rate: Some(t), max_error_rate: Some(t), ..Default::default() };
            let a = session_alerts("s", &s, &th);
            let low = a.iter().any(|a| a.name == "min_success_rate");
            let high = a.iter().any(|a| a.name == "max_error_rate");
            prop_assert_eq!(low, s.total_operations > 0 && s.success_rate < t);
            prop_assert_eq!(high, s.total_operations > 0 && s.failure_rate > t);
        }
    }
}
