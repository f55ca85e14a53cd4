//! An operation whose attempts are Ansible tasks (the role's `retry_tasks`): the module is
//! called before each attempt (`task_start`: guards, the wait) and after it (`task_end`:
//! classify the failed task's result, record, decide). Between calls the state travels in a
//! `TaskState` the role hands back. This file decides and waits; it never builds an Ansible
//! result (the front door does) and never runs the tasks (Ansible does).

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::classify::{AttemptFacts, ErrorClass, Verdict};
use crate::config::{Plan, Resolved, format_duration};
use crate::guards::{Admission, AttemptView, GuardCtx, GuardSet, RetryVerdict};
use crate::log::Logger;
use crate::record::{
    AttemptRecord, AttemptStatus, OperationRecord, OperationStatus, new_operation_id,
    new_session_id, timestamp,
};
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

/// What the role carries from one call to the next (`retry.task_state` in, `task_state` out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskState {
    pub operation_id: String,
    pub session_id: String,
    /// Wall clock of the operation's start, seconds since the epoch (deadline, execution time).
    pub started: f64,
    pub start_time: String,
    pub seed: u64,
    /// The attempt about to run or running (1-based).
    pub attempt: u32,
    /// The wait `task_start` sleeps before this attempt.
    pub pending_delay: f64,
    pub attempt_started: f64,
    pub attempt_start_time: String,
    pub attempts: Vec<AttemptRecord>,
    pub adjustments: Vec<String>,
}

/// What the caller reported about one attempt (the role's rescue fills it from the failed
/// task's result; the front door reads that result into these fields).
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskFacts {
    pub failed: bool,
    pub msg: String,
    pub stdout: String,
    pub stderr: String,
    pub exception: String,
    pub rc: Option<i32>,
    /// An HTTP status the failed step reported (`uri`, `get_url`, ...).
    pub status: Option<i64>,
    pub task: Option<String>,
    /// `retry_until` was given and was false after the tasks succeeded: its text.
    pub until_false: Option<String>,
    /// The failed task had its own `no_log` (`_ansible_no_log` in its result): its output
    /// classifies the failure but never becomes the message.
    pub no_log: bool,
}

/// Where the operation stands after a call.
pub(crate) enum Step {
    /// Run attempt `state.attempt` now.
    Attempt(TaskState),
    /// Attempt `state.attempt - 1` failed; the next one starts after `delay` (`task_start`
    /// sleeps it). `verdict` is why.
    Retry {
        state: TaskState,
        delay: Duration,
        verdict: Verdict,
    },
    /// The operation is over.
    Done(Box<Finished>),
}

/// A finished operation: its record and the guards' notes.
pub(crate) struct Finished {
    pub record: OperationRecord,
    pub adjustments: Vec<String>,
    pub aborted_by: Option<i32>,
}

/// The last failure of a state, as the tasks see it (`retry_last_error`).
pub(crate) fn last_error(state: &TaskState) -> Option<(ErrorClass, String)> {
    state
        .attempts
        .last()
        .and_then(|a| Some((a.error_type?, a.error_message.clone().unwrap_or_default())))
}

fn epoch(timer: &dyn Timer) -> f64 {
    timer.wall().timestamp_millis() as f64 / 1000.0
}

/// The HTTP status of a failed `uri`/`get_url`-like result, as an error class.
pub(crate) fn http_class(status: i64) -> Option<ErrorClass> {
    Some(match status {
        500 | 502 | 503 | 504 => ErrorClass::ServiceUnavailable,
        429 => ErrorClass::RateLimitExceeded,
        404 | 410 => ErrorClass::ResourceNotFound,
        401 | 407 => ErrorClass::AuthenticationError,
        403 => ErrorClass::AuthorizationError,
        408 => ErrorClass::Timeout,
        409 | 423 => ErrorClass::ResourceBusy,
        400 | 405 | 406 | 411..=418 | 422 => ErrorClass::InvalidParameter,
        // -1: uri's "could not connect" (no HTTP answer at all)
        -1 => ErrorClass::ConnectionError,
        501 | 505.. => ErrorClass::ServiceUnavailable,
        _ => return None,
    })
}

