//! The loop: guards → attempt → classify → decide (`decide.rs`, pure) → wait. It takes a timer,
//! an attempter and a stop handle as values, so tests drive time and outcomes without sleeping
//! or spawning. It emits log lines and returns the operation record; it writes nothing.

mod decide;

use std::time::Duration;

use crate::classify::{AttemptFacts as ClassifyFacts, ErrorClass, Verdict};
use crate::config::{Plan, format_duration};
use crate::exec::{AttemptOutput, AttemptSpec, ExitKind, run_attempt};
use crate::exit::End;
use crate::guards::{Admission, AttemptView, GuardCtx, GuardSet};
use crate::log::Logger;
use crate::log::events::{AttemptStartData, Event, WaitData};
use crate::policy::Schedule;
use crate::record::{AttemptRecord, AttemptStatus, OperationRecord, OperationStatus, timestamp};
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;
pub use decide::Bounds;
use decide::{AttemptFacts, Decision, Stop};

/// Runs one attempt. The real one spawns the plan's command; tests use scripted ones.
pub trait Attempter {
    /// `timeout` is the per-attempt timeout already shortened by the deadline.
    fn attempt(
        &mut self,
        attempt: u32,
        max_attempts: u32,
        timeout: Option<Duration>,
        cancel: &Cancel,
    ) -> AttemptOutput;

    /// Runs one attempt within `bounds`. Attempters that can be asked to stop (a process,
    /// with TERM and a grace before KILL) use all of them; the others get the plain timeout.
    fn attempt_within(
        &mut self,
        attempt: u32,
        max_attempts: u32,
        bounds: &Bounds,
        cancel: &Cancel,
    ) -> AttemptOutput {
        self.attempt(attempt, max_attempts, bounds.timeout, cancel)
    }
}

/// Spawns the plan's command for each attempt.
pub struct ProcessAttempter<'a> {
    pub plan: &'a Plan,
    pub passthrough: bool,
}

impl ProcessAttempter<'_> {
    fn spawn(
        &mut self,
        attempt: u32,
        max_attempts: u32,
        timeout: Option<Duration>,
        kill_by: Option<Duration>,
        cancel: &Cancel,
    ) -> AttemptOutput {
        let Some(command) = &self.plan.command else {
            return AttemptOutput::synthetic(ExitKind::SpawnFailed {
                not_found: true,
                message: "no command given".into(),
            });
        };
        run_attempt(
            &AttemptSpec {
                command,
                chdir: self.plan.chdir.as_deref(),
                env: &self.plan.env,
                stdin: &self.plan.stdin,
                attempt,
                max_attempts,
                timeout,
                kill_grace: self.plan.kill_grace,
                kill_by,
                passthrough: self.passthrough,
                tail_bytes: self.plan.output_tail_bytes,
                retry_if: &self.plan.retry_if,
                fail_if: &self.plan.fail_if,
            },
            cancel,
        )
    }
}

impl Attempter for ProcessAttempter<'_> {
    fn attempt(
        &mut self,
        attempt: u32,
        max_attempts: u32,
        timeout: Option<Duration>,
        cancel: &Cancel,
    ) -> AttemptOutput {
        self.spawn(attempt, max_attempts, timeout, None, cancel)
    }

    /// TERM early enough that the grace ends at the deadline, KILL at it.
    fn attempt_within(
        &mut self,
        attempt: u32,
        max_attempts: u32,
        bounds: &Bounds,
        cancel: &Cancel,
    ) -> AttemptOutput {
        self.spawn(attempt, max_attempts, bounds.term, bounds.kill_by, cancel)
    }
}

/// Who the operation is, for its record.
pub struct Identity {
    pub operation_id: String,
    pub session_id: String,
    pub command: Option<String>,
    pub context: Option<serde_json::Value>,
    pub host: String,
}

