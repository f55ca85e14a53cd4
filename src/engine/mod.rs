//! The loop: guards → attempt → classify → decide → wait. It takes a timer, an attempter and a
//! stop handle as values, so tests drive time and outcomes without sleeping or spawning. It
//! emits log lines and returns the operation record; it writes nothing.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::classify::{AttemptFacts, ErrorClass, Verdict};
use crate::config::{Plan, format_duration};
use crate::exec::{AttemptOutput, AttemptSpec, ExitKind, run_attempt};
use crate::guards::{Admission, AttemptView, GuardCtx, GuardSet, RetryVerdict};
use crate::log::Logger;
use crate::record::events::{AttemptStartData, Event, WaitData};
use crate::record::{AttemptRecord, AttemptStatus, OperationRecord, OperationStatus, timestamp};
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

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
}

/// Spawns the plan's command for each attempt.
pub struct ProcessAttempter<'a> {
    pub plan: &'a Plan,
    pub passthrough: bool,
}

impl Attempter for ProcessAttempter<'_> {
    fn attempt(
        &mut self,
        attempt: u32,
        max_attempts: u32,
        timeout: Option<Duration>,
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
                passthrough: self.passthrough,
                tail_bytes: self.plan.output_tail_bytes,
                retry_if: &self.plan.retry_if,
                fail_if: &self.plan.fail_if,
            },
            cancel,
        )
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
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = timer.now();
    let wall_start = timer.wall();
    let adjustments = guards.adjust(plan, log);
    let plan = &*plan;
    let op = plan.operation.clone();
    let ctx = |attempt: u32| GuardCtx {
        timer,
        cancel,
        log,
        operation: &op,
        attempt,
        elapsed: timer.now().saturating_sub(start),
    };

    let mut attempts: Vec<AttemptRecord> = Vec::new();
    let mut last: Option<AttemptOutput> = None;
    let mut status = OperationStatus::Failed;
    let mut stop_reason = String::new();
    let mut final_class: Option<ErrorClass> = None;
    let mut final_message: Option<String> = None;
    let mut exit_code = 1;
    let mut aborted_by = None;
    let mut previous_delay = Duration::ZERO;

    match guards.before_operation(&ctx(0)) {
        Admission::Proceed => {}
        // A guard that gave up because retryx was asked to stop (e.g. while queued for a
        // bulkhead slot) is an abort, not a refusal.
        Admission::Refuse { .. } if cancel.signal().is_some() => {
            aborted_by = cancel.signal();
            stop_reason = "stopped while waiting on a guard".into();
        }
        Admission::Refuse { class, message } => {
            log.error(
                "operation refused",
                &[
                    ("operation", op.clone()),
                    ("error_type", class.to_string()),
                    ("error", message.clone()),
                ],
            );
            status = OperationStatus::Refused;
            stop_reason = message.clone();
            final_class = Some(class);
            final_message = Some(message);
            exit_code = crate::app::exit::REFUSED;
        }
        Admission::Skip { message } => {
            log.info(
                "operation skipped, nothing to do",
                &[("operation", op.clone()), ("reason", message.clone())],
            );
            status = OperationStatus::Skipped;
            stop_reason = message;
            exit_code = 0;
        }
    }

    let mut n = 0;
    while status == OperationStatus::Failed && stop_reason.is_empty() && n < plan.max_attempts {
        n += 1;
        if let Some(sig) = cancel.signal() {
            aborted_by = Some(sig);
            break;
        }
        if let Admission::Refuse { class, message } = guards.before_attempt(&ctx(n)) {
            if let Some(sig) = cancel.signal() {
                aborted_by = Some(sig);
                break;
            }
            log.error(
                "operation refused",
                &[
                    ("operation", op.clone()),
                    ("attempt", n.to_string()),
                    ("error_type", class.to_string()),
                    ("error", message.clone()),
                ],
            );
            status = OperationStatus::Refused;
            final_class = Some(class);
            final_message = Some(message.clone());
            stop_reason = message;
            exit_code = crate::app::exit::REFUSED;
            break;
        }
        let elapsed = timer.now().saturating_sub(start);
        let remaining = plan.deadline.map(|d| d.saturating_sub(elapsed));
        if remaining == Some(Duration::ZERO) {
            stop_reason = "deadline reached".into();
            break;
        }
        let cut_by_deadline = match (plan.timeout, remaining) {
            (Some(t), Some(r)) => r < t,
            (None, Some(_)) => true,
            _ => false,
        };
        let attempt_timeout = match (plan.timeout, remaining) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        if n > 1 {
            log.info(
                "retrying operation",
                &[
                    ("operation", op.clone()),
                    ("attempt", n.to_string()),
                    ("max_attempts", plan.max_attempts.to_string()),
                ],
            );
        }
        log.event(&Event::AttemptStart(AttemptStartData {
            attempt: n,
            max_attempts: plan.max_attempts,
            timeout: attempt_timeout.map(|d| d.as_secs_f64()),
        }));
        let a_start = timer.now();
        let a_wall = timer.wall();
        let out = attempter.attempt(n, plan.max_attempts, attempt_timeout, cancel);
        let a_dur = timer.now().saturating_sub(a_start);
        let a_wall_end = timer.wall();
        let interrupted = out.interrupted_by.or_else(|| cancel.signal());

        let success = out.exit.success() && interrupted.is_none();
        let verdict: Option<Verdict> = (!success).then(|| {
            let stderr = lossy(&out.stderr_tail);
            let stdout = lossy(&out.stdout_tail);
            let spawn_msg = match &out.exit {
                ExitKind::SpawnFailed { message, .. } => Some(message.clone()),
                _ => None,
            };
            plan.classifier.classify(&AttemptFacts {
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
                fail_if_hit: out.fail_if_hit,
                retry_if_hit: out.retry_if_hit,
            })
        });
        guards.after_attempt(
            &ctx(n),
            &AttemptView {
                success,
                class: verdict.as_ref().map(|v| v.class),
                duration: a_dur,
            },
        );

        let mut record = AttemptRecord {
            attempt_number: n,
            start_time: timestamp(a_wall),
            end_time: timestamp(a_wall_end),
            status: if success {
                AttemptStatus::Success
            } else {
                AttemptStatus::Failed
            },
            error_type: verdict.as_ref().map(|v| v.class),
            error_message: verdict.as_ref().map(|v| v.message.clone()),
            should_retry: false,
            delay_before_retry: 0.0,
            execution_time: a_dur.as_secs_f64(),
            exit_code: match out.exit {
                ExitKind::Code(c) => Some(c),
                _ => None,
            },
            signal: match out.exit {
                ExitKind::Signal(s) => Some(s),
                _ => None,
            },
            timed_out: out.exit == ExitKind::TimedOut,
            retry_reason: verdict.as_ref().map(|v| v.reason.clone()),
            stdout_bytes: out.stdout_bytes,
            stderr_bytes: out.stderr_bytes,
            download: None,
        };
        log.event(&Event::attempt_end(
            &record,
            plan.max_attempts,
            interrupted.is_some(),
        ));
        exit_code = out.exit.shell_code();
        let exit_for_log = out.exit.clone();
        last = Some(out);

        if let Some(sig) = interrupted {
            record.status = AttemptStatus::Aborted;
            record.retry_reason = Some(format!("retryx was stopped by signal {sig}"));
            attempts.push(record);
            aborted_by = Some(sig);
            break;
        }
        let Some(verdict) = verdict else {
            attempts.push(record);
            status = OperationStatus::Completed;
            stop_reason = "succeeded".into();
            exit_code = 0;
            if n > 1 {
                log.info(
                    "operation succeeded after retry",
                    &[
                        ("operation", op.clone()),
                        ("attempt", n.to_string()),
                        ("max_attempts", plan.max_attempts.to_string()),
                    ],
                );
            } else {
                log.debug(
                    "operation succeeded",
                    &[("operation", op.clone()), ("attempt", "1".into())],
                );
            }
            break;
        };
        final_class = Some(verdict.class);
        final_message = Some(verdict.message.clone());

        if !verdict.retryable {
            record.should_retry = false;
            attempts.push(record);
            stop_reason = format!("not retryable: {}", verdict.reason);
            log.warn_reason(
                "operation failed with non-retryable error",
                &[
                    ("operation", op.clone()),
                    ("attempt", n.to_string()),
                    ("error", verdict.message.clone()),
                    ("error_type", verdict.class.to_string()),
                ],
            );
            break;
        }
        if n >= plan.max_attempts {
            attempts.push(record);
            stop_reason = "max attempts reached".into();
            log.error(
                "operation failed after max attempts",
                &[
                    ("operation", op.clone()),
                    ("attempts", n.to_string()),
                    ("error", verdict.message.clone()),
                    ("error_type", verdict.class.to_string()),
                ],
            );
            break;
        }
        if exit_for_log == ExitKind::TimedOut && cut_by_deadline {
            attempts.push(record);
            stop_reason = "deadline reached".into();
            log.error(
                "operation failed, deadline reached",
                &[
                    ("operation", op.clone()),
                    ("attempts", n.to_string()),
                    ("error", verdict.message.clone()),
                ],
            );
            break;
        }
        let mut delay = delay_from_output(
            plan,
            last.as_ref()
                .map_or(&AttemptOutput::synthetic(ExitKind::Code(1)), |o| o),
        )
        .unwrap_or_else(|| plan.backoff.delay(n, previous_delay, &mut rng));
        match guards.before_retry(&ctx(n), verdict.class) {
            RetryVerdict::Allow => {}
            RetryVerdict::AllowNow { reason } => {
                delay = Duration::ZERO;
                record.retry_reason = Some(format!("{}; {reason}", verdict.reason));
            }
            RetryVerdict::Deny { reason } => {
                record.retry_reason = Some(reason.clone());
                attempts.push(record);
                stop_reason = reason.clone();
                log.error(
                    "operation failed, retry refused",
                    &[
                        ("operation", op.clone()),
                        ("attempt", n.to_string()),
                        ("reason", reason),
                        ("error", verdict.message.clone()),
                    ],
                );
                break;
            }
            RetryVerdict::Done { reason } => {
                record.retry_reason = Some(reason.clone());
                attempts.push(record);
                status = OperationStatus::Skipped;
                stop_reason = reason.clone();
                exit_code = 0;
                final_class = None;
                final_message = None;
                log.info(
                    "operation already done, not retrying",
                    &[
                        ("operation", op.clone()),
                        ("attempt", n.to_string()),
                        ("reason", reason),
                    ],
                );
                break;
            }
        }
        if let Some(deadline) = plan.deadline {
            let now = timer.now().saturating_sub(start);
            if now + delay >= deadline {
                record.retry_reason = Some(format!(
                    "the wait of {} would cross the deadline",
                    format_duration(delay)
                ));
                attempts.push(record);
                stop_reason = "deadline reached".into();
                log.error(
                    "operation failed, deadline reached",
                    &[
                        ("operation", op.clone()),
                        ("attempts", n.to_string()),
                        ("deadline", format_duration(deadline)),
                        ("error", verdict.message.clone()),
                    ],
                );
                break;
            }
        }
        record.should_retry = true;
        record.delay_before_retry = delay.as_secs_f64();
        attempts.push(record);
        log.warn(
            "operation failed, retrying",
            &[
                ("operation", op.clone()),
                ("attempt", n.to_string()),
                ("max_attempts", plan.max_attempts.to_string()),
                ("delay", format_duration(delay)),
                ("error", verdict.message.clone()),
                ("error_type", verdict.class.to_string()),
            ],
        );
        log.event(&Event::Wait(WaitData {
            attempt: n,
            next_attempt: n + 1,
            max_attempts: plan.max_attempts,
            delay: delay.as_secs_f64(),
            class: Some(verdict.class),
        }));
        if let Some(sig) = timer.sleep(delay, cancel) {
            aborted_by = Some(sig);
            break;
        }
        previous_delay = delay;
    }

    if let Some(sig) = aborted_by {
        status = OperationStatus::Aborted;
        stop_reason = format!("stopped by signal {sig}");
        exit_code = crate::app::exit::SIGNAL_BASE + sig;
        log.warn_reason(
            "operation aborted by signal",
            &[
                ("operation", op.clone()),
                ("attempts", attempts.len().to_string()),
                ("signal", sig.to_string()),
            ],
        );
    } else if stop_reason.is_empty() {
        stop_reason = "max attempts reached".into();
    }
    guards.after_operation(
        &ctx(n),
        matches!(
            status,
            OperationStatus::Completed | OperationStatus::Skipped
        ),
    );

    let end = timer.now();
    let record = OperationRecord {
        operation_id: who.operation_id,
        operation_name: op.clone(),
        session_id: who.session_id,
        start_time: timestamp(wall_start),
        end_time: timestamp(timer.wall()),
        status,
        attempt_count: attempts.len() as u32,
        max_attempts: plan.max_attempts,
        execution_time: end.saturating_sub(start).as_secs_f64(),
        attempts,
        exit_code,
        final_error_type: final_class,
        final_error_message: final_message,
        stop_reason,
        command: who.command,
        context: who.context,
        host: who.host,
        policy: serde_json::to_value(&plan.backoff).unwrap_or_default(),
        jitter_seed: seed,
        guards: guards.report(),
    };
    Outcome {
        record,
        last,
        aborted_by,
        adjustments,
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
