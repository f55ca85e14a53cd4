//! Alert evaluation against `monitoring.alerts` (seed 003): per session from the final
//! statistics, per operation where a threshold applies to one operation. Pure: no I/O.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::notify::AlertThresholds;

/// A threshold alert, ready to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// The threshold's name (`min_success_rate`, ...).
    pub name: String,
    pub message: String,
    /// `warning` or `error`.
    pub severity: String,
}

/// The seed's four thresholds against a session's `final_statistics`: success_rate below
/// `min_success_rate`, average_retry_count above `max_average_retries`, total_execution_time
/// above `max_execution_time`, failure_rate above `max_error_rate`.
pub fn threshold_alerts(stats: &Value, t: &AlertThresholds) -> Vec<Alert> {
    let num = |k: &str| stats.get(k).and_then(Value::as_f64);
    let mut out = Vec::new();
    let mut check =
        |name: &str, value: Option<f64>, limit: Option<f64>, below: bool, unit: &str| {
            if let (Some(v), Some(l)) = (value, limit) {
                let breached = if below { v < l } else { v > l };
                if breached {
                    out.push(Alert {
                        name: name.to_string(),
                        message: format!(
                            "{v}{unit} is {} the threshold {l}{unit}",
                            if below { "below" } else { "above" }
                        ),
                        severity: "warning".into(),
                    });
                }
            }
        };
    check(
        "min_success_rate",
        num("success_rate"),
        t.min_success_rate,
        true,
        "%",
    );
    check(
        "max_average_retries",
        num("average_retry_count"),
        t.max_average_retries,
        false,
        "",
    );
    check(
        "max_execution_time",
        num("total_execution_time"),
        t.max_execution_time,
        false,
        "s",
    );
    check(
        "max_error_rate",
        num("failure_rate"),
        t.max_error_rate,
        false,
        "%",
    );
    out
}

/// The thresholds that apply to one operation: its execution time against
/// `max_execution_time`, its retries against `max_average_retries`.
pub fn operation_alerts(
    operation: &str,
    execution_time: f64,
    attempt_count: u32,
    t: &AlertThresholds,
) -> Vec<Alert> {
    let mut out = Vec::new();
    if let Some(max) = t.max_execution_time
        && execution_time > max
    {
        out.push(Alert {
            name: "max_execution_time".into(),
            message: format!(
                "operation {operation} took {execution_time:.2}s, above the threshold {max}s"
            ),
            severity: "warning".into(),
        });
    }
    let retries = f64::from(attempt_count.saturating_sub(1));
    if let Some(max) = t.max_average_retries
        && retries > max
    {
        out.push(Alert {
            name: "max_average_retries".into(),
            message: format!(
                "operation {operation} needed {retries} retries, above the threshold {max}"
            ),
            severity: "warning".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_threshold_fires_only_when_crossed() {
        let t = AlertThresholds {
            min_success_rate: Some(85.0),
            max_average_retries: Some(2.5),
            max_execution_time: Some(1800.0),
            max_error_rate: Some(15.0),
        };
        let fine = json!({"success_rate": 90.0, "average_retry_count": 1.0, "total_execution_time": 10.0, "failure_rate": 10.0});
        assert!(threshold_alerts(&fine, &t).is_empty());
        let bad = json!({"success_rate": 80.0, "average_retry_count": 3.0, "total_execution_time": 2000.0, "failure_rate": 20.0});
        let names: Vec<_> = threshold_alerts(&bad, &t)
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(
            names,
            [
                "min_success_rate",
                "max_average_retries",
                "max_execution_time",
                "max_error_rate"
            ]
        );
        assert_eq!(operation_alerts("op", 2000.0, 5, &t).len(), 2);
        assert!(operation_alerts("op", 1.0, 1, &t).is_empty());
    }
}
