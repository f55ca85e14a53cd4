//! The records: the seed's per-attempt and "Operation Details" shapes, and the ids that name
//! them. Shapes and naming are pure; writing them to disk lives in `store`, statistics in
//! `stats`, alert evaluation in `alerts`, pictures in `render`, the event stream in `events`.

pub mod alerts;
pub(crate) mod events;
pub mod render;
pub mod stats;
pub mod store;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::classify::ErrorClass;

/// What Ansible shows in place of a value hidden by `no_log` (results and records alike).
pub(crate) const REDACTED: &str = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER";

/// How one attempt ended (seed: "success" / "failed").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Success,
    Failed,
    /// retryx was stopped by a signal during this attempt.
    Aborted,
}

/// One attempt, the seed's per-attempt shape plus retryx's additions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptRecord {
    pub attempt_number: u32,
    pub start_time: String,
    pub end_time: String,
    pub status: AttemptStatus,
    pub error_type: Option<ErrorClass>,
    pub error_message: Option<String>,
    pub should_retry: bool,
    /// Seconds waited after this attempt before the next one (0 when none follows).
    pub delay_before_retry: f64,
    /// Seconds.
    pub execution_time: f64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Which rule decided whether to retry.
    pub retry_reason: Option<String>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Download operations only: what this attempt moved over the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadAttempt>,
    /// The class whose `class_overrides` entry set the wait after this attempt (and the limits
    /// from then on); absent when the operation's own policy did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_class: Option<ErrorClass>,
    /// Operations of Ansible tasks (`retry_tasks`) only: the name of the task that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_task: Option<String>,
}

/// Per-attempt facts of a download (`action: download`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DownloadAttempt {
    /// Body bytes received in this attempt (kept or not).
    pub bytes_transferred: u64,
    /// The byte offset this attempt asked to resume from (0: from the start).
    pub resumed_from: u64,
    /// The HTTP status the server answered, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The server sent the whole file again (Range ignored, or the file changed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted: bool,
}

/// How the operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Succeeded (seed: "completed").
    Completed,
    Failed,
    /// Stopped by a signal.
    Aborted,
    /// A guard refused to run it (circuit open, bulkhead full).
    Refused,
    /// Nothing to do: `creates`/`removes` or the idempotency check said it is done.
    Skipped,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Refused => "refused",
            Self::Skipped => "skipped",
        }
    }
}

/// The seed's "Operation Details" plus retryx's additions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OperationRecord {
    pub operation_id: String,
    pub operation_name: String,
    pub session_id: String,
    pub start_time: String,
    pub end_time: String,
    pub status: OperationStatus,
    pub attempt_count: u32,
    pub max_attempts: u32,
    /// Seconds, waits included.
    pub execution_time: f64,
    pub attempts: Vec<AttemptRecord>,
    /// The exit code retryx gives for this operation.
    pub exit_code: i32,
    pub final_error_type: Option<ErrorClass>,
    pub final_error_message: Option<String>,
    /// Why the loop stopped (success, not retryable, max attempts, deadline, guard, signal).
    pub stop_reason: String,
    /// The command as run (redacted under no_log).
    pub command: Option<String>,
    /// The caller's context (the role's retry_component_context), recorded as given.
    pub context: Option<serde_json::Value>,
    pub host: String,
    /// The policy applied, after any adaptive adjustment.
    pub policy: serde_json::Value,
    /// The jitter seed used: give it back with --jitter-seed to replay the same waits.
    pub jitter_seed: u64,
    /// What each guard saw and did.
    pub guards: serde_json::Map<String, serde_json::Value>,
}

/// A name made safe to be part of a file name: `[A-Za-z0-9_.-]`, at most 64 characters, never
/// `.`/`..`, never empty.
pub fn sanitize_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    while s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.is_empty() {
        s.push_str("operation");
    }
    s
}

/// A record id made safe as part of a file name: `[A-Za-z0-9_.-]`, at most 128 characters,
/// never starting with `.`, never empty. Ids we make pass through unchanged.
pub fn sanitize_file_part(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    while s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.is_empty() {
        s.push_str("operation");
    }
    s
}

fn random_part() -> String {
    let u = crate::sys::entropy::uuid_v4().simple().to_string();
    u[..16].to_string()
}

/// `retry_<epoch>_<random>` (seed style; the uuid part makes it unique).
pub fn new_session_id(epoch: i64) -> String {
    format!("retry_{epoch}_{}", random_part())
}

/// `<operation>_<epoch>_<random>`.
pub fn new_operation_id(operation: &str, epoch: i64) -> String {
    format!("{}_{epoch}_{}", sanitize_name(operation), random_part())
}

/// RFC 3339 in UTC with milliseconds, as the seed's records show times.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_safe_file_names() {
        for (name, want) in [
            ("../../etc/passwd", "_._.._etc_passwd"),
            ("a\0b\nc", "a_b_c"),
            ("", "operation"),
            ("..", "_."),
            ("vmware_vm_create", "vmware_vm_create"),
        ] {
            assert_eq!(sanitize_name(name), want);
        }
        assert_eq!(sanitize_name(&"x".repeat(300)).len(), 64);
        let id = new_operation_id("../../etc/passwd", 1);
        assert!(!id.contains('/'));
    }

    #[test]
    fn ids_are_seed_style_and_unique() {
        let a = new_session_id(1640995200);
        let b = new_session_id(1640995200);
        assert!(a.starts_with("retry_1640995200_"));
        assert_ne!(a, b);
    }
}
