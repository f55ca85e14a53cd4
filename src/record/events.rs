//! The event stream (`--events PATH|-`): one JSON object per line for each thing that happens to
//! an operation (`start`, `attempt_start`, `attempt_end`, `wait`, `guard`, `notification`,
//! `end`), written and flushed as it happens, for CI systems, dashboards and wrappers (ripgrep's
//! `--json` is the model). Observers watch; they decide nothing, and they are handed only what
//! the records may hold (already redacted), so no secret can reach a line.
//!
//! The shape is a contract: `{"type": ..., "time": ..., "data": {...}}`, schema
//! `schemas/retry_events.schema.json` (`retryx schema --document events`). `end` is the last
//! line of every stream, also when retryx was stopped by a signal: the front door writes it
//! after records and notifications, so nothing follows it.

use std::io::Write;
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::Serialize;

use super::{AttemptRecord, AttemptStatus, OperationStatus};
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
    pub status: AttemptStatus,
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

impl From<OperationStatus> for EndStatus {
    fn from(s: OperationStatus) -> Self {
        match s {
            OperationStatus::Completed => EndStatus::Completed,
            OperationStatus::Failed => EndStatus::Failed,
            OperationStatus::Aborted => EndStatus::Aborted,
            OperationStatus::Refused => EndStatus::Refused,
            OperationStatus::Skipped => EndStatus::Skipped,
        }
    }
}

impl Event {
    /// `attempt_end` from the attempt's record; `stopped` when a stop request cut it.
    pub fn attempt_end(r: &AttemptRecord, max_attempts: u32, stopped: bool) -> Event {
        Event::AttemptEnd(AttemptEndData {
            attempt: r.attempt_number,
            max_attempts,
            status: if stopped {
                AttemptStatus::Aborted
            } else {
                r.status
            },
            exit_code: r.exit_code,
            signal: r.signal,
            timed_out: r.timed_out,
            class: r.error_type,
            message: r.error_message.clone(),
            reason: r.retry_reason.clone(),
            duration: r.execution_time,
        })
    }

    /// `end` from the operation's record and retryx's exit code.
    pub fn end(r: &super::OperationRecord, exit_code: i32, signal: Option<i32>) -> Event {
        Event::End(EndData {
            status: r.status.into(),
            exit_code,
            attempts: r.attempt_count,
            duration: r.execution_time,
            stop_reason: r.stop_reason.clone(),
            class: r.final_error_type,
            signal,
        })
    }

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

/// Writes each event as one JSON line and flushes it, so a reader sees it at once.
pub struct JsonLines {
    out: Mutex<Box<dyn Write + Send>>,
    /// The first write error, reported once (the run goes on: a reader that went away must not
    /// change the operation).
    broken: Mutex<bool>,
}

impl JsonLines {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLines {
            out: Mutex::new(out),
            broken: Mutex::new(false),
        }
    }

    /// A file created (or truncated) 0600 whatever the umask, never through a symlink.
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)?;
        // A file that existed keeps its mode through open(2): make it ours. (A FIFO or a
        // terminal named on purpose is left as it is.)
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.is_file() {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self::new(Box::new(file)))
    }
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

impl Observer for JsonLines {
    fn event(&self, event: &Event) {
        let text = line(event, chrono::Utc::now());
        let Ok(mut out) = self.out.lock() else { return };
        let result = writeln!(out, "{text}").and_then(|()| out.flush());
        if let Err(e) = result
            && let Ok(mut broken) = self.broken.lock()
            && !*broken
        {
            *broken = true;
            let _ = writeln!(std::io::stderr(), "retryx: --events: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_event_is_one_line_with_type_time_and_data() {
        let buf = Buf::default();
        let sink = JsonLines::new(Box::new(buf.clone()));
        sink.event(&Event::Wait(WaitData {
            attempt: 1,
            next_attempt: 2,
            max_attempts: 3,
            delay: 1.5,
            class: Some(ErrorClass::ConnectionError),
        }));
        sink.event(&Event::not_started(125, "bad flag"));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "wait");
        assert_eq!(lines[0]["data"]["delay"], 1.5);
        assert_eq!(lines[0]["data"]["class"], "connection_error");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["type"], "end");
        assert_eq!(lines[1]["data"]["status"], "error");
        assert_eq!(lines[1]["data"]["exit_code"], 125);
    }

    #[test]
    fn type_names_match_the_serialised_tag() {
        let e = Event::not_started(1, "x");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.type_name());
    }
}
