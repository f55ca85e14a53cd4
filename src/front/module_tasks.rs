//! The module's front door for operations made of Ansible tasks (`action: task_start` /
//! `task_end`, called by the role around each attempt of `retry_tasks`): reads the task-side
//! args, runs one step of `task_op`, and turns it into the Ansible result; and reads the
//! play's failed task for "cleanup retry session on error". It decides nothing itself and
//! never runs the tasks.

use serde_json::{Map, Value, json};

use crate::app::task_operation::{Env, Finished, Step, TaskFacts, TaskState, last_error};
use crate::app::{Answer, Status, report};
use crate::config::{Resolved, format_duration};
use crate::front::document;
use crate::front::module::AnsibleFlags;
use crate::log::Logger;
use crate::record::REDACTED;
use crate::sys::clock::RealTimer;
use crate::sys::stop::Cancel;

/// The two actions of a task operation (kept out of `config::Action`: they only exist
/// between the role and the module, never on the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskAction {
    Start,
    End,
}

/// Keys only these actions take; they are removed before the config is resolved.
const TASK_KEYS: [&str; 6] = [
    "task_state",
    "task_failed",
    "task_result",
    "task_name",
    "task_until_false",
    "tasks_file",
];

/// Whether `args` ask for a task step (and which); removes `action` when they do.
pub(crate) fn take_action(args: &mut Map<String, Value>) -> Option<TaskAction> {
    let action = match args.get("action").and_then(Value::as_str) {
        Some("task_start") => TaskAction::Start,
        Some("task_end") => TaskAction::End,
        _ => return None,
    };
    args.remove("action");
    Some(action)
}

fn failure(msg: String) -> Value {
    document::failure(msg)
}

fn opt_string(args: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("key '{key}': expected a string, got {other}")),
    }
}

fn parse_state(v: Option<Value>) -> Result<Option<TaskState>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) if m.is_empty() => Ok(None),
        Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
            format!("key 'task_state': expected the retry.task_state of the previous step: {e}")
        }),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1"),
        _ => false,
    }
}

/// Runs one step; `args` are the module args without Ansible's own keys, `config` merged.
pub(crate) fn run(action: TaskAction, mut args: Map<String, Value>, flags: &AnsibleFlags) -> Value {
    let mut taken = Map::new();
    for key in TASK_KEYS {
        if let Some(v) = args.remove(key) {
            taken.insert(key.to_string(), v);
        }
    }
    // The operation's "command" is the tasks file: its name goes in the records.
    let label = match opt_string(&taken, "tasks_file") {
        Ok(l) => l,
        Err(e) => return failure(e),
    };
    let state = match parse_state(taken.remove("task_state")) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    let facts = match task_facts(&mut taken) {
        Ok(f) => f,
        Err(e) => return failure(e),
    };
    let resolved = match Resolved::from_value(Value::Object(args), Map::new(), true) {
        Ok(r) => r,
        Err(e) => return failure(e.to_string()),
    };
    let state_dir = crate::guards::state_dir_for(&resolved.config);
    let guards = match crate::guards::build(&resolved.config, &resolved.plan, &state_dir) {
        Ok(g) => g,
        Err(e) => return failure(e.to_string()),
    };
    let debug = resolved.config.debug_mode.unwrap_or(false) || flags.verbosity >= 3;
    let log = Logger::memory(if debug { 1 } else { 0 });
    let cancel = Cancel::new();
    let _ = cancel.install_signal_handlers();
    let timer = RealTimer::new();
    let mut env = Env {
        resolved: &resolved,
        guards,
        timer: &timer,
        cancel: &cancel,
        log: &log,
        check_mode: flags.check_mode,
        command: label.clone().map(|l| {
            if flags.no_log {
                REDACTED.to_string()
            } else {
                format!("tasks: {l}")
            }
        }),
        host: crate::app::operation::host_name(),
    };
    let step = match (action, state) {
        (TaskAction::Start, state) => env.start(state),
        (TaskAction::End, Some(state)) => env.end(state, &facts),
        (TaskAction::End, None) => {
            return failure(
                "key 'task_state': action task_end needs the retry.task_state task_start returned"
                    .into(),
            );
        }
    };
    let max = if flags.check_mode {
        1
    } else {
        resolved.plan.max_attempts
    };
    let mut out = match step {
        Step::Attempt(s) => step_result(&resolved, s, "attempt", None, max, flags.no_log),
        Step::Retry {
            state,
            delay,
            verdict,
        } => {
            let progress = format!(
                "FAILED - RETRYING: {} (attempt {} of {} failed: {}{}; next attempt in {})",
                resolved.plan.operation,
                state.attempt - 1,
                max,
                verdict.class,
                if flags.no_log {
                    String::new()
                } else {
                    format!(", {}", verdict.message)
                },
                format_duration(delay)
            );
            step_result(&resolved, state, "retry", Some(progress), max, flags.no_log)
        }
        Step::Done(f) => finished(&resolved, *f, label, flags, &log),
    };
    if debug
        && !flags.no_log
        && let Some(retry) = out.get_mut("retry")
    {
        retry["log"] = json!(log.lines());
    }
    out
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| text_of(Some(x)))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
    }
}