/// Classifies a failed task's result: user rules first (fail/retry exit codes on `rc`,
/// `fail_if`/`retry_if`, `error_patterns`), then the HTTP status, then the built-in patterns
/// over `msg`, `stderr`, `stdout`, `exception`.
pub(crate) fn classify_task(plan: &Plan, facts: &TaskFacts) -> Verdict {
    if let Some(expr) = &facts.until_false {
        return Verdict {
            class: ErrorClass::TemporaryFailure,
            retryable: plan
                .classifier
                .retry_conditions
                .contains(&ErrorClass::TemporaryFailure),
            reason: "retry_until was false".into(),
            message: format!("retry_until is false: {expr}"),
        };
    }
    let msg = &facts.msg;
    let stdout = format!("{msg}\n{}", facts.stdout);
    let stderr = format!("{}\n{}", facts.stderr, facts.exception);
    let rc = facts.rc;
    let any = |res: &[regex::Regex]| {
        res.iter()
            .any(|re| re.is_match(&stdout) || re.is_match(&stderr))
    };
    let mut classifier = plan.classifier.clone();
    // A task without an rc (uri, assert, ...) is not judged by exit-code rules.
    if rc.is_none() {
        classifier.retry_on_exit = None;
    }
    let facts_in = AttemptFacts {
        exit_code: rc,
        signal: None,
        timed_out: false,
        spawn_error: None,
        stderr_tail: &stderr,
        stdout_tail: &stdout,
        // A task's result is read whole: no stream scanned past a tail.
        stderr_scan: None,
        stdout_scan: None,
        fail_if_hit: any(&plan.fail_if),
        retry_if_hit: any(&plan.retry_if),
    };
    let mut verdict = classifier.classify(&facts_in);
    let user_rule = facts_in.fail_if_hit
        || facts_in.retry_if_hit
        || classifier.retry_on_exit.is_some()
        || rc.is_some_and(|c| {
            classifier
                .fail_on_exit
                .as_ref()
                .is_some_and(|s| s.contains(c))
        })
        || classifier
            .user_patterns
            .iter()
            .any(|p| p.regex.is_match(&stdout) || p.regex.is_match(&stderr));
    let status = facts.status;
    if !user_rule && let Some(class) = status.and_then(http_class) {
        verdict = Verdict {
            class,
            retryable: classifier.retry_conditions.contains(&class),
            reason: format!("HTTP status {}", status.unwrap_or_default()),
            message: verdict.message,
        };
    }
    // A command's output says more than its "non-zero return code"; other tasks' msg says
    // more than anything else.
    let output = crate::classify::last_line(&facts.stderr, &facts.stdout);
    let first_msg = msg.lines().map(str::trim).find(|l| !l.is_empty());
    if let Some(m) = first_msg.filter(|_| rc.is_none() || output.is_none()) {
        verdict.message = m.chars().take(500).collect();
    } else if let Some(o) = output {
        verdict.message = o;
    }
    if facts.no_log {
        verdict.message = crate::record::REDACTED.to_string();
    }
    if let Some(task) = &facts.task {
        verdict.message = format!("task '{task}': {}", verdict.message);
    }
    verdict
}

/// One call's tools: the resolved config, the guards built from it, a clock, a stop handle.
pub(crate) struct Env<'a> {
    pub resolved: &'a Resolved,
    pub guards: GuardSet,
    pub timer: &'a dyn Timer,
    pub cancel: &'a Cancel,
    pub log: &'a Logger,
    /// Check mode: nothing waits, nothing is written, one attempt.
    pub check_mode: bool,
    pub command: Option<String>,
    pub host: String,
}

