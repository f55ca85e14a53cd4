//! The engine's pure decision: what an attempt came to (and, when a retry is wanted, the
//! policy's wait and what the guards said) -> retry after d, or stop and why. No clock, no I/O,
//! no randomness: the loop in `engine/mod.rs` gathers the facts and carries out the answer.

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

    proptest! {
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
