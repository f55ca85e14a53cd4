//! The engine's pure decisions: before an attempt, when it is stopped (`attempt_bounds`: the
//! timeout, and the deadline with the kill grace inside it); after it, what it came to (and,
//! when a retry is wanted, the policy's wait and what the guards said) -> retry after d, or
//! stop and why. No clock, no I/O, no randomness: the loop in `engine/mod.rs` gathers the
//! facts and carries out the answer.

use std::time::Duration;

use crate::classify::Verdict;
use crate::guards::RetryVerdict;

/// What one attempt came to, as the loop saw it.
#[derive(Debug, Clone)]
pub(crate) struct AttemptFacts<'a> {
    /// 1-based.
    pub attempt: u32,
    pub max_attempts: u32,
    /// retryx was asked to stop (during the attempt, or the attempt says so).
    pub interrupted: Option<i32>,
    /// The classification of a failed attempt; `None` when it succeeded.
    pub verdict: Option<&'a Verdict>,
    /// The attempt timed out on a timeout the deadline had shortened.
    pub timed_out_by_deadline: bool,
}

/// Why the operation stops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// retryx was stopped by this signal.
    Aborted(i32),
    Succeeded,
    NotRetryable {
        reason: String,
    },
    MaxAttempts,
    /// The last attempt ran into the deadline.
    DeadlineReached,
    /// A guard (budget, network wait, ...) refused the retry.
    RetryRefused {
        reason: String,
    },
    /// A guard found the work already done: success, nothing changed.
    AlreadyDone {
        reason: String,
    },
    /// The next wait would end at or past the deadline, so it is not started.
    WaitCrossesDeadline {
        delay: Duration,
        deadline: Duration,
    },
}

/// The answer after a failed attempt that may be retried.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Stop(Stop),
    /// Wait `delay`, then run the next attempt; `note` adds to the attempt's retry reason.
    Retry {
        delay: Duration,
        note: Option<String>,
    },
}

/// First half, before the guards are asked: `Some(stop)` ends the operation, `None` means a
/// retry is wanted. Order matters: a stop request beats everything, then success, then the
/// classification, then the attempt count, then the deadline.
pub(crate) fn after_attempt(f: &AttemptFacts) -> Option<Stop> {
    if let Some(sig) = f.interrupted {
        return Some(Stop::Aborted(sig));
    }
    let Some(verdict) = f.verdict else {
        return Some(Stop::Succeeded);
    };
    if !verdict.retryable {
        return Some(Stop::NotRetryable {
            reason: verdict.reason.clone(),
        });
    }
    if f.attempt >= f.max_attempts {
        return Some(Stop::MaxAttempts);
    }
    if f.timed_out_by_deadline {
        return Some(Stop::DeadlineReached);
    }
    None
}

/// Second half: the policy's `delay`, what the guards said of a retry, and the time left.
/// `elapsed` is the operation's time so far; a wait that would reach the deadline is refused.
pub(crate) fn retry_or_stop(
    delay: Duration,
    guard: RetryVerdict,
    elapsed: Duration,
    deadline: Option<Duration>,
) -> Decision {
    let (delay, note) = match guard {
        RetryVerdict::Allow => (delay, None),
        // The guard already waited (for the network): go at once.
        RetryVerdict::AllowNow { reason } => (Duration::ZERO, Some(reason)),
        RetryVerdict::Deny { reason } => return Decision::Stop(Stop::RetryRefused { reason }),
        RetryVerdict::Done { reason } => return Decision::Stop(Stop::AlreadyDone { reason }),
    };
    if let Some(deadline) = deadline
        && elapsed + delay >= deadline
    {
        return Decision::Stop(Stop::WaitCrossesDeadline { delay, deadline });
    }
    Decision::Retry { delay, note }
}

/// When an attempt is stopped, as offsets from its start: TERM at `term` (the attempt's own
/// timeout, or earlier for the deadline), everything over by `kill_by` (the deadline), and the
/// plain `timeout` (the shorter of the two limits) for attempters without a kill grace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub timeout: Option<Duration>,
    pub term: Option<Duration>,
    pub kill_by: Option<Duration>,
    /// The deadline, not the attempt's own timeout, set the TERM.
    pub cut_by_deadline: bool,
}

