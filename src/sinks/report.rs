//! What a notification is about: one operation, a session, or a test message, reduced to what
//! the sinks show (`Report`), plus alerts (from the record, or the seed's thresholds against a
//! session's statistics). Pure data and conversion: no I/O here but reading the host name.

use serde::Serialize;
use serde_json::Value;

use crate::config::notify::NotifyOn;
use crate::record::stats::FinalStatistics;
use crate::record::{OperationRecord, OperationStatus};

/// What a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Operation,
    Session,
    Test,
}

// Alerts are evaluated by the records (pure logic lives there); the sinks only send them.
pub use crate::record::alerts::{Alert, threshold_alerts};

/// One attempt as the sinks need it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptPoint {
    pub number: u32,
    /// Milliseconds since the epoch when the attempt ended.
    pub end_ms: i64,
    pub execution_time: f64,
    pub succeeded: bool,
}

/// What is being notified about, already reduced to what the sinks show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub kind: ReportKind,
    pub operation: String,
    pub operation_id: Option<String>,
    pub session_id: String,
    /// `completed`, `failed`, `aborted`, `refused`, `skipped`, `test`.
    pub status: String,
    pub succeeded: bool,
    /// Operations described: 1, or a session's total.
    pub operations: u32,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub duration_secs: f64,
    pub last_error_class: Option<String>,
    pub last_error_message: Option<String>,
    pub host: String,
    /// RFC 3339.
    pub end_time: String,
    pub end_epoch: i64,
    pub attempts: Vec<AttemptPoint>,
    pub alerts: Vec<Alert>,
    /// A session's `final_statistics` (the seed's 13): the only source of its figures.
    pub statistics: Option<FinalStatistics>,
    /// What the generic webhook posts: the operation or session JSON.
    pub document: Value,
}

/// A record's `final_statistics`, read field by field: a missing or non-numeric field is 0
/// (older or hand-written records may carry only some of the 13).
fn statistics_of(v: &Value) -> FinalStatistics {
    let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let n = |k: &str| f(k).max(0.0) as u64;
    FinalStatistics {
        total_operations: n("total_operations"),
        successful_operations: n("successful_operations"),
        failed_operations: n("failed_operations"),
        retried_operations: n("retried_operations"),
        total_retry_attempts: n("total_retry_attempts"),
        average_retry_count: f("average_retry_count"),
        max_retry_count: n("max_retry_count"),
        total_execution_time: f("total_execution_time"),
        average_execution_time: f("average_execution_time"),
        success_rate: f("success_rate"),
        failure_rate: f("failure_rate"),
        retry_rate: f("retry_rate"),
        operations_per_minute: f("operations_per_minute"),
    }
}

fn epoch_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// This machine's host name (for reports built outside an operation).
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

impl Report {
    /// What the run came to, in the words every message sink uses: an operation's attempts,
    /// or a session's operations and retries (two of its statistics, not a sum of attempts).
    pub fn outcome_words(&self) -> String {
        match self.kind {
            ReportKind::Session => format!(
                "with {} operation(s) and {} retry attempt(s)",
                self.operations,
                self.attempt_count.saturating_sub(self.operations)
            ),
            _ => format!(
                "after {} of {} attempt(s)",
                self.attempt_count, self.max_attempts
            ),
        }
    }

    /// The report of one finished operation.
    pub fn from_operation(op: &OperationRecord, alerts: Vec<Alert>) -> Self {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let end_ms = epoch_ms(&op.end_time).unwrap_or(now_ms);
        let attempts = op
            .attempts
            .iter()
            .map(|a| AttemptPoint {
                number: a.attempt_number,
                end_ms: epoch_ms(&a.end_time).unwrap_or(end_ms),
                execution_time: a.execution_time,
                succeeded: a.status == crate::record::AttemptStatus::Success,
            })
            .collect();
        Report {
            kind: ReportKind::Operation,
            operation: op.operation_name.clone(),
            operation_id: Some(op.operation_id.clone()),
            session_id: op.session_id.clone(),
            status: op.status.as_str().to_string(),
            succeeded: matches!(
                op.status,
                OperationStatus::Completed | OperationStatus::Skipped
            ),
            operations: 1,
            attempt_count: op.attempt_count,
            max_attempts: op.max_attempts,
            duration_secs: op.execution_time,
            last_error_class: op.final_error_type.map(|c| c.as_str().to_string()),
            last_error_message: op.final_error_message.clone(),
            host: op.host.clone(),
            end_time: op.end_time.clone(),
            end_epoch: end_ms.div_euclid(1000),
            attempts,
            alerts,
            statistics: None,
            document: serde_json::to_value(op).unwrap_or(Value::Null),
        }
    }

