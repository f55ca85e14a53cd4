//! The event stream's writer and the events made from records: `--events PATH|-` gets one
//! JSON line per event, flushed as it happens, so a reader sees it at once. The shapes are
//! `log::events`; this file only writes them (0600, never through a symlink) and builds
//! `attempt_end` / `end` from the attempt and operation records.

use std::io::Write;
use std::sync::Mutex;

use super::{AttemptRecord, AttemptStatus, OperationStatus};
use crate::log::events::{AttemptEnd, AttemptEndData, EndData, EndStatus, Event, Observer, line};

/// `attempt_end` from the attempt's record; `stopped` when a stop request cut it.
pub(crate) fn attempt_end(r: &AttemptRecord, max_attempts: u32, stopped: bool) -> Event {
    Event::AttemptEnd(AttemptEndData {
        attempt: r.attempt_number,
        max_attempts,
        status: match (stopped, r.status) {
            (true, _) | (_, AttemptStatus::Aborted) => AttemptEnd::Aborted,
            (false, AttemptStatus::Success) => AttemptEnd::Success,
            (false, AttemptStatus::Failed) => AttemptEnd::Failed,
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
pub(crate) fn end(r: &super::OperationRecord, exit_code: i32, signal: Option<i32>) -> Event {
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
    use crate::classify::ErrorClass;
    use crate::log::events::WaitData;
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