/// The engine's answer.
pub struct Outcome {
    pub record: OperationRecord,
    /// The last attempt's output (tails for the result), when one ran.
    pub last: Option<AttemptOutput>,
    /// The signal that stopped retryx, if one did.
    pub aborted_by: Option<i32>,
    /// Notes from guards that adjusted the plan.
    pub adjustments: Vec<String>,
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        self.record.exit_code
    }
    pub fn succeeded(&self) -> bool {
        matches!(
            self.record.status,
            OperationStatus::Completed | OperationStatus::Skipped
        )
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The wait `delay_from_output` asks for: the last capture in the output, in seconds.
fn delay_from_output(plan: &Plan, out: &AttemptOutput) -> Option<Duration> {
    let re = plan.delay_from_output.as_ref()?;
    let text = format!("{}\n{}", lossy(&out.stdout_tail), lossy(&out.stderr_tail));
    let caps = re.captures_iter(&text).last()?;
    let secs: f64 = caps.get(1)?.as_str().trim().parse().ok()?;
    crate::config::duration::from_seconds(secs, "")
        .ok()
        .map(|d| d.min(plan.backoff.max))
}

/// Runs the operation to its end.
pub fn run(
    plan: &mut Plan,
    attempter: &mut dyn Attempter,
    timer: &dyn Timer,
    cancel: &Cancel,
    guards: &mut GuardSet,
    log: &Logger,
    who: Identity,
) -> Outcome {
    let seed = plan
        .jitter_seed
        .unwrap_or_else(crate::sys::entropy::random_u64);
    let adjustments = guards.adjust(plan, log);
    let mut op = Operation {
        plan: &*plan,
        timer,
        cancel,
        log,
        start: timer.now(),
        wall_start: timer.wall(),
        schedule: Schedule::new(plan.backoff.clone(), seed),
        limits: Limits::of_plan(plan),
        progress: Progress::default(),
    };
    op.admit(guards);
    let mut n = 0;
    while op.progress.open() && n < op.limits.max_attempts {
        n += 1;
        if let Some(sig) = cancel.signal() {
            op.progress.aborted_by = Some(sig);
            break;
        }
        if !op.attempt(n, attempter, guards) {
            break;
        }
    }
    op.finish(n, guards, who, seed, adjustments)
}

/// Where the operation stands between attempts.
struct Progress {
    attempts: Vec<AttemptRecord>,
    last: Option<AttemptOutput>,
    status: OperationStatus,
    stop_reason: String,
    final_class: Option<ErrorClass>,
    final_message: Option<String>,
    aborted_by: Option<i32>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            attempts: Vec::new(),
            last: None,
            status: OperationStatus::Failed,
            stop_reason: String::new(),
            final_class: None,
            final_message: None,
            aborted_by: None,
        }
    }
}

impl Progress {
    /// Still failing with nothing decided: another attempt may run.
    fn open(&self) -> bool {
        self.status == OperationStatus::Failed && self.stop_reason.is_empty()
    }

    fn refuse(&mut self, class: ErrorClass, message: String) {
        self.status = OperationStatus::Refused;
        self.stop_reason = message.clone();
        self.final_class = Some(class);
        self.final_message = Some(message);
    }
}

/// One operation under way: what it runs with, and where it stands.
struct Operation<'a> {
    plan: &'a Plan,
    timer: &'a dyn Timer,
    cancel: &'a Cancel,
    log: &'a Logger,
    start: Duration,
    wall_start: chrono::DateTime<chrono::Utc>,
    schedule: Schedule,
    /// The attempt limits in force (the plan's, or a class override's).
    limits: Limits,
    progress: Progress,
}

/// Attempt count and per-attempt timeout in force, and the class whose `class_overrides`
/// entry set them (none: the plan's own).
struct Limits {
    class: Option<ErrorClass>,
    max_attempts: u32,
    timeout: Option<Duration>,
}

impl Limits {
    fn of_plan(plan: &Plan) -> Limits {
        Limits {
            class: None,
            max_attempts: plan.max_attempts,
            timeout: plan.timeout,
        }
    }
}

