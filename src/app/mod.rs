//! The application floor: one file per action (run a command or a download, the session
//! actions, notify, breaker, validate). Front doors hand it a request and get a typed `Answer`
//! back; nothing here knows whether a shell or Ansible asked, and nothing here writes the
//! status keys of a result document (`front::document` does).

pub(crate) mod guard_admin;
pub(crate) mod notify;
pub(crate) mod operation;
pub(crate) mod report;
pub(crate) mod run_command;
pub(crate) mod run_download;
pub(crate) mod session;
pub(crate) mod validate;

use serde_json::{Map, Value};

/// How an action ended, for the front door to present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Changed,
    Unchanged,
    /// Nothing ran (check mode, nothing to do).
    Skipped,
    Failed,
}

/// What an action came to.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: Status,
    /// From `crate::exit`, the one place that decides exit codes.
    pub exit_code: i32,
    pub msg: String,
    /// Problems that did not change the outcome (a record not written, ...).
    pub warnings: Vec<String>,
    /// The action's own fields (`cmd`, `rc`, `stdout`, ..., `retry`); never the status keys.
    pub data: Map<String, Value>,
    /// Ansible's `no_log`: the front door hides the command, its output and context.
    pub no_log: bool,
    /// An operation ran through the engine (the CLI then has nothing more to log).
    pub ran: bool,
}

impl Answer {
    fn new(status: Status, exit_code: i32, msg: impl Into<String>) -> Answer {
        Answer {
            status,
            exit_code,
            msg: msg.into(),
            warnings: Vec::new(),
            data: Map::new(),
            no_log: false,
            ran: false,
        }
    }

    /// Bad usage or configuration, found before anything ran (exit 125).
    pub(crate) fn usage(msg: impl Into<String>) -> Answer {
        let mut a = Answer::new(Status::Failed, crate::exit::USAGE, msg);
        a.data.insert("rc".into(), Value::from(crate::exit::USAGE));
        a
    }

    /// An action that failed for another reason (exit 1).
    pub(crate) fn failure(msg: impl Into<String>) -> Answer {
        Answer::new(Status::Failed, crate::exit::FAILURE, msg)
    }

    /// An action that did its work (or found nothing to change).
    pub(crate) fn done(changed: bool, msg: impl Into<String>) -> Answer {
        let status = if changed {
            Status::Changed
        } else {
            Status::Unchanged
        };
        Answer::new(status, 0, msg)
    }

    /// Nothing was run or written (check mode).
    pub(crate) fn skipped(msg: impl Into<String>) -> Answer {
        Answer::new(Status::Skipped, 0, msg)
    }

    pub(crate) fn with(mut self, key: &str, value: Value) -> Answer {
        self.data.insert(key.into(), value);
        self
    }

    pub(crate) fn failed(&self) -> bool {
        self.status == Status::Failed
    }

    /// The `retry` object of the data, made when missing.
    pub(crate) fn retry_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self
            .data
            .entry("retry")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(m) => m,
            _ => unreachable!("made an object just above"),
        }
    }
}
