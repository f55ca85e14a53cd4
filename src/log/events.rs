//! The event stream's shapes (`--events PATH|-`): one JSON object per line for each thing that
//! happens to an operation (`start`, `attempt_start`, `attempt_end`, `wait`, `guard`,
//! `notification`, `end`), and the observers the logger hands them to. Pure data: the JSON Lines
//! writer is `record::events`, the progress line `front::progress`. Observers watch; they decide
//! nothing, and they are handed only what the records may hold (already redacted).
//!
//! The shape is a contract: `{"type": ..., "time": ..., "data": {...}}`, schema
//! `schemas/retry_events.schema.json` (`retryx schema --document events`). `end` is the last
//! line of every stream, also when retryx was stopped by a signal (app::operation writes it
//! after records and notifications; the CLI, for a run that never started).

use schemars::JsonSchema;
use serde::Serialize;

use crate::classify::ErrorClass;

/// Something that watches an operation: the JSON Lines writer, the live progress line.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
    /// A log line is about to go to stderr: an observer drawing on the terminal gets out of
    /// its way until `after_log_line`.
    fn before_log_line(&self) {}
    fn after_log_line(&self) {}
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    Start(StartData),
    AttemptStart(AttemptStartData),
    AttemptEnd(AttemptEndData),
    Wait(WaitData),
    Guard(GuardData),
    Notification(NotificationData),
    End(EndData),
}

/// The operation begins (after the config was resolved and the guards were built).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StartData {
    pub operation: String,
    pub operation_id: String,
    pub session_id: String,
    pub max_attempts: u32,
    /// The command as recorded (redacted under `no_log`).
    pub command: Option<String>,
    /// Per-attempt timeout, seconds.
    pub timeout: Option<f64>,
    /// Bound on the whole operation, seconds.
    pub deadline: Option<f64>,
}

/// An attempt is about to run.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct AttemptStartData {
    pub attempt: u32,
    pub max_attempts: u32,
    /// The timeout this attempt runs under (the deadline may shorten it), seconds.
    pub timeout: Option<f64>,
}

/// An attempt ended, classified (before retryx decides whether to retry).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct AttemptEndData {
    pub attempt: u32,
    pub max_attempts: u32,
    pub status: AttemptEnd,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Cut by the per-attempt timeout (class `timeout`).
    pub timed_out: bool,
    /// The error class; none for a success.
    pub class: Option<ErrorClass>,
    /// The text that decided the class (a matched line, "exit code 1", ...).
    pub message: Option<String>,
    /// Which rule decided the class.
    pub reason: Option<String>,
    /// Seconds.
    pub duration: f64,
}

/// A wait between a failed attempt and the next one begins.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct WaitData {
    /// The attempt that failed.
    pub attempt: u32,
    pub next_attempt: u32,
    pub max_attempts: u32,
    /// Seconds.
    pub delay: f64,
    pub class: Option<ErrorClass>,
}

/// A guard did something other than let the operation through.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GuardData {
    /// The guard: circuit_breaker, bulkhead, retry_budget, adaptive, network, idempotency, ...
    pub guard: String,
    /// 0 before the first attempt.
    pub attempt: u32,
    pub decision: GuardDecision,
    pub class: Option<ErrorClass>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuardDecision {
    /// The operation or the attempt was not run (circuit open, bulkhead full).
    Refuse,
    /// Nothing to do (creates/removes, the idempotency check).
    Skip,
    /// No further attempt (budget spent, breaker opened).
    DenyRetry,
    /// Retry without waiting.
    RetryNow,
    /// The failed attempt's work turned out done: stop, successfully.
    Done,
    /// The plan was adjusted before the first attempt (adaptive retry).
    Adjust,
}

/// A notification to an external system was delivered or failed.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct NotificationData {
    pub system: String,
    /// slack, datadog, prometheus, webhook, ...
    pub kind: String,
    /// sent, failed, skipped, ...
    pub status: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    /// Redacted.
    pub error: Option<String>,
}

/// How the run ended: always the last line.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct EndData {
    pub status: EndStatus,
    /// retryx's own exit code.
    pub exit_code: i32,
    pub attempts: u32,
    /// Seconds, waits included.
    pub duration: f64,
    pub stop_reason: String,
    pub class: Option<ErrorClass>,
    /// The signal that stopped retryx, if one did.
    pub signal: Option<i32>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptEnd {
    Success,
    Failed,
    /// retryx was stopped by a signal during it.
    Aborted,
}

/// An operation's status, or `error` when none ran (bad usage or config, exit 125).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    Completed,
    Failed,
    Aborted,
    Refused,
    Skipped,
    Error,
}

impl Event {
    /// `end` of a run that never started (bad usage or config).
    pub fn not_started(exit_code: i32, reason: &str) -> Event {
        Event::End(EndData {
            status: EndStatus::Error,
            exit_code,
            attempts: 0,
            duration: 0.0,
            stop_reason: reason.to_string(),
            class: None,
            signal: None,
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Start(_) => "start",
            Event::AttemptStart(_) => "attempt_start",
            Event::AttemptEnd(_) => "attempt_end",
            Event::Wait(_) => "wait",
            Event::Guard(_) => "guard",
            Event::Notification(_) => "notification",
            Event::End(_) => "end",
        }
    }
}

/// A unit enum's serialised name (`deny_retry`).
fn snake<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The `-v` log line for an event: an attempt's exit, class and matched text; a guard's
/// decision. Other events already have their seed log line.
pub fn detail(event: &Event) -> Option<(&'static str, Vec<(&'static str, String)>)> {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    match event {
        Event::AttemptEnd(a) => Some((
            "attempt ended",
            vec![
                ("attempt", a.attempt.to_string()),
                ("status", snake(&a.status)),
                ("exit_code", opt(a.exit_code.map(|c| c.to_string()))),
                ("signal", opt(a.signal.map(|s| s.to_string()))),
                ("duration", format!("{:.3}s", a.duration)),
                ("error_type", opt(a.class.map(|c| c.to_string()))),
                ("matched", opt(a.message.clone())),
                ("rule", opt(a.reason.clone())),
            ],
        )),
        Event::Guard(g) => Some((
            "guard decision",
            vec![
                ("guard", g.guard.clone()),
                ("attempt", g.attempt.to_string()),
                ("decision", snake(&g.decision)),
                ("reason", g.reason.clone()),
            ],
        )),
        _ => None,
    }
}

/// One line of the stream, as written: the event with the wall-clock time it happened.
#[derive(Serialize, JsonSchema)]
pub struct EventLine<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    #[serde(flatten)]
    pub event: &'a Event,
}

/// The text of one line, without its newline.
pub fn line(event: &Event, at: chrono::DateTime<chrono::Utc>) -> String {
    let l = EventLine {
        time: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        event,
    };
    // Serialising plain data cannot fail; an empty object would still be one valid line.
    serde_json::to_string(&l).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_match_the_serialised_tag() {
        let e = Event::not_started(1, "x");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.type_name());
        let l: serde_json::Value = serde_json::from_str(&line(&e, chrono::Utc::now())).unwrap();
        assert_eq!(
            (l["type"].as_str(), l["data"]["status"].as_str()),
            (Some("end"), Some("error"))
        );
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
    }
}