/// The failed task's result (`ansible_failed_result`) read into the facts the operation
/// classifies: msg, stdout, stderr, exception, rc, an HTTP status, and whether the task had
/// its own `no_log` (Ansible's raw result is uncensored; `_ansible_no_log` says so).
fn task_facts(taken: &mut Map<String, Value>) -> Result<TaskFacts, String> {
    let result = match taken.remove("task_result") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(Value::String(s)) if s.is_empty() => Map::new(),
        Some(other) => {
            return Err(format!(
                "key 'task_result': expected the failed task's result (a dict), got {other}"
            ));
        }
    };
    let number = |k: &str| match result.get(k) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let until_false = opt_string(taken, "task_until_false")?;
    Ok(TaskFacts {
        failed: truthy(taken.get("task_failed")) || until_false.is_some(),
        msg: text_of(result.get("msg")),
        stdout: text_of(result.get("stdout")),
        stderr: text_of(result.get("stderr")),
        exception: text_of(result.get("exception")),
        rc: number("rc").and_then(|c| i32::try_from(c).ok()),
        status: number("status"),
        task: opt_string(taken, "task_name")?,
        until_false,
        no_log: truthy(result.get("_ansible_no_log")),
    })
}

/// Takes the failed task's name and result (`task_name`, `task_result`) out of the args of
/// "cleanup retry session on error".
pub(crate) fn take_failed_task(args: &mut Map<String, Value>) -> Map<String, Value> {
    let mut taken = Map::new();
    for key in ["task_name", "task_result"] {
        if let Some(v) = args.remove(key) {
            taken.insert(key.to_string(), v);
        }
    }
    taken
}

/// The play's error for the session's error record: the failed task, its result classified
/// as an attempt's would be. None when the handler knew of no failed task.
pub(crate) fn play_error(
    mut taken: Map<String, Value>,
    resolved: &Resolved,
    no_log: bool,
) -> Result<Option<Value>, String> {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    };
    if empty(taken.get("task_name")) && empty(taken.get("task_result")) {
        return Ok(None);
    }
    taken.insert("task_failed".into(), json!(true));
    let facts = task_facts(&mut taken)?;
    let verdict = crate::app::task_operation::classify_task(&resolved.plan, &facts);
    Ok(Some(json!({
        "task": facts.task,
        "class": verdict.class,
        "message": if no_log || facts.no_log { REDACTED.to_string() } else { verdict.message },
        "rc": facts.rc,
        "status": facts.status,
    })))
}

/// A step that is not the last: what the role needs for the next attempt.
fn step_result(
    resolved: &Resolved,
    mut state: TaskState,
    next: &str,
    progress: Option<String>,
    max: u32,
    no_log: bool,
) -> Value {
    if no_log {
        for a in &mut state.attempts {
            if a.error_message.is_some() {
                a.error_message = Some(REDACTED.to_string());
            }
        }
    }
    let last = last_error(&state)
        .map(|(class, message)| json!({"class": class, "message": message}))
        .unwrap_or_else(|| json!({}));
    let msg = progress
        .clone()
        .unwrap_or_else(|| format!("attempt {} of {max}", state.attempt));
    let answer = Answer::done(false, msg).with(
        "retry",
        json!({
            "next": next,
            "operation": resolved.plan.operation,
            "session_id": state.session_id,
            "operation_id": state.operation_id,
            "attempt": state.attempt,
            "max_attempts": max,
            "last_error": last,
            "progress": progress,
            "task_state": serde_json::to_value(&state).unwrap_or_default(),
        }),
    );
    document::of(&answer)
}

/// The last step: the operation's result as a command's would be, its records and
/// notifications.
fn finished(
    resolved: &Resolved,
    mut f: Finished,
    label: Option<String>,
    flags: &AnsibleFlags,
    log: &Logger,
) -> Value {
    if flags.no_log {
        report::redact_record(&mut f.record);
    }
    let max = f.record.max_attempts;
    let attempt = f.record.attempt_count;
    let last = f
        .record
        .final_error_type
        .map(|c| json!({"class": c, "message": f.record.final_error_message.clone().unwrap_or_default()}))
        .unwrap_or_else(|| json!({}));
    let outcome = crate::engine::Outcome {
        record: f.record,
        last: None,
        aborted_by: f.aborted_by,
        adjustments: f.adjustments,
    };
    let cmd = json!(label.unwrap_or_default());
    let mut answer = report::operation(&outcome, cmd, flags.no_log);
    if flags.check_mode {
        // Check mode runs the tasks once and writes no record (as `run` writes none).
        if answer.status == Status::Changed {
            answer.status = Status::Unchanged;
        }
    } else {
        crate::app::session::after_run(&resolved.config, true, &outcome.record, &mut answer, log);
        crate::app::notify::after_operation(&resolved.config, &outcome.record, &mut answer, log);
    }
    let retry = answer.retry_mut();
    retry.insert("next".into(), json!("stop"));
    retry.insert("attempt".into(), json!(attempt));
    retry.insert("max_attempts".into(), json!(max));
    retry.insert("last_error".into(), last);
    // A task operation has no output of its own: drop command-only keys that would mislead.
    for k in ["stdout", "stderr", "stdout_lines", "stderr_lines"] {
        answer.data.remove(k);
    }
    let mut out = document::of(&answer);
    if resolved.config.debug_mode.unwrap_or(false) {
        document::add_attempt_detail(&mut out);
    }
    out
}