impl Env<'_> {
    fn plan(&self) -> &Plan {
        &self.resolved.plan
    }

    fn ctx(&self, attempt: u32, state: &TaskState) -> GuardCtx<'_> {
        GuardCtx {
            timer: self.timer,
            cancel: self.cancel,
            log: self.log,
            operation: &self.resolved.plan.operation,
            attempt,
            elapsed: Duration::from_secs_f64((epoch(self.timer) - state.started).max(0.0)),
        }
    }

    fn max_attempts(&self) -> u32 {
        if self.check_mode {
            1
        } else {
            self.plan().max_attempts
        }
    }

    fn finish(
        &mut self,
        state: TaskState,
        status: OperationStatus,
        stop_reason: String,
        final_error: Option<(ErrorClass, String)>,
        aborted_by: Option<i32>,
    ) -> Step {
        let success = matches!(
            status,
            OperationStatus::Completed | OperationStatus::Skipped
        );
        if !self.check_mode {
            let mut guards = std::mem::take(&mut self.guards);
            let ctx = self.ctx(state.attempt, &state);
            guards.after_operation(&ctx, success);
            self.guards = guards;
        }
        let exit_code = match status {
            OperationStatus::Completed | OperationStatus::Skipped => 0,
            OperationStatus::Refused => crate::exit::REFUSED,
            OperationStatus::Aborted => 128 + aborted_by.unwrap_or(15),
            OperationStatus::Failed => state.attempts.last().and_then(|a| a.exit_code).unwrap_or(1),
        };
        let plan = self.plan();
        let record = OperationRecord {
            operation_id: state.operation_id,
            operation_name: plan.operation.clone(),
            session_id: state.session_id,
            start_time: state.start_time,
            end_time: timestamp(self.timer.wall()),
            status,
            attempt_count: state.attempts.len() as u32,
            max_attempts: self.max_attempts(),
            execution_time: (epoch(self.timer) - state.started).max(0.0),
            attempts: state.attempts,
            exit_code,
            final_error_type: final_error.as_ref().map(|e| e.0),
            final_error_message: final_error.map(|e| e.1),
            stop_reason,
            command: self.command.clone(),
            context: self.resolved.config.context.clone(),
            host: self.host.clone(),
            policy: serde_json::to_value(&plan.backoff).unwrap_or_default(),
            jitter_seed: state.seed,
            guards: self.guards.report(),
        };
        Step::Done(Box::new(Finished {
            record,
            adjustments: state.adjustments,
            aborted_by,
        }))
    }

    /// Before an attempt: opens the operation on the first call, sleeps the pending wait,
    /// asks the guards. `state` is None before the first attempt.
    pub(crate) fn start(&mut self, state: Option<TaskState>) -> Step {
        let mut state = match state {
            Some(s) => s,
            None => {
                let now = self.timer.wall();
                let mut plan = self.resolved.plan.clone();
                let adjustments = if self.check_mode {
                    Vec::new()
                } else {
                    self.guards.adjust(&mut plan, self.log)
                };
                let session_id = self
                    .resolved
                    .config
                    .session_id
                    .clone()
                    .unwrap_or_else(|| new_session_id(now.timestamp()));
                let state = TaskState {
                    operation_id: new_operation_id(&plan.operation, now.timestamp()),
                    session_id,
                    started: epoch(self.timer),
                    start_time: timestamp(now),
                    seed: plan
                        .jitter_seed
                        .unwrap_or_else(crate::sys::entropy::random_u64),
                    attempt: 1,
                    pending_delay: 0.0,
                    attempt_started: 0.0,
                    attempt_start_time: String::new(),
                    attempts: Vec::new(),
                    adjustments,
                };
                let mut guards = std::mem::take(&mut self.guards);
                let ctx = self.ctx(0, &state);
                let admission = guards.before_operation(&ctx);
                self.guards = guards;
                match admission {
                    Admission::Proceed => {}
                    Admission::Refuse { class, message } => {
                        return self.refused(state, class, message);
                    }
                    Admission::Skip { message } => {
                        return self.finish(state, OperationStatus::Skipped, message, None, None);
                    }
                }
                state
            }
        };
        if state.pending_delay > 0.0 && !self.check_mode {
            let wait = Duration::from_secs_f64(state.pending_delay);
            let wait_start = self.timer.now();
            if let Some(sig) = self.timer.sleep(wait, self.cancel) {
                // Recorded at the length actually waited, not the length planned (as the
                // engine does).
                let waited = self.timer.now().saturating_sub(wait_start).min(wait);
                if let Some(last) = state.attempts.last_mut() {
                    last.delay_before_retry = waited.as_secs_f64();
                }
                let err = last_error(&state);
                return self.finish(
                    state,
                    OperationStatus::Aborted,
                    format!("stopped by signal {sig}"),
                    err,
                    Some(sig),
                );
            }
        }
        state.pending_delay = 0.0;
        if let Some(deadline) = self.plan().deadline
            && epoch(self.timer) - state.started >= deadline.as_secs_f64()
        {
            let err = last_error(&state);
            return self.finish(
                state,
                OperationStatus::Failed,
                "deadline reached".into(),
                err,
                None,
            );
        }
        let mut guards = std::mem::take(&mut self.guards);
        let ctx = self.ctx(state.attempt, &state);
        let admission = guards.before_attempt(&ctx);
        self.guards = guards;
        if let Admission::Refuse { class, message } = admission {
            return self.refused(state, class, message);
        }
        if state.attempt > 1 {
            self.log.info(
                "retrying operation",
                &[
                    ("operation", self.plan().operation.clone()),
                    ("attempt", state.attempt.to_string()),
                    ("max_attempts", self.max_attempts().to_string()),
                ],
            );
        }
        state.attempt_started = epoch(self.timer);
        state.attempt_start_time = timestamp(self.timer.wall());
        Step::Attempt(state)
    }

    fn refused(&mut self, state: TaskState, class: ErrorClass, message: String) -> Step {
        self.log.error(
            "operation refused",
            &[
                ("operation", self.plan().operation.clone()),
                ("error_type", class.to_string()),
                ("error", message.clone()),
            ],
        );
        self.finish(
            state,
            OperationStatus::Refused,
            message.clone(),
            Some((class, message)),
            None,
        )
    }

    /// The wait after failed attempt `n`, the same draw the engine makes: the seeded RNG is
    /// replayed over the earlier waits so a jitter seed gives the same waits as `retryx --`.
    fn backoff_delay(&self, state: &TaskState, n: u32) -> Duration {
        let mut rng = ChaCha8Rng::seed_from_u64(state.seed);
        let backoff = &self.plan().backoff;
        let mut previous = Duration::ZERO;
        let mut delay = Duration::ZERO;
        for k in 1..=n {
            delay = backoff.delay(k, previous, &mut rng);
            previous = delay;
        }
        delay
    }

    /// After an attempt: records it, classifies a failure, and decides.
    pub(crate) fn end(&mut self, mut state: TaskState, facts: &TaskFacts) -> Step {
        let n = state.attempt;
        let now = epoch(self.timer);
        let verdict = facts.failed.then(|| classify_task(self.plan(), facts));
        let duration = (now - state.attempt_started).max(0.0);
        if !self.check_mode {
            let mut guards = std::mem::take(&mut self.guards);
            let ctx = self.ctx(n, &state);
            guards.after_attempt(
                &ctx,
                &AttemptView {
                    success: verdict.is_none(),
                    class: verdict.as_ref().map(|v| v.class),
                    duration: Duration::from_secs_f64(duration),
                },
            );
            self.guards = guards;
        }
        let mut record = AttemptRecord {
            attempt_number: n,
            start_time: state.attempt_start_time.clone(),
            end_time: timestamp(self.timer.wall()),
            status: if verdict.is_none() {
                AttemptStatus::Success
            } else {
                AttemptStatus::Failed
            },
            error_type: verdict.as_ref().map(|v| v.class),
            error_message: verdict.as_ref().map(|v| v.message.clone()),
            should_retry: false,
            delay_before_retry: 0.0,
            execution_time: duration,
            exit_code: facts.rc,
            signal: None,
            timed_out: false,
            retry_reason: verdict.as_ref().map(|v| v.reason.clone()),
            stdout_bytes: 0,
            stderr_bytes: 0,
            download: None,
            policy_class: None,
            failed_task: verdict.as_ref().and(facts.task.clone()),
        };
        let op = self.plan().operation.clone();
        let Some(verdict) = verdict else {
            state.attempts.push(record);
            if n > 1 {
                self.log.info(
                    "operation succeeded after retry",
                    &[("operation", op), ("attempt", n.to_string())],
                );
            }
            return self.finish(
                state,
                OperationStatus::Completed,
                "succeeded".into(),
                None,
                None,
            );
        };
        let err = Some((verdict.class, verdict.message.clone()));
        let stop = |env: &mut Self, mut state: TaskState, record: AttemptRecord, why: String| {
            state.attempts.push(record);
            env.log.error(
                "operation failed",
                &[
                    ("operation", env.plan().operation.clone()),
                    ("attempts", n.to_string()),
                    ("reason", why.clone()),
                    ("error", verdict.message.clone()),
                    ("error_type", verdict.class.to_string()),
                ],
            );
            env.finish(state, OperationStatus::Failed, why, err.clone(), None)
        };
        if !verdict.retryable {
            let why = format!("not retryable: {}", verdict.reason);
            return stop(self, state, record, why);
        }
        if n >= self.max_attempts() {
            return stop(self, state, record, "max attempts reached".into());
        }
        let mut delay = self.backoff_delay(&state, n);
        let mut guards = std::mem::take(&mut self.guards);
        let ctx = self.ctx(n, &state);
        let retry = guards.before_retry(&ctx, verdict.class);
        self.guards = guards;
        match retry {
            RetryVerdict::Allow => {}
            RetryVerdict::AllowNow { reason } => {
                delay = Duration::ZERO;
                record.retry_reason = Some(format!("{}; {reason}", verdict.reason));
            }
            RetryVerdict::Deny { reason } => {
                record.retry_reason = Some(reason.clone());
                return stop(self, state, record, reason);
            }
            RetryVerdict::Done { reason } => {
                record.retry_reason = Some(reason.clone());
                state.attempts.push(record);
                return self.finish(state, OperationStatus::Skipped, reason, None, None);
            }
        }
        if let Some(deadline) = self.plan().deadline
            && now - state.started + delay.as_secs_f64() >= deadline.as_secs_f64()
        {
            record.retry_reason = Some(format!(
                "the wait of {} would cross the deadline",
                format_duration(delay)
            ));
            return stop(self, state, record, "deadline reached".into());
        }
        record.should_retry = true;
        record.delay_before_retry = delay.as_secs_f64();
        state.attempts.push(record);
        self.log.warn(
            "operation failed, retrying",
            &[
                ("operation", op),
                ("attempt", n.to_string()),
                ("max_attempts", self.max_attempts().to_string()),
                ("delay", format_duration(delay)),
                ("error", verdict.message.clone()),
                ("error_type", verdict.class.to_string()),
            ],
        );
        state.attempt = n + 1;
        state.pending_delay = delay.as_secs_f64();
        Step::Retry {
            state,
            delay,
            verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clock::FakeTimer;
    use serde_json::{Map, Value, json};

    fn resolved(v: Value) -> Resolved {
        match Resolved::from_value(v, Map::new(), true) {
            Ok(r) => r,
            Err(e) => panic!("config: {e}"),
        }
    }

    fn failed(result: Value) -> TaskFacts {
        let text = |k: &str| {
            result
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        TaskFacts {
            failed: true,
            msg: text("msg"),
            stdout: text("stdout"),
            stderr: text("stderr"),
            exception: String::new(),
            rc: result.get("rc").and_then(Value::as_i64).map(|c| c as i32),
            status: result.get("status").and_then(Value::as_i64),
            task: Some("call the API".into()),
            until_false: None,
            no_log: result.get("_ansible_no_log").and_then(Value::as_bool) == Some(true),
        }
    }

    #[test]
    fn a_no_log_task_classifies_but_never_quotes_its_output() {
        let r = resolved(json!({"command": "x"}));
        let v = classify_task(
            &r.plan,
            &failed(json!({"msg": "connection refused: token S3CR3T", "rc": 1,
                           "stderr": "S3CR3T", "_ansible_no_log": true})),
        );
        assert_eq!(v.class, ErrorClass::ConnectionError);
        assert!(!v.message.contains("S3CR3T"), "{}", v.message);
        assert_eq!(
            v.message,
            format!("task 'call the API': {}", crate::record::REDACTED)
        );
    }

    #[test]
    fn http_status_decides_unless_a_user_rule_does() {
        let r = resolved(json!({"command": "x"}));
        let v = classify_task(
            &r.plan,
            &failed(json!({"status": 503, "msg": "Status code was 503"})),
        );
        assert_eq!(
            (v.class, v.retryable),
            (ErrorClass::ServiceUnavailable, true)
        );
        assert_eq!(v.message, "task 'call the API': Status code was 503");
        let v = classify_task(&r.plan, &failed(json!({"status": 404, "msg": "Not Found"})));
        assert_eq!(
            (v.class, v.retryable),
            (ErrorClass::ResourceNotFound, false)
        );
        let v = classify_task(&r.plan, &failed(json!({"status": 429})));
        assert_eq!(v.class, ErrorClass::RateLimitExceeded);
        let r = resolved(json!({"command": "x", "fail_if": "maintenance"}));
        let v = classify_task(
            &r.plan,
            &failed(json!({"status": 503, "msg": "in maintenance"})),
        );
        assert!(!v.retryable, "fail_if wins over the status");
    }

    #[test]
    fn rc_and_output_go_through_the_classifier() {
        let r = resolved(json!({"command": "x", "retry_on_exit": [75]}));
        let v = classify_task(&r.plan, &failed(json!({"rc": 75, "stderr": "busy"})));
        assert!(v.retryable);
        let v = classify_task(&r.plan, &failed(json!({"rc": 1, "stderr": "busy"})));
        assert!(!v.retryable);
        // no rc: exit-code rules do not apply, the text does
        let v = classify_task(&r.plan, &failed(json!({"msg": "connection refused"})));
        assert_eq!(v.class, ErrorClass::ConnectionError);
    }

    fn env<'a>(
        r: &'a Resolved,
        timer: &'a FakeTimer,
        cancel: &'a Cancel,
        log: &'a Logger,
    ) -> Env<'a> {
        Env {
            resolved: r,
            guards: GuardSet::default(),
            timer,
            cancel,
            log,
            check_mode: false,
            command: None,
            host: "h".into(),
        }
    }

    #[test]
    fn fails_twice_then_succeeds_waiting_the_policy_between_calls() {
        let r = resolved(json!({"command": "x", "max_attempts": 4, "base_delay": 2,
            "jitter": "none", "artifacts_dir": "/nonexistent"}));
        let (timer, cancel, log) = (FakeTimer::new(), Cancel::new(), Logger::memory(0));
        let mut state = None;
        let mut waits = Vec::new();
        for n in 1..=3 {
            // every call is a fresh process: a fresh Env
            let mut e = env(&r, &timer, &cancel, &log);
            let Step::Attempt(s) = e.start(state.take()) else {
                panic!("no attempt {n}")
            };
            assert_eq!(s.attempt, n);
            timer.advance(Duration::from_millis(100));
            let facts = if n < 3 {
                failed(json!({"status": 502}))
            } else {
                TaskFacts::default()
            };
            let mut e = env(&r, &timer, &cancel, &log);
            match e.end(s, &facts) {
                Step::Retry {
                    state: s, delay, ..
                } => {
                    waits.push(delay);
                    state = Some(s);
                }
                Step::Done(f) => {
                    assert_eq!(f.record.status, OperationStatus::Completed);
                    assert_eq!(f.record.attempt_count, 3);
                    assert_eq!(
                        f.record.attempts[0].failed_task.as_deref(),
                        Some("call the API")
                    );
                }
                Step::Attempt(_) => panic!("end never asks for an attempt"),
            }
        }
        assert_eq!(waits, [Duration::from_secs(2), Duration::from_secs(4)]);
        assert_eq!(timer.sleeps(), waits, "start slept the decided waits");
    }

    #[test]
    fn max_attempts_and_non_retryable_stop() {
        let r =
            resolved(json!({"command": "x", "max_attempts": 2, "jitter": "none", "base_delay": 0}));
        let (timer, cancel, log) = (FakeTimer::new(), Cancel::new(), Logger::memory(0));
        let mut e = env(&r, &timer, &cancel, &log);
        let Step::Attempt(s) = e.start(None) else {
            panic!()
        };
        let Step::Done(f) = e.end(s, &failed(json!({"status": 401}))) else {
            panic!("401 is final")
        };
        assert_eq!(
            f.record.final_error_type,
            Some(ErrorClass::AuthenticationError)
        );
        let Step::Attempt(s) = e.start(None) else {
            panic!()
        };
        let Step::Retry { state, .. } = e.end(s, &failed(json!({"msg": "timed out"}))) else {
            panic!()
        };
        let Step::Attempt(s) = e.start(Some(state)) else {
            panic!()
        };
        let Step::Done(f) = e.end(s, &failed(json!({"msg": "timed out"}))) else {
            panic!()
        };
        assert_eq!(f.record.stop_reason, "max attempts reached");
        assert_eq!(f.record.status, OperationStatus::Failed);
    }

    #[test]
    fn an_aborted_wait_is_recorded_at_the_length_waited() {
        let r = resolved(json!({"command": "x", "max_attempts": 3, "base_delay": 20,
            "jitter": "none"}));
        let mut timer = FakeTimer::new();
        timer.interrupt_at = Some((Duration::from_secs(5), 15));
        let (cancel, log) = (Cancel::new(), Logger::memory(0));
        let mut e = env(&r, &timer, &cancel, &log);
        let Step::Attempt(s) = e.start(None) else {
            panic!("no first attempt")
        };
        let Step::Retry { state, delay, .. } = e.end(s, &failed(json!({"status": 503}))) else {
            panic!("503 is retried")
        };
        assert_eq!(delay, Duration::from_secs(20));
        let Step::Done(f) = e.start(Some(state)) else {
            panic!("the signal ends the operation")
        };
        assert_eq!(f.record.status, OperationStatus::Aborted);
        assert_eq!(f.aborted_by, Some(15));
        assert_eq!(f.record.attempts[0].delay_before_retry, 5.0);
    }

    #[test]
    fn retry_until_false_is_a_temporary_failure_quoting_the_condition() {
        let r = resolved(json!({"command": "x"}));
        let facts = TaskFacts {
            failed: true,
            until_false: Some("r.json.ready".into()),
            ..TaskFacts::default()
        };
        let v = classify_task(&r.plan, &facts);
        assert_eq!((v.class, v.retryable), (ErrorClass::TemporaryFailure, true));
        assert!(v.message.contains("r.json.ready"));
    }
}
