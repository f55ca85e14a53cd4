//! An operation's answer: `ansible.builtin.command`'s data keys (cmd, rc, stdout, ...) plus the
//! `retry` object, built from the engine's outcome; and the redaction of a `no_log` record.
//! Writes nothing, and leaves the status keys (failed, changed, msg) to the front door.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::engine::Outcome;
use crate::record::{OperationRecord, OperationStatus};

use super::{Answer, Status};
use crate::record::REDACTED;

fn ansible_time(t: &str) -> String {
    // "2023-12-01T10:00:00.123Z" -> "2023-12-01 10:00:00.123000" (ansible.builtin.command's form)
    DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

fn delta(secs: f64) -> String {
    let micros = (secs.max(0.0) * 1e6).round() as u64;
    let (s, us) = (micros / 1_000_000, micros % 1_000_000);
    format!(
        "{}:{:02}:{:02}.{:06}",
        s / 3600,
        (s % 3600) / 60,
        s % 60,
        us
    )
}

fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

/// Per-operation statistics, in the seed's vocabulary.
pub(crate) fn operation_statistics(r: &OperationRecord) -> Value {
    let mut distribution: Map<String, Value> = Map::new();
    for a in &r.attempts {
        if let Some(c) = a.error_type {
            let n = distribution
                .get(c.as_str())
                .and_then(Value::as_u64)
                .unwrap_or(0);
            distribution.insert(c.as_str().to_string(), json!(n + 1));
        }
    }
    let total_delay: f64 = r.attempts.iter().map(|a| a.delay_before_retry).sum();
    let attempt_time: f64 = r.attempts.iter().map(|a| a.execution_time).sum();
    json!({
        "attempt_count": r.attempt_count,
        "retry_count": r.attempt_count.saturating_sub(1),
        "total_delay": total_delay,
        "attempt_time": attempt_time,
        "execution_time": r.execution_time,
        "success": r.status == OperationStatus::Completed || r.status == OperationStatus::Skipped,
        "error_distribution": distribution,
    })
}

fn message(r: &OperationRecord) -> String {
    let err = match (&r.final_error_type, &r.final_error_message) {
        (Some(c), Some(m)) => format!(": {m} ({c})"),
        (Some(c), None) => format!(" ({c})"),
        _ => String::new(),
    };
    match r.status {
        OperationStatus::Completed if r.attempt_count > 1 => {
            format!("operation succeeded after {} attempts", r.attempt_count)
        }
        OperationStatus::Completed => "operation succeeded".into(),
        OperationStatus::Skipped => format!("nothing to do: {}", r.stop_reason),
        OperationStatus::Refused => format!("operation refused{err}"),
        OperationStatus::Aborted => format!("operation aborted: {}", r.stop_reason),
        OperationStatus::Failed => format!(
            "operation failed after {} attempt(s), {}{err}",
            r.attempt_count, r.stop_reason
        ),
    }
}

fn status(r: &OperationRecord) -> Status {
    match r.status {
        OperationStatus::Completed => Status::Changed,
        OperationStatus::Skipped => Status::Unchanged,
        _ => Status::Failed,
    }
}

/// The answer of an operation nobody reads the document of: status, exit code and message.
pub(crate) fn bare(outcome: &Outcome) -> Answer {
    let r = &outcome.record;
    Answer {
        status: status(r),
        exit_code: r.exit_code,
        msg: message(r),
        warnings: Vec::new(),
        data: Map::new(),
        no_log: false,
        ran: true,
    }
}

/// The answer of an operation that ran. `cmd` is the command as given (a list for argv).
pub(crate) fn operation(outcome: &Outcome, cmd: Value, no_log: bool) -> Answer {
    let r = &outcome.record;
    let (stdout, stderr) = match &outcome.last {
        Some(o) => (text(&o.stdout_tail), text(&o.stderr_tail)),
        None => (String::new(), String::new()),
    };
    let lines = |s: &str| -> Vec<String> { s.lines().map(String::from).collect() };
    let mut record = serde_json::to_value(r).unwrap_or_default();
    let attempts = record
        .get_mut("attempts")
        .map(Value::take)
        .unwrap_or_default();
    let data = json!({
        "cmd": cmd,
        "rc": r.exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_lines": lines(&stdout),
        "stderr_lines": lines(&stderr),
        "start": ansible_time(&r.start_time),
        "end": ansible_time(&r.end_time),
        "delta": delta(r.execution_time),
        "retry": {
            "session_id": r.session_id,
            "operation_id": r.operation_id,
            "operation": r.operation_name,
            "status": r.status.as_str(),
            "attempt_count": r.attempt_count,
            "max_attempts": r.max_attempts,
            "execution_time": r.execution_time,
            "stop_reason": r.stop_reason,
            "final_error_type": r.final_error_type,
            "attempts": attempts,
            "statistics": operation_statistics(r),
            "policy": r.policy,
            "jitter_seed": r.jitter_seed,
            "guards": r.guards,
            "adjustments": outcome.adjustments,
            "alerts": [],
            "notifications": [],
            "artifacts": [],
        }
    });
    Answer {
        status: status(r),
        exit_code: r.exit_code,
        msg: message(r),
        warnings: Vec::new(),
        data: match data {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        no_log,
        ran: true,
    }
}

/// Redacts an operation record in place (records written for a `no_log` task).
pub(crate) fn redact_record(r: &mut OperationRecord) {
    let hidden = || Some(REDACTED.to_string());
    if r.command.is_some() {
        r.command = hidden();
    }
    if r.context.is_some() {
        r.context = Some(json!(REDACTED));
    }
    if r.final_error_message.is_some() {
        r.final_error_message = hidden();
    }
    for a in &mut r.attempts {
        if a.error_message.is_some() {
            a.error_message = hidden();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_look_like_ansible_command() {
        assert_eq!(
            ansible_time("2023-12-01T10:00:00.123Z"),
            "2023-12-01 10:00:00.123000"
        );
        assert_eq!(delta(1.5), "0:00:01.500000");
        assert_eq!(delta(3725.25), "1:02:05.250000");
    }
}
