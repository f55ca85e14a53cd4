//! The figures a report becomes, defined once: one table per report kind (an operation's run,
//! a session, a `notify test`), each row a figure with its Datadog name and type, its Prometheus
//! family and help, and the value it takes from the report (a session's from the seed's 13
//! statistics, nothing else). Datadog, the three Prometheus sinks and the webhook all render
//! these rows, so they cannot disagree. Pure: no I/O, no clock (`now` comes in).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::prometheus;
use super::report::{Report, ReportKind};
use crate::record::stats::FinalStatistics;

/// How a figure adds up: a count of things (Datadog `count`; the textfile keeps a running
/// `_total` counter when the row names one) or a level (gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Count,
    Gauge,
}

/// A Prometheus metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromKind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: PromKind,
}

/// One figure of a report. The Prometheus gauge carries this report's value (Pushgateway,
/// remote write, textfile); the counter, when there is one, is the textfile's running total.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Short name: the key in the webhook's `metrics` object.
    pub name: &'static str,
    /// Datadog metric name.
    pub dd: &'static str,
    pub kind: MetricKind,
    /// Datadog unit.
    pub unit: Option<&'static str>,
    /// Prometheus gauge family (this report's value).
    pub gauge: Option<&'static str>,
    /// Prometheus counter family the textfile accumulates (Count rows of an operation).
    pub counter: Option<&'static str>,
    pub help: &'static str,
    pub value: fn(&Report) -> f64,
}

/// A figure with its value, as the sinks send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub dd_name: &'static str,
    pub kind: MetricKind,
    pub value: f64,
    pub dd_unit: Option<&'static str>,
}

fn stats(r: &Report) -> FinalStatistics {
    r.statistics.clone().unwrap_or_default()
}

/// One run of one operation.
pub const OPERATION: [Figure; 5] = [
    Figure {
        name: "attempts",
        dd: "retry.attempts",
        kind: MetricKind::Count,
        unit: None,
        gauge: Some("retryx_operation_attempts"),
        counter: Some("retryx_attempts_total"),
        help: "Attempts the run of the operation used.",
        value: |r| f64::from(r.attempt_count),
    },
    Figure {
        name: "retries",
        dd: "retry.retries",
        kind: MetricKind::Count,
        unit: None,
        gauge: Some("retryx_operation_retries"),
        counter: Some("retryx_retries_total"),
        help: "Retries of the run (attempts after the first).",
        value: |r| f64::from(r.attempt_count.saturating_sub(1)),
    },
    Figure {
        name: "duration",
        dd: "retry.duration",
        kind: MetricKind::Gauge,
        unit: Some("second"),
        gauge: Some("retryx_operation_duration_seconds"),
        counter: None,
        help: "Duration of the run of the operation, waits included.",
        value: |r| r.duration_secs,
    },
    Figure {
        name: "success",
        dd: "retry.success",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_operation_success"),
        counter: None,
        help: "1 if the run of the operation succeeded, else 0.",
        value: |r| if r.succeeded { 1.0 } else { 0.0 },
    },
    Figure {
        name: "operations",
        dd: "retry.operations",
        kind: MetricKind::Count,
        unit: None,
        gauge: None,
        counter: Some("retryx_operations_total"),
        help: "Runs of the operation, by final status.",
        value: |_| 1.0,
    },
];

