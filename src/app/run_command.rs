//! One operation from a resolved config to a result document: ids, check mode, guards, the
//! engine, records, notifications. Shared by the CLI and the module so both behave the same;
//! neither knows which front door called it.

use serde_json::{Value, json};

use crate::config::{Action, CommandLine, Resolved};
use crate::download::{self, DownloadAttempter, ProgressMode};
use crate::engine::{self, Attempter, Identity, Outcome, ProcessAttempter};
use crate::front::document::{self, REDACTED};
use crate::log::Logger;
use crate::record::events::{Event, StartData};
use crate::record::{new_operation_id, new_session_id};
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

/// How the front door wants the operation run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
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
    /// built only when records or notifications are configured (they put their outcomes in it,
    /// and notifications read the alerts from it): a plain run skips a good share of its work.
    pub want_result: bool,
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

    // Downloads (action download, src/download.rs) run through the same engine.
    let mut fetch = None;
    if config.action == Some(Action::Download) {
        match download::prepare(config, &mut plan, &session_id, opts.no_log) {
            download::Prepared::Fetch(ready) => fetch = Some(ready),
            download::Prepared::Answer { result, exit_code } => {
                return RunReport {
                    result,
                    exit_code,
                    outcome: None,
                };
            }
        }
    }
    let cmd = match &fetch {
        Some(f) => json!(f.spec.cmd()),
        None => cmd_value(&plan.command),
    };

    if plan.command.is_none() && fetch.is_none() {
        let msg = "no command to run: give 'command' (run by /bin/sh -c) or 'argv' (a list), at the top level or in operation_configs.<operation>".to_string();
        return RunReport {
            result: json!({"failed": true, "changed": false, "rc": crate::app::exit::USAGE, "msg": msg}),
            exit_code: crate::app::exit::USAGE,
            outcome: None,
        };
    }

    // Guards are built (and their config checked) in check mode too; building writes nothing.
    let state_dir = crate::guards::state_dir_for(config);
    let mut guards = match crate::guards::build(config, &plan, &state_dir) {
        Ok(g) => g,
        Err(e) => {
            return RunReport {
                result: json!({"failed": true, "changed": false, "rc": crate::app::exit::USAGE, "msg": e.to_string()}),
                exit_code: crate::app::exit::USAGE,
                outcome: None,
            };
        }
    };
    if opts.check_mode {
        // As ansible.builtin.command does in check mode: nothing runs, the task is skipped.
        let mut result = json!({
            "changed": fetch.is_some(),
            "skipped": fetch.is_none(),
            "failed": false,
            "rc": 0,
            "cmd": if opts.no_log { json!(REDACTED) } else { cmd },
            "msg": if fetch.is_some() { "Download would have run if not in check mode" } else { "Command would have run if not in check mode" },
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
                    "guards": guards.names(),
                },
                "attempts": [],
                "alerts": [],
                "notifications": [],
                "artifacts": [],
            }
        });
        if opts.no_log {
            document::redact_result(&mut result);
        }
        return RunReport {
            result,
            exit_code: 0,
            outcome: None,
        };
    }

    let who = Identity {
        operation_id,
        session_id,
        command: match &fetch {
            Some(_) if opts.no_log => Some(REDACTED.to_string()),
            Some(f) => Some(f.spec.cmd()),
            None => plan.command.as_ref().map(|c| {
                if opts.no_log {
                    REDACTED.to_string()
                } else {
                    c.display()
                }
            }),
        },
        context: config.context.clone(),
        host: host_name(),
    };
    let mut process = ProcessAttempter {
        plan: &resolved.plan,
        passthrough: opts.passthrough,
    };
    let mut fetcher = fetch.as_ref().map(|f| {
        DownloadAttempter::new(
            &f.spec,
            log,
            ProgressMode::for_stderr(opts.passthrough, log),
        )
    });
    let attempter: &mut dyn Attempter = match fetcher.as_mut() {
        Some(f) => f,
        None => &mut process,
    };
    log.event(&Event::Start(StartData {
        operation: plan.operation.clone(),
        operation_id: who.operation_id.clone(),
        session_id: who.session_id.clone(),
        max_attempts: plan.max_attempts,
        command: who.command.clone(),
        timeout: plan.timeout.map(|d| d.as_secs_f64()),
        deadline: plan.deadline.map(|d| d.as_secs_f64()),
    }));
    let mut outcome = engine::run(&mut plan, attempter, timer, cancel, &mut guards, log, who);
    if let Some(f) = &fetcher {
        f.finish(&mut outcome.record);
    }
    if opts.no_log {
        document::redact_record(&mut outcome.record);
    }
    let needed = opts.want_result
        || crate::app::session::artifacts_dir(config, opts.records_by_default).is_some()
        || crate::sinks::notifications_configured(config);
    let mut result = if needed {
        document::build(&outcome, cmd, opts.no_log)
    } else {
        Value::Null
    };
    if needed && let (Some(ready), Some(f)) = (&fetch, &fetcher) {
        download::decorate_result(&mut result, ready, f, opts.no_log);
    }
    // Records (src/record, issue 4): written from the already-redacted record, before the
    // notifications so they can send the alerts.
    crate::app::session::after_run(
        config,
        opts.records_by_default,
        &outcome.record,
        &mut result,
        log,
    );
    let mut exit_code = outcome.exit_code();
    // Notifications (src/sinks, issue 5): outcomes go in retry.notifications; only a system
    // with `required: true` can change the result.
    crate::sinks::notify_after_operation(config, &outcome.record, &mut result, &mut exit_code, log);
    RunReport {
        exit_code,
        result,
        outcome: Some(outcome),
    }
}
