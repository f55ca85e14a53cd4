//! What every operation shares, whatever its attempter (a command, a download): ids, guards,
//! check mode, the engine, records, notifications. Returns a typed `Answer`; writes the records
//! only through `record` and talks to receivers only through `sinks`.

use serde_json::{Value, json};

use super::Answer;
use super::report;
use crate::config::Resolved;
use crate::engine::{self, Attempter, Identity, Outcome};
use crate::log::Logger;
use crate::log::events::{Event, StartData};
use crate::record::{REDACTED, new_operation_id, new_session_id};
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

/// How the front door wants the operation run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    /// Copy the child's output to our stdout/stderr live (CLI).
    pub passthrough: bool,
    /// Ansible's `no_log`: keep output, command and context out of results and records.
    pub no_log: bool,
    /// Ansible's check mode: say what would run; run and write nothing.
    pub check_mode: bool,
    /// Write records to /tmp/ansible_retry when no artifacts_dir is given (the module does;
    /// the CLI writes records only when asked).
    pub records_by_default: bool,
    /// Someone reads the result document (the module; the CLI's --result-json). Otherwise it is
    /// built only when records or notifications are configured (they put their outcomes in it):
    /// a plain run skips a good share of its work.
    pub want_result: bool,
    /// Finalize the session this operation opened (no `session_id` given) when it ends: a CLI
    /// run does unless `--keep-open`; the module leaves that to the role's handler.
    pub close_own_session: bool,
}

/// Everything an operation needs that does not come from its attempter.
pub(crate) struct Run<'a> {
    pub resolved: &'a Resolved,
    pub plan: crate::config::Plan,
    pub opts: &'a RunOptions,
    pub log: &'a Logger,
    pub cancel: &'a Cancel,
    pub timer: &'a dyn Timer,
    pub session_id: String,
}

/// What is run: a command, a download. Gives the engine its attempter, then adds its own facts
/// to the record (before it is written) and to the answer.
pub(crate) trait Kind {
    fn attempter(&mut self) -> &mut dyn Attempter;
    fn after_engine(&mut self, _outcome: &mut Outcome) {}
    fn decorate(&self, _answer: &mut Answer, _no_log: bool) {}
}

/// What the operation is, as shown in results and records.
pub(crate) struct Shown {
    /// `cmd` of the result (a list for argv).
    pub cmd: Value,
    /// The command as one line, for the record.
    pub line: Option<String>,
    /// The check-mode message, and whether check mode reports a change (a download would).
    pub would: &'static str,
    pub would_change: bool,
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        resolved: &'a Resolved,
        opts: &'a RunOptions,
        log: &'a Logger,
        cancel: &'a Cancel,
        timer: &'a dyn Timer,
    ) -> Self {
        let session_id = resolved
            .config
            .session_id
            .clone()
            .unwrap_or_else(|| new_session_id(timer.wall().timestamp()));
        Run {
            resolved,
            plan: resolved.plan.clone(),
            opts,
            log,
            cancel,
            timer,
            session_id,
        }
    }

    /// Runs the operation with `kind`'s attempter. Guards are built (and checked) in check
    /// mode too; building writes nothing.
    pub(crate) fn execute(mut self, shown: Shown, kind: &mut dyn Kind) -> Answer {
        let config = &self.resolved.config;
        // The same checks as `retryx validate` (app/validate.rs), before anything runs.
        if let Err(msg) = super::validate::check_records(config) {
            return Answer::usage(msg);
        }
        let state_dir = crate::guards::state_dir_for(config);
        let mut guards = match crate::guards::build(config, &self.plan, &state_dir) {
            Ok(g) => g,
            Err(e) => return Answer::usage(e.to_string()),
        };
        let no_log = self.opts.no_log;
        if self.opts.check_mode {
            return self.check_mode(shown, guards.names());
        }
        let epoch = self.timer.wall().timestamp();
        let who = Identity {
            operation_id: new_operation_id(&self.plan.operation, epoch),
            session_id: self.session_id.clone(),
            command: shown
                .line
                .map(|l| if no_log { REDACTED.to_string() } else { l }),
            context: config.context.clone(),
            host: host_name(),
        };
        let (timer, cancel, log) = (self.timer, self.cancel, self.log);
        log.event(&Event::Start(StartData {
            operation: self.plan.operation.clone(),
            operation_id: who.operation_id.clone(),
            session_id: who.session_id.clone(),
            max_attempts: self.plan.max_attempts,
            command: who.command.clone(),
            timeout: self.plan.timeout.map(|d| d.as_secs_f64()),
            deadline: self.plan.deadline.map(|d| d.as_secs_f64()),
        }));
        let mut outcome = engine::run(
            &mut self.plan,
            kind.attempter(),
            timer,
            cancel,
            &mut guards,
            log,
            who,
        );
        kind.after_engine(&mut outcome);
        if no_log {
            report::redact_record(&mut outcome.record);
        }
        let needed = self.opts.want_result
            || super::session::artifacts_dir(config, self.opts.records_by_default).is_some()
            || crate::sinks::notifications_configured(config);
        let mut answer = if needed {
            report::operation(&outcome, shown.cmd, no_log)
        } else {
            report::bare(&outcome)
        };
        if needed {
            kind.decorate(&mut answer, no_log);
        }
        // Records first, so the notifications can send the alerts they raised.
        super::session::after_run(
            config,
            self.opts.records_by_default,
            &outcome.record,
            &mut answer,
            log,
        );
        super::notify::after_operation(config, &outcome.record, &mut answer, log);
        if self.opts.close_own_session && config.session_id.is_none() {
            super::session::close_own_session(config, &outcome.record, log);
        }
        // The stream's last line: nothing of the operation is told after it.
        log.event(&crate::record::events::end(
            &outcome.record,
            answer.exit_code,
            outcome.aborted_by,
        ));
        answer
    }

    /// As `ansible.builtin.command` does in check mode: nothing runs, the task is skipped.
    fn check_mode(&self, shown: Shown, guards: Vec<&'static str>) -> Answer {
        let plan = &self.plan;
        let mut answer = if shown.would_change {
            Answer::done(true, shown.would)
        } else {
            Answer::skipped(shown.would)
        };
        answer.no_log = self.opts.no_log;
        answer.with("rc", json!(0)).with("cmd", shown.cmd).with(
            "retry",
            json!({
                "session_id": self.session_id,
                "operation": plan.operation,
                "status": "check_mode",
                "plan": {
                    "max_attempts": plan.max_attempts,
                    "policy": plan.backoff,
                    "timeout": plan.timeout.map(|d| d.as_secs_f64()),
                    "deadline": plan.deadline.map(|d| d.as_secs_f64()),
                    "retry_conditions": plan.classifier.retry_conditions,
                    "guards": guards,
                },
                "attempts": [],
                "alerts": [],
                "notifications": [],
                "artifacts": [],
            }),
        )
    }
}

pub(crate) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}