/// A finalized session: the seed's 13 `final_statistics`, each under its own name
/// (`retry.session.<statistic>`, `retryx_session_*`), never mixed with an operation's figures.
/// All gauges, totals included: they say how the session stands, and the metrics handler or a
/// second finalize sends them again (as counts, Datadog would add the sends up).
pub const SESSION: [Figure; 13] = [
    Figure {
        name: "session.total_operations",
        dd: "retry.session.total_operations",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_operations"),
        counter: None,
        help: "Operations of the session (final_statistics.total_operations).",
        value: |r| stats(r).total_operations as f64,
    },
    Figure {
        name: "session.successful_operations",
        dd: "retry.session.successful_operations",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_successful_operations"),
        counter: None,
        help: "Operations of the session that succeeded (final_statistics.successful_operations).",
        value: |r| stats(r).successful_operations as f64,
    },
    Figure {
        name: "session.failed_operations",
        dd: "retry.session.failed_operations",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_failed_operations"),
        counter: None,
        help: "Operations of the session that failed (final_statistics.failed_operations).",
        value: |r| stats(r).failed_operations as f64,
    },
    Figure {
        name: "session.retried_operations",
        dd: "retry.session.retried_operations",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_retried_operations"),
        counter: None,
        help: "Operations of the session that needed more than one attempt (final_statistics.retried_operations).",
        value: |r| stats(r).retried_operations as f64,
    },
    Figure {
        name: "session.total_retry_attempts",
        dd: "retry.session.total_retry_attempts",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_retry_attempts"),
        counter: None,
        help: "Attempts beyond each operation's first, summed (final_statistics.total_retry_attempts).",
        value: |r| stats(r).total_retry_attempts as f64,
    },
    Figure {
        name: "session.average_retry_count",
        dd: "retry.session.average_retry_count",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_average_retry_count"),
        counter: None,
        help: "Retries per operation (final_statistics.average_retry_count).",
        value: |r| stats(r).average_retry_count,
    },
    Figure {
        name: "session.max_retry_count",
        dd: "retry.session.max_retry_count",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_max_retry_count"),
        counter: None,
        help: "Most retries of one operation (final_statistics.max_retry_count).",
        value: |r| stats(r).max_retry_count as f64,
    },
    Figure {
        name: "session.total_execution_time",
        dd: "retry.session.total_execution_time",
        kind: MetricKind::Gauge,
        unit: Some("second"),
        gauge: Some("retryx_session_execution_time_seconds"),
        counter: None,
        help: "Sum of the operations' execution times, waits included (final_statistics.total_execution_time).",
        value: |r| stats(r).total_execution_time,
    },
    Figure {
        name: "session.average_execution_time",
        dd: "retry.session.average_execution_time",
        kind: MetricKind::Gauge,
        unit: Some("second"),
        gauge: Some("retryx_session_average_execution_time_seconds"),
        counter: None,
        help: "Execution time per operation (final_statistics.average_execution_time).",
        value: |r| stats(r).average_execution_time,
    },
    Figure {
        name: "session.success_rate",
        dd: "retry.session.success_rate",
        kind: MetricKind::Gauge,
        unit: Some("percent"),
        gauge: Some("retryx_session_success_rate_percent"),
        counter: None,
        help: "Percent of the operations that succeeded (final_statistics.success_rate).",
        value: |r| stats(r).success_rate,
    },
    Figure {
        name: "session.failure_rate",
        dd: "retry.session.failure_rate",
        kind: MetricKind::Gauge,
        unit: Some("percent"),
        gauge: Some("retryx_session_failure_rate_percent"),
        counter: None,
        help: "Percent of the operations that failed (final_statistics.failure_rate).",
        value: |r| stats(r).failure_rate,
    },
    Figure {
        name: "session.retry_rate",
        dd: "retry.session.retry_rate",
        kind: MetricKind::Gauge,
        unit: Some("percent"),
        gauge: Some("retryx_session_retry_rate_percent"),
        counter: None,
        help: "Percent of the operations that were retried (final_statistics.retry_rate).",
        value: |r| stats(r).retry_rate,
    },
    Figure {
        name: "session.operations_per_minute",
        dd: "retry.session.operations_per_minute",
        kind: MetricKind::Gauge,
        unit: None,
        gauge: Some("retryx_session_operations_per_minute"),
        counter: None,
        help: "Operations per minute of session duration (final_statistics.operations_per_minute).",
        value: |r| stats(r).operations_per_minute,
    },
];