impl Operation<'_> {
    /// `class_overrides`: a failure's class picks the policy from this attempt on (its entry,
    /// or the plan's own when it has none).
    fn enforce(&mut self, class: ErrorClass) {
        match self.plan.class_policies.get(&class) {
            Some(p) => {
                self.schedule.switch(&p.backoff);
                self.limits = Limits {
                    class: Some(class),
                    max_attempts: p.max_attempts,
                    timeout: p.timeout,
                };
            }
            None => {
                self.schedule.switch(&self.plan.backoff);
                self.limits = Limits::of_plan(self.plan);
            }
        }
    }

    fn ctx(&self, attempt: u32) -> GuardCtx<'_> {
        GuardCtx {
            timer: self.timer,
            cancel: self.cancel,
            log: self.log,
            operation: &self.plan.operation,
            attempt,
            elapsed: self.elapsed(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.timer.now().saturating_sub(self.start)
    }

    fn fields(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut f = vec![("operation", self.plan.operation.clone())];
        f.extend_from_slice(extra);
        f
    }

    /// The guards' word before anything runs.
    fn admit(&mut self, guards: &mut GuardSet) {
        match guards.before_operation(&self.ctx(0)) {
            Admission::Proceed => {}
            // A guard that gave up because retryx was asked to stop (e.g. while queued for a
            // bulkhead slot) is an abort, not a refusal.
            Admission::Refuse { .. } if self.cancel.signal().is_some() => {
                self.progress.aborted_by = self.cancel.signal();
                self.progress.stop_reason = "stopped while waiting on a guard".into();
            }
            Admission::Refuse { class, message } => {
                self.log.error(
                    "operation refused",
                    &self.fields(&[
                        ("error_type", class.to_string()),
                        ("error", message.clone()),
                    ]),
                );
                self.progress.refuse(class, message);
            }
            Admission::Skip { message } => {
                self.log.info(
                    "operation skipped, nothing to do",
                    &self.fields(&[("reason", message.clone())]),
                );
                self.progress.status = OperationStatus::Skipped;
                self.progress.stop_reason = message;
            }
        }
    }

    /// Runs attempt `n` and carries out the decision; false when the operation is over.
    fn attempt(&mut self, n: u32, attempter: &mut dyn Attempter, guards: &mut GuardSet) -> bool {
        if let Admission::Refuse { class, message } = guards.before_attempt(&self.ctx(n)) {
            if let Some(sig) = self.cancel.signal() {
                self.progress.aborted_by = Some(sig);
                return false;
            }
            self.log.error(
                "operation refused",
                &self.fields(&[
                    ("attempt", n.to_string()),
                    ("error_type", class.to_string()),
                    ("error", message.clone()),
                ]),
            );
            self.progress.refuse(class, message);
            return false;
        }
        let plan = self.plan;
        let remaining = plan.deadline.map(|d| d.saturating_sub(self.elapsed()));
        if remaining == Some(Duration::ZERO) {
            self.progress.stop_reason = "deadline reached".into();
            return false;
        }
        let bounds = decide::attempt_bounds(self.limits.timeout, remaining, plan.kill_grace);
        if n > 1 {
            self.log.info(
                "retrying operation",
                &self.fields(&[
                    ("attempt", n.to_string()),
                    ("max_attempts", self.limits.max_attempts.to_string()),
                ]),
            );
        }
        self.log.event(&Event::AttemptStart(AttemptStartData {
            attempt: n,
            max_attempts: plan.max_attempts,
            timeout: bounds.timeout.map(|d| d.as_secs_f64()),
        }));
        let a_start = self.timer.now();
        let a_wall = self.timer.wall();
        let out = attempter.attempt_within(n, self.limits.max_attempts, &bounds, self.cancel);
        let a_dur = self.timer.now().saturating_sub(a_start);
        let interrupted = out.interrupted_by.or_else(|| self.cancel.signal());
        let success = out.exit.success() && interrupted.is_none();
        let verdict = (!success).then(|| classify(plan, &out));
        guards.after_attempt(
            &self.ctx(n),
            &AttemptView {
                success,
                class: verdict.as_ref().map(|v| v.class),
                duration: a_dur,
            },
        );
        let mut record =
            attempt_record(n, &out, verdict.as_ref(), a_wall, self.timer.wall(), a_dur);
        let stopped = interrupted.is_some();
        self.log.event(&crate::record::events::attempt_end(
            &record,
            plan.max_attempts,
            stopped,
        ));
        let timed_out = out.exit == ExitKind::TimedOut;
        self.progress.last = Some(out);
        if let Some(v) = &verdict {
            self.enforce(v.class);
            record.policy_class = self.limits.class;
        }

        let facts = AttemptFacts {
            attempt: n,
            max_attempts: self.limits.max_attempts,
            interrupted,
            verdict: verdict.as_ref(),
            timed_out_by_deadline: timed_out && bounds.cut_by_deadline,
        };
        let decision = match decide::after_attempt(&facts) {
            Some(stop) => Decision::Stop(stop),
            None => {
                let class = verdict
                    .as_ref()
                    .map_or(ErrorClass::UnknownError, |v| v.class);
                let asked = self
                    .progress
                    .last
                    .as_ref()
                    .and_then(|o| delay_from_output(plan, o));
                let delay = asked.unwrap_or_else(|| self.schedule.next_delay(n));
                let guard = guards.before_retry(&self.ctx(n), class);
                decide::retry_or_stop(delay, guard, self.elapsed(), plan.deadline)
            }
        };
        if let Some(v) = &verdict
            && !matches!(decision, Decision::Stop(Stop::Aborted(_)))
        {
            self.progress.final_class = Some(v.class);
            self.progress.final_message = Some(v.message.clone());
        }
        self.carry_out(n, decision, record, verdict.as_ref())
    }

    /// Logs and records the decision; waits when it is a retry. False when the operation ends.
    fn carry_out(
        &mut self,
        n: u32,
        decision: Decision,
        mut record: AttemptRecord,
        verdict: Option<&Verdict>,
    ) -> bool {
        let error = || verdict.map(|v| v.message.clone()).unwrap_or_default();
        let class = || verdict.map(|v| v.class.to_string()).unwrap_or_default();
        let max = self.limits.max_attempts.to_string();
        let stop = match decision {
            Decision::Retry { delay, note } => {
                if let (Some(note), Some(v)) = (note, verdict) {
                    record.retry_reason = Some(format!("{}; {note}", v.reason));
                }
                record.should_retry = true;
                record.delay_before_retry = delay.as_secs_f64();
                let record_at = self.progress.attempts.len();
                self.progress.attempts.push(record);
                self.log.warn(
                    "operation failed, retrying",
                    &self.fields(&[
                        ("attempt", n.to_string()),
                        ("max_attempts", max),
                        ("delay", format_duration(delay)),
                        ("error", error()),
                        ("error_type", class()),
                    ]),
                );
                self.log.event(&Event::Wait(WaitData {
                    attempt: n,
                    next_attempt: n + 1,
                    max_attempts: self.plan.max_attempts,
                    delay: delay.as_secs_f64(),
                    class: verdict.map(|v| v.class),
                }));
                let wait_start = self.timer.now();
                if let Some(sig) = self.timer.sleep(delay, self.cancel) {
                    // Recorded at the length actually waited, not the length planned.
                    let waited = self.timer.now().saturating_sub(wait_start).min(delay);
                    self.progress.attempts[record_at].delay_before_retry = waited.as_secs_f64();
                    self.progress.aborted_by = Some(sig);
                    return false;
                }
                self.schedule.waited(delay);
                return true;
            }
            Decision::Stop(stop) => stop,
        };
        let p = &mut self.progress;
        match stop {
            Stop::Aborted(sig) => {
                record.status = AttemptStatus::Aborted;
                record.retry_reason = Some(format!("retryx was stopped by signal {sig}"));
                p.aborted_by = Some(sig);
            }
            Stop::Succeeded => {
                p.status = OperationStatus::Completed;
                p.stop_reason = "succeeded".into();
            }
            Stop::NotRetryable { ref reason } => p.stop_reason = format!("not retryable: {reason}"),
            Stop::MaxAttempts => p.stop_reason = "max attempts reached".into(),
            Stop::DeadlineReached => p.stop_reason = "deadline reached".into(),
            Stop::RetryRefused { ref reason } => {
                record.retry_reason = Some(reason.clone());
                p.stop_reason = reason.clone();
            }
            Stop::AlreadyDone { ref reason } => {
                record.retry_reason = Some(reason.clone());
                p.status = OperationStatus::Skipped;
                p.stop_reason = reason.clone();
                p.final_class = None;
                p.final_message = None;
            }
            Stop::WaitCrossesDeadline { delay, .. } => {
                record.retry_reason = Some(format!(
                    "the wait of {} would cross the deadline",
                    format_duration(delay)
                ));
                p.stop_reason = "deadline reached".into();
            }
        }
        p.attempts.push(record);
        self.log_stop(n, &stop, error(), class());
        false
    }

    /// The seed's log line for each way an operation ends after an attempt.
    fn log_stop(&self, n: u32, stop: &Stop, error: String, class: String) {
        let (log, attempt) = (self.log, n.to_string());
        match stop {
            // The abort is logged once, when the operation is finished.
            Stop::Aborted(_) => {}
            Stop::Succeeded if n > 1 => log.info(
                "operation succeeded after retry",
                &self.fields(&[
                    ("attempt", attempt),
                    ("max_attempts", self.limits.max_attempts.to_string()),
                ]),
            ),
            Stop::Succeeded => log.debug(
                "operation succeeded",
                &self.fields(&[("attempt", "1".into())]),
            ),
            Stop::NotRetryable { .. } => log.warn_reason(
                "operation failed with non-retryable error",
                &self.fields(&[
                    ("attempt", attempt),
                    ("error", error),
                    ("error_type", class),
                ]),
            ),
            Stop::MaxAttempts => log.error(
                "operation failed after max attempts",
                &self.fields(&[
                    ("attempts", attempt),
                    ("error", error),
                    ("error_type", class),
                ]),
            ),
            Stop::DeadlineReached => log.error(
                "operation failed, deadline reached",
                &self.fields(&[("attempts", attempt), ("error", error)]),
            ),
            Stop::RetryRefused { reason } => log.error(
                "operation failed, retry refused",
                &self.fields(&[
                    ("attempt", attempt),
                    ("reason", reason.clone()),
                    ("error", error),
                ]),
            ),
            Stop::AlreadyDone { reason } => log.info(
                "operation already done, not retrying",
                &self.fields(&[("attempt", attempt), ("reason", reason.clone())]),
            ),
            Stop::WaitCrossesDeadline { deadline, .. } => log.error(
                "operation failed, deadline reached",
                &self.fields(&[
                    ("attempts", attempt),
                    ("deadline", format_duration(*deadline)),
                    ("error", error),
                ]),
            ),
        }
    }

    /// Closes the operation: the abort (if any), the guards' last word, the record.
    fn finish(
        mut self,
        n: u32,
        guards: &mut GuardSet,
        who: Identity,
        seed: u64,
        adjustments: Vec<String>,
    ) -> Outcome {
        let p = &mut self.progress;
        if let Some(sig) = p.aborted_by {
            p.status = OperationStatus::Aborted;
            p.stop_reason = format!("stopped by signal {sig}");
            self.log.warn_reason(
                "operation aborted by signal",
                &[
                    ("operation", self.plan.operation.clone()),
                    ("attempts", p.attempts.len().to_string()),
                    ("signal", sig.to_string()),
                ],
            );
        } else if p.stop_reason.is_empty() {
            p.stop_reason = "max attempts reached".into();
        }
        let succeeded = matches!(
            p.status,
            OperationStatus::Completed | OperationStatus::Skipped
        );
        guards.after_operation(&self.ctx(n), succeeded);
        let p = self.progress;
        let plan = self.plan;
        let end = match (p.status, p.aborted_by) {
            (_, Some(sig)) => End::Aborted(sig),
            (OperationStatus::Completed | OperationStatus::Skipped, _) => End::Succeeded,
            (OperationStatus::Refused, _) => End::Refused,
            _ => End::Failed(p.last.as_ref().map(|o| o.exit.end())),
        };
        let record = OperationRecord {
            operation_id: who.operation_id,
            operation_name: plan.operation.clone(),
            session_id: who.session_id,
            start_time: timestamp(self.wall_start),
            end_time: timestamp(self.timer.wall()),
            status: p.status,
            attempt_count: p.attempts.len() as u32,
            max_attempts: plan.max_attempts,
            execution_time: self.timer.now().saturating_sub(self.start).as_secs_f64(),
            attempts: p.attempts,
            exit_code: crate::exit::of_operation(end),
            // Only an operation that did not succeed has a final error; its attempts keep theirs.
            final_error_type: p.final_class.filter(|_| !succeeded),
            final_error_message: p.final_message.filter(|_| !succeeded),
            stop_reason: p.stop_reason,
            command: who.command,
            context: who.context,
            host: who.host,
            policy: serde_json::to_value(&plan.backoff).unwrap_or_default(),
            jitter_seed: seed,
            guards: guards.report(),
        };
        Outcome {
            record,
            last: p.last,
            aborted_by: p.aborted_by,
            adjustments,
        }
    }
}