    /// The message `retryx notify test` sends.
    pub fn test_message(session_id: &str) -> Self {
        let now = chrono::Utc::now();
        let end_ms = now.timestamp_millis();
        Report {
            kind: ReportKind::Test,
            operation: "retryx_notify_test".into(),
            operation_id: None,
            session_id: session_id.to_string(),
            status: "test".into(),
            succeeded: true,
            operations: 1,
            attempt_count: 1,
            max_attempts: 1,
            duration_secs: 0.0,
            last_error_class: None,
            last_error_message: None,
            host: hostname(),
            end_time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            end_epoch: end_ms.div_euclid(1000),
            attempts: vec![AttemptPoint {
                number: 1,
                end_ms,
                execution_time: 0.0,
                succeeded: true,
            }],
            alerts: vec![],
            statistics: None,
            document: serde_json::json!({
                "test": true,
                "message": "retryx notify test",
                "session_id": session_id,
                "host": hostname(),
            }),
        }
    }

    /// The report of a session record (seed "Session Statistics": `session_id`,
    /// `session_status`, `session_end`, `session_duration`, `final_statistics`), with the
    /// record's `alerts` when it has them.
    pub fn from_session(doc: &Value) -> Option<Self> {
        let session_id = doc.get("session_id")?.as_str()?.to_string();
        let stats = doc.get("final_statistics").cloned().unwrap_or(Value::Null);
        let num = |k: &str| stats.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let total = num("total_operations").max(0.0) as u32;
        let failed = num("failed_operations").max(0.0) as u32;
        let retries = num("total_retry_attempts").max(0.0) as u32;
        let now = chrono::Utc::now();
        let end_time = doc
            .get("session_end")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let end_ms = epoch_ms(&end_time).unwrap_or_else(|| now.timestamp_millis());
        let alerts = doc
            .get("alerts")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Alert::from_value).collect())
            .unwrap_or_default();
        Some(Report {
            kind: ReportKind::Session,
            operation: "session".into(),
            operation_id: None,
            session_id,
            status: doc
                .get("session_status")
                .and_then(Value::as_str)
                .unwrap_or("completed")
                .to_string(),
            succeeded: failed == 0,
            operations: total,
            attempt_count: total.saturating_add(retries),
            max_attempts: total.saturating_add(retries),
            duration_secs: doc
                .get("session_duration")
                .and_then(Value::as_f64)
                .unwrap_or_else(|| num("total_execution_time")),
            last_error_class: None,
            last_error_message: (failed > 0)
                .then(|| format!("{failed} of {total} operation(s) failed")),
            host: doc
                .get("host")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(hostname),
            end_time,
            end_epoch: end_ms.div_euclid(1000),
            attempts: vec![],
            alerts,
            statistics: Some(statistics_of(&stats)),
            document: doc.clone(),
        })
    }

    /// Which `notify_on` events this report is.
    pub fn events(&self) -> Vec<NotifyOn> {
        let mut e = Vec::new();
        if self.succeeded {
            e.push(NotifyOn::Success);
        } else {
            e.push(NotifyOn::Failure);
        }
        if self.attempt_count > 1 {
            e.push(NotifyOn::Retry);
        }
        if !self.alerts.is_empty() {
            e.push(NotifyOn::Alert);
        }
        e
    }

    #[cfg(test)]
    pub fn sample() -> Self {
        let mut r = Report::test_message("retry_1_abc");
        r.kind = ReportKind::Operation;
        r.operation = "vmware_vm_create".into();
        r.operation_id = Some("vmware_vm_create_1_abc".into());
        r.status = "failed".into();
        r.succeeded = false;
        r.attempt_count = 3;
        r.max_attempts = 3;
        r.duration_secs = 4.5;
        r.last_error_class = Some("connection_error".into());
        r.last_error_message = Some("Connection refused".into());
        r
    }
}

impl Alert {
    /// An alert as the record's alert evaluation writes it into `retry.alerts`: an object
    /// with `name` (or `alert` / `metric`), `message` and `severity`, or a plain string.
    pub fn from_value(v: &Value) -> Option<Alert> {
        if let Some(s) = v.as_str() {
            return Some(Alert {
                name: "alert".into(),
                message: s.to_string(),
                severity: "warning".into(),
                ..Default::default()
            });
        }
        let o = v.as_object()?;
        let get = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let name = get("name")
            .or_else(|| get("alert"))
            .or_else(|| get("metric"))?;
        let message = get("message").unwrap_or_else(|| v.to_string());
        let severity = get("severity").unwrap_or_else(|| "warning".into());
        Some(Alert {
            name,
            message,
            severity,
            ..Default::default()
        })
    }
}