/// Name of the series `retryx notify test` writes: its own Datadog metric, Prometheus family
/// and Pushgateway job, apart from every real series.
pub const TEST_SERIES: &str = "retryx_notify_test";

/// `retryx notify test`: one gauge, apart from the real series.
pub const TEST: [Figure; 1] = [Figure {
    name: "notify_test",
    dd: "retryx.notify_test",
    kind: MetricKind::Gauge,
    unit: None,
    gauge: Some(TEST_SERIES),
    counter: None,
    help: "1: a test sample written by `retryx notify test` (not a real figure; safe to delete).",
    value: |_| 1.0,
}];

/// The table of a report kind.
pub fn figures(kind: ReportKind) -> &'static [Figure] {
    match kind {
        ReportKind::Operation => &OPERATION,
        ReportKind::Session => &SESSION,
        ReportKind::Test => &TEST,
    }
}

/// The report's figures with their values.
pub fn metrics(r: &Report) -> Vec<Metric> {
    figures(r.kind)
        .iter()
        .map(|f| Metric {
            name: f.name,
            dd_name: f.dd,
            kind: f.kind,
            value: (f.value)(r),
            dd_unit: f.unit,
        })
        .collect()
}

/// The `metrics` object the webhook adds to the document it posts: `{name: value}`.
pub fn webhook_metrics(r: &Report) -> Value {
    let m: Map<String, Value> = metrics(r)
        .into_iter()
        .map(|m| (m.name.to_string(), json!(m.value)))
        .collect();
    Value::Object(m)
}

/// Prometheus families that are details of a run, not figures of the table.
pub const RUN_DETAILS: [PromFamily; 2] = [
    PromFamily {
        name: "retryx_operation_last_run_timestamp_seconds",
        help: "When the last run of the operation ended, in seconds since the epoch.",
        kind: PromKind::Gauge,
    },
    PromFamily {
        name: "retryx_attempt_duration_seconds",
        help: "Duration of each attempt of the last run.",
        kind: PromKind::Gauge,
    },
];

fn counter_help(name: &str) -> &'static str {
    match name {
        "retryx_attempts_total" => "Attempts made, all runs of the operation.",
        "retryx_retries_total" => {
            "Retries made (attempts after the first), all runs of the operation."
        }
        _ => "Runs of the operation, by final status.",
    }
}

/// The Prometheus families a report kind writes (gauges, then run details, then counters).
pub fn families(kind: ReportKind, with_counters: bool) -> Vec<PromFamily> {
    let table = figures(kind);
    let mut out: Vec<PromFamily> = table
        .iter()
        .filter_map(|f| {
            f.gauge.map(|name| PromFamily {
                name,
                help: f.help,
                kind: PromKind::Gauge,
            })
        })
        .collect();
    if kind == ReportKind::Operation {
        out.extend(RUN_DETAILS.iter().cloned());
    }
    if with_counters {
        out.extend(table.iter().filter_map(|f| {
            f.counter.map(|name| PromFamily {
                name,
                help: counter_help(name),
                kind: PromKind::Counter,
            })
        }));
    }
    out
}

/// Every family retryx writes into the shared textfile (`retryx.prom`): what is not in this
/// list is dropped from it on the next write.
pub fn textfile_families() -> Vec<PromFamily> {
    let mut all = families(ReportKind::Operation, true);
    all.extend(families(ReportKind::Session, false));
    all
}

fn lbl(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

/// The gauge samples of a report (and, for an operation, its run details). `base` labels are
/// added to each (empty for the Pushgateway, whose grouping key carries them).
pub(super) fn gauge_samples(
    r: &Report,
    base: &[(&str, &str)],
) -> BTreeMap<&'static str, Vec<prometheus::Sample>> {
    let mut m = BTreeMap::new();
    let b = lbl(base);
    for f in figures(r.kind) {
        if let Some(name) = f.gauge {
            m.insert(name, vec![(b.clone(), (f.value)(r))]);
        }
    }
    if r.kind == ReportKind::Operation {
        m.insert(RUN_DETAILS[0].name, vec![(b.clone(), r.end_epoch as f64)]);
        let attempts = r
            .attempts
            .iter()
            .map(|a| {
                let mut l = b.clone();
                l.push(("attempt".to_string(), a.number.to_string()));
                l.sort();
                (l, a.execution_time)
            })
            .collect();
        m.insert(RUN_DETAILS[1].name, attempts);
    }
    m
}