/// The deadline is a hard bound, kill grace included: the grace comes out of the time left,
/// not on top of it, so an attempt that ignores TERM is killed at the deadline. The grace
/// takes at most half the time left: an attempt always gets half of it before any signal.
pub(crate) fn attempt_bounds(
    timeout: Option<Duration>,
    remaining: Option<Duration>,
    grace: Duration,
) -> Bounds {
    let Some(r) = remaining else {
        return Bounds {
            timeout,
            term: timeout,
            kill_by: None,
            cut_by_deadline: false,
        };
    };
    let room = r.saturating_sub(grace.min(r / 2));
    Bounds {
        timeout: Some(timeout.map_or(r, |t| t.min(r))),
        term: Some(timeout.map_or(room, |t| t.min(room))),
        kill_by: Some(r),
        cut_by_deadline: timeout.is_none_or(|t| room < t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ErrorClass;
    use proptest::prelude::*;

    fn verdict(retryable: bool) -> Verdict {
        Verdict {
            class: ErrorClass::ConnectionError,
            retryable,
            reason: "rule".into(),
            message: "boom".into(),
        }
    }

    fn facts(v: Option<&Verdict>) -> AttemptFacts<'_> {
        AttemptFacts {
            attempt: 1,
            max_attempts: 3,
            interrupted: None,
            verdict: v,
            timed_out_by_deadline: false,
        }
    }

    #[test]
    fn the_order_of_reasons_to_stop() {
        let yes = verdict(true);
        let no = verdict(false);
        assert_eq!(after_attempt(&facts(None)), Some(Stop::Succeeded));
        assert_eq!(after_attempt(&facts(Some(&yes))), None);
        assert!(matches!(
            after_attempt(&facts(Some(&no))),
            Some(Stop::NotRetryable { .. })
        ));
        let mut f = facts(Some(&no));
        f.interrupted = Some(15);
        assert_eq!(after_attempt(&f), Some(Stop::Aborted(15)));
        let mut f = facts(Some(&yes));
        f.attempt = 3;
        f.timed_out_by_deadline = true;
        assert_eq!(after_attempt(&f), Some(Stop::MaxAttempts));
        f.attempt = 2;
        assert_eq!(after_attempt(&f), Some(Stop::DeadlineReached));
    }

    #[test]
    fn guards_can_refuse_finish_or_hurry_a_retry() {
        let d = Duration::from_secs(4);
        let deny = RetryVerdict::Deny {
            reason: "budget".into(),
        };
        assert!(matches!(
            retry_or_stop(d, deny, Duration::ZERO, None),
            Decision::Stop(Stop::RetryRefused { .. })
        ));
        let done = RetryVerdict::Done {
            reason: "exists".into(),
        };
        assert!(matches!(
            retry_or_stop(d, done, Duration::ZERO, None),
            Decision::Stop(Stop::AlreadyDone { .. })
        ));
        let now = RetryVerdict::AllowNow {
            reason: "network back".into(),
        };
        assert_eq!(
            retry_or_stop(d, now, Duration::ZERO, None),
            Decision::Retry {
                delay: Duration::ZERO,
                note: Some("network back".into())
            }
        );
    }

    #[test]
    fn the_kill_grace_fits_before_the_deadline() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // No deadline: the timeout alone, grace after it.
        let b = attempt_bounds(Some(s(10)), None, s(5));
        assert_eq!(
            (b.term, b.kill_by, b.cut_by_deadline),
            (Some(s(10)), None, false)
        );
        // 1s left, 5s grace: TERM half-way, KILL at the deadline.
        let b = attempt_bounds(None, Some(s(1)), s(5));
        assert_eq!(
            (b.term, b.kill_by, b.timeout),
            (Some(ms(500)), Some(s(1)), Some(s(1)))
        );
        assert!(b.cut_by_deadline);
        // 2m left, 2s grace: TERM 2s before the deadline.
        let b = attempt_bounds(Some(s(600)), Some(s(120)), s(2));
        assert_eq!((b.term, b.kill_by), (Some(s(118)), Some(s(120))));
        assert!(b.cut_by_deadline);
        // A timeout well inside the deadline is the attempt's own.
        let b = attempt_bounds(Some(s(10)), Some(s(120)), s(2));
        assert_eq!(
            (b.term, b.kill_by, b.cut_by_deadline),
            (Some(s(10)), Some(s(120)), false)
        );
    }

    proptest! {
        /// TERM never comes after KILL or after the attempt's own timeout, KILL never after
        /// the deadline, and the attempt always gets at least half the time left.
        #[test]
        fn bounds_hold_the_deadline(
            timeout_ms in proptest::option::of(0u64..100_000),
            remaining_ms in proptest::option::of(0u64..100_000),
            grace_ms in 0u64..100_000,
        ) {
            let t = timeout_ms.map(Duration::from_millis);
            let r = remaining_ms.map(Duration::from_millis);
            let b = attempt_bounds(t, r, Duration::from_millis(grace_ms));
            if let (Some(term), Some(t)) = (b.term, t) { prop_assert!(term <= t); }
            match r {
                None => prop_assert_eq!((b.term, b.kill_by), (t, None)),
                Some(r) => {
                    let term = b.term.unwrap_or(Duration::MAX);
                    prop_assert_eq!(b.kill_by, Some(r));
                    prop_assert!(term <= r);
                    prop_assert!(term >= (r / 2).min(t.unwrap_or(r)));
                    prop_assert_eq!(b.cut_by_deadline, t.is_none_or(|t| term < t));
                }
            }
        }

        /// A retry is never decided past the attempt budget, for a non-retryable failure, or
        /// after a stop request; and every retry's wait ends before the deadline.
        #[test]
        fn retries_stay_within_attempts_and_deadline(
            attempt in 1u32..20, max in 1u32..20, retryable: bool, stopped: bool,
            delay_ms in 0u64..10_000, elapsed_ms in 0u64..10_000,
            deadline_ms in proptest::option::of(1u64..20_000),
        ) {
            let v = verdict(retryable);
            let f = AttemptFacts {
                attempt, max_attempts: max,
                interrupted: stopped.then_some(2),
                verdict: Some(&v),
                timed_out_by_deadline: false,
            };
            let first = after_attempt(&f);
            if stopped || !retryable || attempt >= max {
                prop_assert!(first.is_some());
            } else {
                prop_assert!(first.is_none());
                let deadline = deadline_ms.map(Duration::from_millis);
                let elapsed = Duration::from_millis(elapsed_ms);
                match retry_or_stop(Duration::from_millis(delay_ms), RetryVerdict::Allow, elapsed, deadline) {
                    Decision::Retry { delay, .. } => {
                        prop_assert_eq!(delay, Duration::from_millis(delay_ms));
                        if let Some(d) = deadline { prop_assert!(elapsed + delay < d); }
                    }
                    Decision::Stop(s) => {
                        let crosses = matches!(s, Stop::WaitCrossesDeadline { .. });
                        prop_assert!(crosses, "{:?}", s);
                    }
                }
            }
        }
    }
}
