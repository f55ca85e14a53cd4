//! One operation from a resolved config to a result document: ids, check mode, guards, the
//! engine, records, notifications. Shared by the CLI and the module so both behave the same;
//! neither knows which front door called it.

use serde_json::{Value, json};

use crate::cancel::Cancel;
use crate::clock::Timer;
use crate::config::{CommandLine, Resolved};
use crate::engine::{self, Identity, Outcome, ProcessAttempter};
use crate::guards::GuardSet;
use crate::log::Logger;
use crate::record::{new_operation_id, new_session_id};
use crate::result::{self, REDACTED};

/// How the front door wants the operation run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Copy the child's output to our stdout/stderr live (CLI).
    pub passthrough: bool,
    /// Ansible's `no_log`: keep output, command and context out of results and records.
    pub no_log: bool,
    /// Ansible's check mode: say what would run; run and write nothing.
    pub check_mode: bool,
    /// Write records to /tmp/ansible_retry when no artifacts_dir is given (the module does).
    pub records_by_default: bool,
}

/// What came of it.
pub struct RunReport {
    pub result: Value,
    pub exit_code: i32,
    pub outcome: Option<Outcome>,
}

fn cmd_value(c: &Option<CommandLine>) -> Value {
    match c {
        Some(CommandLine::Shell(s)) => json!(s),
        Some(CommandLine::Argv(v)) => json!(v),
        None => Value::Null,
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Runs the operation `resolved` describes.
pub fn run_operation(
    resolved: &Resolved,
    opts: &RunOptions,
    log: &Logger,
    cancel: &Cancel,
    timer: &dyn Timer,
) -> RunReport {
    let mut plan = resolved.plan.clone();
    let config = &resolved.config;
    let epoch = timer.wall().timestamp();
    let session_id = config
        .session_id
        .clone()
        .unwrap_or_else(|| new_session_id(epoch));
    let operation_id = new_operation_id(&plan.operation, epoch);
    let cmd = cmd_value(&plan.command);

    if plan.command.is_none() {
        let msg = "no command to run: give 'command' (run by /bin/sh -c) or 'argv' (a list), at the top level or in operation_configs.<operation>".to_string();
        return RunReport {
            result: json!({"failed": true, "changed": false, "rc": crate::exit_codes::USAGE, "msg": msg}),
            exit_code: crate::exit_codes::USAGE,
            outcome: None,
        };
    }

    if opts.check_mode {
        // As ansible.builtin.command does in check mode: nothing runs, the task is skipped.
        let mut result = json!({
            "changed": false,
            "skipped": true,
            "failed": false,
            "rc": 0,
            "cmd": if opts.no_log { json!(REDACTED) } else { cmd },
            "msg": "Command would have run if not in check mode",
            "retry": {
                "session_id": session_id,
                "operation": plan.operation,
                "status": "check_mode",
                "plan": {
                    "max_attempts": plan.max_attempts,
                    "policy": plan.backoff,
                    "timeout": plan.timeout.map(|d| d.as_secs_f64()),
                    "deadline": plan.deadline.map(|d| d.as_secs_f64()),
                    "retry_conditions": plan.classifier.retry_conditions,
                },
                "attempts": [],
                "alerts": [],
                "notifications": [],
                "artifacts": [],
            }
        });
        if opts.no_log {
            result::redact_result(&mut result);
        }
        return RunReport {
            result,
            exit_code: 0,
            outcome: None,
        };
    }

    let mut guards = GuardSet::default();
    let who = Identity {
        operation_id,
        session_id,
        command: plan.command.as_ref().map(|c| {
            if opts.no_log {
                REDACTED.to_string()
            } else {
                c.display()
            }
        }),
        context: config.context.clone(),
        host: host_name(),
    };
    let mut attempter = ProcessAttempter {
        plan: &resolved.plan,
        passthrough: opts.passthrough,
    };
    let mut outcome = engine::run(
        &mut plan,
        &mut attempter,
        timer,
        cancel,
        &mut guards,
        log,
        who,
    );
    if opts.no_log {
        result::redact_record(&mut outcome.record);
    }
    let mut result = result::build(&outcome, cmd, opts.no_log);
    // Records (src/record, issue 4): written from the already-redacted record.
    crate::record::actions::after_run(
        config,
        opts.records_by_default,
        &outcome.record,
        &mut result,
        log,
    );
    RunReport {
        exit_code: outcome.exit_code(),
        result,
        outcome: Some(outcome),
    }
}