/// This run's increments of the textfile counters (`retryx_operations_total` by status).
pub(super) fn counter_samples(
    r: &Report,
    base: &[(&str, &str)],
) -> BTreeMap<&'static str, Vec<prometheus::Sample>> {
    let mut m = BTreeMap::new();
    for f in figures(r.kind) {
        let Some(name) = f.counter else { continue };
        let mut labels = lbl(base);
        if f.name == "operations" {
            labels.push(("status".to_string(), r.status.clone()));
            labels.sort();
        }
        m.insert(name, vec![(labels, (f.value)(r))]);
    }
    m
}

/// The Pushgateway body (labels come from the grouping key).
pub fn pushgateway_body(r: &Report) -> String {
    let samples = gauge_samples(r, &[]);
    let fams: Vec<(PromFamily, Vec<prometheus::Sample>)> = families(r.kind, false)
        .into_iter()
        .map(|f| {
            let s = samples.get(f.name).cloned().unwrap_or_default();
            (f, s)
        })
        .collect();
    prometheus::exposition(&fams)
}

/// Points older than this are not sent: Datadog does not ingest points more than an hour old,
/// and Prometheus' remote-write receiver answers `out of bounds` for samples more than an hour
/// behind its head. Five minutes are kept back for delivery retries and clock skew.
pub const MAX_POINT_AGE_MS: i64 = 55 * 60 * 1000;

/// When a report's points are stamped: an operation's at the run's end (its figures are of that
/// moment); a session's and a test's at `now_ms` (a finished session's statistics are still
/// true now, however long ago it ended).
pub fn point_time_ms(r: &Report, now_ms: i64) -> i64 {
    match r.kind {
        ReportKind::Operation => r.end_epoch * 1000,
        ReportKind::Session | ReportKind::Test => now_ms,
    }
}

/// Why a report's points would be dropped by the receiver, if they would.
pub fn too_old(r: &Report, now_ms: i64) -> Option<String> {
    let at = point_time_ms(r, now_ms);
    let age = now_ms - at;
    (age > MAX_POINT_AGE_MS).then(|| {
        format!(
            "not sent: the run ended {} ago, and receivers drop points older than an hour",
            crate::config::duration::format_duration(std::time::Duration::from_secs(
                (age / 1000).max(0) as u64
            ))
        )
    })
}