/// The classification of a failed attempt, from its exit, output and the plan's rules.
fn classify(plan: &Plan, out: &AttemptOutput) -> Verdict {
    let stderr = lossy(&out.stderr_tail);
    let stdout = lossy(&out.stdout_tail);
    let spawn_msg = match &out.exit {
        ExitKind::SpawnFailed { message, .. } => Some(message.clone()),
        _ => None,
    };
    plan.classifier.classify(&ClassifyFacts {
        exit_code: match out.exit {
            ExitKind::Code(c) => Some(c),
            _ => None,
        },
        signal: match out.exit {
            ExitKind::Signal(s) => Some(s),
            _ => None,
        },
        timed_out: out.exit == ExitKind::TimedOut,
        spawn_error: spawn_msg.as_deref(),
        stderr_tail: &stderr,
        stdout_tail: &stdout,
        stderr_scan: Some(&out.stderr_scan),
        stdout_scan: Some(&out.stdout_scan),
        fail_if_hit: out.fail_if_hit,
        retry_if_hit: out.retry_if_hit,
    })
}

/// The seed's per-attempt record, before the decision adds whether and when it is retried.
fn attempt_record(
    n: u32,
    out: &AttemptOutput,
    verdict: Option<&Verdict>,
    wall_start: chrono::DateTime<chrono::Utc>,
    wall_end: chrono::DateTime<chrono::Utc>,
    took: Duration,
) -> AttemptRecord {
    AttemptRecord {
        attempt_number: n,
        start_time: timestamp(wall_start),
        end_time: timestamp(wall_end),
        status: if verdict.is_none() {
            AttemptStatus::Success
        } else {
            AttemptStatus::Failed
        },
        error_type: verdict.map(|v| v.class),
        error_message: verdict.map(|v| v.message.clone()),
        should_retry: false,
        delay_before_retry: 0.0,
        execution_time: took.as_secs_f64(),
        exit_code: match out.exit {
            ExitKind::Code(c) => Some(c),
            _ => None,
        },
        signal: match out.exit {
            ExitKind::Signal(s) => Some(s),
            _ => None,
        },
        timed_out: out.exit == ExitKind::TimedOut,
        retry_reason: verdict.map(|v| v.reason.clone()),
        stdout_bytes: out.stdout_bytes,
        stderr_bytes: out.stderr_bytes,
        download: None,
        policy_class: None,
        failed_task: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Resolved;
    use crate::sys::clock::FakeTimer;
    use serde_json::{Map, json};

    /// Plays back scripted attempt results, moving the fake clock by each one's duration.
    struct Script<'t> {
        timer: &'t FakeTimer,
        steps: Vec<(ExitKind, &'static str, Duration)>,
        timeouts_seen: Vec<Option<Duration>>,
    }

    impl Attempter for Script<'_> {
        fn attempt(
            &mut self,
            n: u32,
            _max: u32,
            timeout: Option<Duration>,
            _c: &Cancel,
        ) -> AttemptOutput {
            self.timeouts_seen.push(timeout);
            let (exit, stderr, took) =
                self.steps[(n as usize - 1).min(self.steps.len() - 1)].clone();
            let (exit, took) = match timeout {
                Some(t) if took > t => (ExitKind::TimedOut, t),
                _ => (exit, took),
            };
            self.timer.advance(took);
            let mut out = AttemptOutput::synthetic(exit);
            out.stderr_tail = stderr.as_bytes().to_vec();
            out
        }
    }

    fn plan(v: serde_json::Value) -> Plan {
        Resolved::from_value(v, Map::new(), false).unwrap().plan
    }

    fn who() -> Identity {
        Identity {
            operation_id: "op_1_x".into(),
            session_id: "retry_1_x".into(),
            command: None,
            context: None,
            host: "h".into(),
        }
    }

    fn go(
        p: &mut Plan,
        timer: &FakeTimer,
        steps: Vec<(ExitKind, &'static str, Duration)>,
    ) -> (Outcome, Vec<Option<Duration>>) {
        let mut s = Script {
            timer,
            steps,
            timeouts_seen: vec![],
        };
        let out = run(
            p,
            &mut s,
            timer,
            &Cancel::new(),
            &mut GuardSet::default(),
            &Logger::memory(-2),
            who(),
        );
        (out, s.timeouts_seen)
    }

    const FAIL: ExitKind = ExitKind::Code(1);
    const OK: ExitKind = ExitKind::Code(0);
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn fails_twice_then_succeeds_with_the_policy_waits() {
        let t = FakeTimer::new();
        let mut p = plan(json!({"max_attempts": 5, "base_delay": 1, "jitter": "none"}));
        let (o, _) = go(
            &mut p,
            &t,
            vec![
                (FAIL, "connection refused", SEC),
                (FAIL, "connection refused", SEC),
                (OK, "", SEC),
            ],
        );
        assert_eq!(o.record.status, OperationStatus::Completed);
        assert_eq!(o.record.attempt_count, 3);
        assert_eq!(t.sleeps(), vec![SEC, 2 * SEC]);
        assert_eq!(o.record.attempts[0].delay_before_retry, 1.0);
        assert_eq!(
            o.record.attempts[0].error_type,
            Some(ErrorClass::ConnectionError)
        );
        assert!(o.record.attempts[0].should_retry);
        assert!(!o.record.attempts[2].should_retry);
        assert_eq!(o.record.execution_time, 6.0);
        assert_eq!(o.exit_code(), 0);
    }

    #[test]
    fn non_retryable_stops_at_once() {
        let t = FakeTimer::new();
        let mut p = plan(json!({"max_attempts": 5}));
        let (o, _) = go(
            &mut p,
            &t,
            vec![(ExitKind::Code(2), "permission denied", SEC)],
        );
        assert_eq!(o.record.attempt_count, 1);
        assert_eq!(o.record.status, OperationStatus::Failed);
        assert_eq!(o.exit_code(), 2);
        assert!(t.sleeps().is_empty());
        assert!(o.record.stop_reason.starts_with("not retryable"));
    }

    #[test]
    fn max_attempts_exhausted_gives_the_last_exit_code() {
        let t = FakeTimer::new();
        let mut p = plan(
            json!({"max_attempts": 4, "jitter": "none", "base_delay": "100ms", "retry_policy": "linear"}),
        );
        let (o, _) = go(&mut p, &t, vec![(ExitKind::Code(7), "", SEC)]);
        assert_eq!(o.record.attempt_count, 4);
        assert_eq!(o.exit_code(), 7);
        let ms: Vec<u128> = t.sleeps().iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 300]);
    }

    #[test]
    fn a_wait_that_would_cross_the_deadline_is_not_started() {
        let t = FakeTimer::new();
        let mut p =
            plan(json!({"max_attempts": 10, "jitter": "none", "base_delay": 2, "deadline": 6}));
        let (o, _) = go(&mut p, &t, vec![(FAIL, "", SEC)]);
        // 1s attempt, 2s wait, 1s attempt (t=4), next wait 4s would reach 8 > 6: stop.
        assert_eq!(o.record.attempt_count, 2);
        assert_eq!(t.sleeps(), vec![2 * SEC]);
        assert_eq!(o.record.stop_reason, "deadline reached");
        assert!(t.now() <= Duration::from_secs(6));
    }

    #[test]
    fn the_deadline_shortens_the_attempt_timeout() {
        let t = FakeTimer::new();
        let mut p = plan(
            json!({"max_attempts": 3, "jitter": "none", "base_delay": 1, "deadline": 3, "timeout": 10}),
        );
        let (o, seen) = go(&mut p, &t, vec![(FAIL, "", Duration::from_secs(100))]);
        assert_eq!(seen[0], Some(Duration::from_secs(3)));
        assert_eq!(o.record.attempt_count, 1);
        assert_eq!(o.exit_code(), 124);
        assert_eq!(o.record.final_error_type, Some(ErrorClass::Timeout));
    }

    #[test]
    fn spawn_errors_are_never_retried() {
        let t = FakeTimer::new();
        let mut p = plan(json!({"max_attempts": 3}));
        let (o, _) = go(
            &mut p,
            &t,
            vec![(
                ExitKind::SpawnFailed {
                    not_found: true,
                    message: "nope: command not found".into(),
                },
                "",
                SEC,
            )],
        );
        assert_eq!(o.record.attempt_count, 1);
        assert_eq!(o.exit_code(), 127);
        assert_eq!(o.record.final_error_type, Some(ErrorClass::SpawnError));
    }

    #[test]
    fn a_signal_during_the_wait_aborts_with_128_plus_n() {
        let mut t = FakeTimer::new();
        t.interrupt_at = Some((Duration::from_millis(1500), 15));
        let mut p = plan(json!({"max_attempts": 5, "jitter": "none", "base_delay": 1}));
        let (o, _) = go(&mut p, &t, vec![(FAIL, "", SEC)]);
        assert_eq!(o.record.status, OperationStatus::Aborted);
        assert_eq!(o.exit_code(), 143);
        assert_eq!(o.record.attempt_count, 1);
        // The 1s wait was cut after 0.5s: recorded as waited, not as planned.
        assert_eq!(t.sleeps(), vec![SEC]);
        assert_eq!(o.record.attempts[0].delay_before_retry, 0.5);
        assert_eq!(o.record.execution_time, 1.5);
    }

    #[test]
    fn the_deadline_keeps_room_for_the_kill_grace() {
        let t = FakeTimer::new();
        let mut p = plan(
            json!({"max_attempts": 3, "jitter": "none", "base_delay": 0, "deadline": 1, "kill_grace": 5}),
        );
        let mut s = Bounded {
            timer: &t,
            seen: vec![],
        };
        let o = run(
            &mut p,
            &mut s,
            &t,
            &Cancel::new(),
            &mut GuardSet::default(),
            &Logger::memory(-2),
            who(),
        );
        let half = Duration::from_millis(500);
        assert_eq!(s.seen, vec![(Some(half), Some(SEC))]);
        assert_eq!(o.exit_code(), 124);
        assert_eq!(o.record.stop_reason, "deadline reached");
        assert!(t.now() <= SEC);
    }

    /// An attempter that runs until killed: it sees the bounds and ends at `kill_by`.
    struct Bounded<'t> {
        timer: &'t FakeTimer,
        seen: Vec<(Option<Duration>, Option<Duration>)>,
    }

    impl Attempter for Bounded<'_> {
        fn attempt(&mut self, _: u32, _: u32, _: Option<Duration>, _: &Cancel) -> AttemptOutput {
            unreachable!("the engine asks within bounds")
        }
        fn attempt_within(&mut self, _: u32, _: u32, b: &Bounds, _: &Cancel) -> AttemptOutput {
            self.seen.push((b.term, b.kill_by));
            self.timer.advance(b.kill_by.unwrap_or(SEC));
            AttemptOutput::synthetic(ExitKind::TimedOut)
        }
    }

    #[test]
    fn delay_from_output_sets_the_wait_under_the_cap() {
        let t = FakeTimer::new();
        let mut p = plan(
            json!({"max_attempts": 3, "jitter": "none", "base_delay": 1, "max_delay": 5, "delay_from_output": "Retry-After: (\\d+)"}),
        );
        let (_, _) = go(
            &mut p,
            &t,
            vec![
                (FAIL, "HTTP 429\nRetry-After: 3", SEC),
                (FAIL, "Retry-After: 60", SEC),
                (OK, "", SEC),
            ],
        );
        assert_eq!(t.sleeps(), vec![3 * SEC, 5 * SEC]);
    }

    #[test]
    fn same_jitter_seed_same_waits() {
        let waits = |seed: u64| {
            let t = FakeTimer::new();
            let mut p = plan(json!({"max_attempts": 6, "jitter": "full", "jitter_seed": seed}));
            let (o, _) = go(&mut p, &t, vec![(FAIL, "", SEC)]);
            assert_eq!(o.record.jitter_seed, seed);
            t.sleeps()
        };
        assert_eq!(waits(9), waits(9));
        assert_ne!(waits(9), waits(10));
    }

    /// A guard that refuses, as a bulkhead does when its wait is cut short.
    struct Refuses;
    impl crate::guards::Guard for Refuses {
        fn name(&self) -> &'static str {
            "refuses"
        }
        fn before_operation(&mut self, _: &GuardCtx) -> Admission {
            Admission::Refuse {
                class: ErrorClass::BulkheadFull,
                message: "no slot".into(),
            }
        }
    }

    #[test]
    fn a_refusal_is_75_but_a_refusal_after_a_stop_signal_is_an_abort() {
        let t = FakeTimer::new();
        let mut p = plan(json!({"max_attempts": 3}));
        let mut s = Script {
            timer: &t,
            steps: vec![(OK, "", SEC)],
            timeouts_seen: vec![],
        };
        let mut guards = GuardSet::new(vec![Box::new(Refuses)]);
        let o = run(
            &mut p,
            &mut s,
            &t,
            &Cancel::new(),
            &mut guards,
            &Logger::memory(-2),
            who(),
        );
        assert_eq!(
            (o.record.status, o.exit_code()),
            (OperationStatus::Refused, 75)
        );
        let cancel = Cancel::new();
        cancel.trigger(2);
        let o = run(
            &mut p,
            &mut s,
            &t,
            &cancel,
            &mut guards,
            &Logger::memory(-2),
            who(),
        );
        assert_eq!(
            (o.record.status, o.exit_code()),
            (OperationStatus::Aborted, 130)
        );
        assert!(s.timeouts_seen.is_empty(), "nothing ran");
    }
}