/// The remote-write series and how many samples were left out as too old. An operation's
/// `retryx_operation_attempts` and `retryx_attempt_duration_seconds` are sampled at each
/// attempt's end, its other figures at the run's end; a session's figures at `now_ms`.
pub fn remote_write_series(
    r: &Report,
    job: &str,
    now_ms: i64,
) -> (Vec<prometheus::RwSeries>, usize) {
    let base = vec![
        ("instance".to_string(), r.host.clone()),
        ("job".to_string(), job.to_string()),
        ("operation".to_string(), r.operation.clone()),
    ];
    let at = point_time_ms(r, now_ms);
    let end_ms = if r.kind == ReportKind::Operation {
        r.attempts
            .iter()
            .map(|a| a.end_ms)
            .max()
            .unwrap_or(at)
            .max(at)
    } else {
        at
    };
    let mut series = Vec::new();
    for f in figures(r.kind) {
        let Some(name) = f.gauge else { continue };
        let mut samples = vec![(end_ms, (f.value)(r))];
        if r.kind == ReportKind::Operation && f.name == "attempts" && !r.attempts.is_empty() {
            samples = r
                .attempts
                .iter()
                .map(|a| (a.end_ms, f64::from(a.number)))
                .collect();
        }
        series.push(prometheus::RwSeries {
            name,
            labels: base.clone(),
            samples,
        });
    }
    if r.kind == ReportKind::Operation {
        series.push(prometheus::RwSeries {
            name: RUN_DETAILS[1].name,
            labels: base.clone(),
            samples: r
                .attempts
                .iter()
                .map(|a| (a.end_ms, a.execution_time))
                .collect(),
        });
    }
    let oldest = now_ms - MAX_POINT_AGE_MS;
    let mut dropped = 0;
    for s in &mut series {
        let before = s.samples.len();
        s.samples.retain(|(t, _)| *t >= oldest);
        dropped += before - s.samples.len();
    }
    (series, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Report {
        // The seed's "Session Statistics" example.
        let doc = json!({
            "session_id": "retry_1640995200_123456",
            "session_status": "completed",
            "session_end": "2023-12-01T10:05:30Z",
            "session_duration": 330,
            "final_statistics": {
                "total_operations": 5, "successful_operations": 4, "failed_operations": 1,
                "retried_operations": 2, "total_retry_attempts": 3, "average_retry_count": 0.6,
                "max_retry_count": 2, "total_execution_time": 330, "average_execution_time": 66,
                "success_rate": 80.0, "failure_rate": 20.0, "retry_rate": 40.0,
                "operations_per_minute": 0.91
            }
        });
        Report::from_session(&doc).unwrap_or_else(Report::sample)
    }

    #[test]
    fn session_figures_are_the_statistics() {
        let r = session();
        let stats = json!({
            "total_operations": 5, "successful_operations": 4, "failed_operations": 1,
            "retried_operations": 2, "total_retry_attempts": 3, "average_retry_count": 0.6,
            "max_retry_count": 2, "total_execution_time": 330.0, "average_execution_time": 66.0,
            "success_rate": 80.0, "failure_rate": 20.0, "retry_rate": 40.0,
            "operations_per_minute": 0.91
        });
        let m = metrics(&r);
        assert_eq!(m.len(), 13);
        for x in &m {
            let key = x.name.trim_start_matches("session.");
            assert_eq!(Some(x.value), stats[key].as_f64(), "{key}");
            assert_eq!(x.dd_name, format!("retry.{}", x.name));
        }
        // Not an operation's figures: no retry.retries 7, no retry.success 0.
        assert!(!m.iter().any(|x| x.dd_name == "retry.retries"));
        let hook = webhook_metrics(&r);
        assert_eq!(hook["session.total_retry_attempts"], 3.0);
        let samples = gauge_samples(&r, &[]);
        assert_eq!(samples["retryx_session_retry_attempts"][0].1, 3.0);
        assert_eq!(samples["retryx_session_operations"][0].1, 5.0);
        assert!(counter_samples(&r, &[]).is_empty());
    }

    #[test]
    fn old_points_are_dropped_and_sessions_stamped_now() {
        let now = 1_800_000_000_000;
        let mut op = Report::sample();
        op.end_epoch = now / 1000 - 3 * 3600;
        for a in &mut op.attempts {
            a.end_ms = op.end_epoch * 1000;
        }
        assert!(too_old(&op, now).is_some_and(|w| w.contains("3h")));
        let (series, dropped) = remote_write_series(&op, "retryx", now);
        assert!(dropped > 0 && series.iter().all(|s| s.samples.is_empty()));
        let s = session();
        assert!(too_old(&s, now).is_none());
        let (series, dropped) = remote_write_series(&s, "retryx", now);
        assert_eq!(dropped, 0);
        assert_eq!(series.len(), SESSION.len());
        assert!(
            series
                .iter()
                .all(|x| x.samples == vec![(now, x.samples[0].1)])
        );
    }

    #[test]
    fn every_family_is_named_once() {
        let mut names: Vec<&str> = textfile_families().iter().map(|f| f.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(!names.contains(&TEST_SERIES));
    }
}
