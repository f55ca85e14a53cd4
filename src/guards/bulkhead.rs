//! Bulkhead: at most `max_concurrent` attempts per key run at once, across processes. Each slot
//! is a lock file (`bulkhead_<key>.slot<i>.lock`) held with flock while an attempt runs, so a
//! holder that dies (even by SIGKILL) frees its slot: the kernel drops the lock. The slot is
//! held for the attempt only, not during the backoff waits between attempts, so a retrier that
//! is sleeping does not keep others out. A full bulkhead is waited on for up to `max_wait`
//! (polling with growing pauses of at most 50 ms, cut short by stop signals), then refused with
//! class `bulkhead_full` (exit 75). The lock files are opened close-on-exec, so the command
//! never inherits a slot. This file must not spawn anything or write records.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::state::StateFile;
use super::{Admission, AttemptView, Guard, GuardCtx};
use crate::classify::ErrorClass;
use crate::config::format_duration;
use crate::sys::safe_fs::LockGuard;

pub const DEFAULT_MAX_CONCURRENT: u32 = 1;
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

pub struct Bulkhead {
    file: StateFile,
    key: String,
    max_concurrent: u32,
    max_wait: Duration,
    held: Option<(u32, LockGuard)>,
    last_slot: Option<u32>,
    waited: Duration,
    refused: Option<String>,
    errors: Vec<String>,
}

impl Bulkhead {
    pub fn new(state_dir: &Path, key: &str, max_concurrent: u32, max_wait: Duration) -> Self {
        Bulkhead {
            file: StateFile::new(state_dir, "bulkhead", key),
            key: key.to_string(),
            max_concurrent: max_concurrent.max(1),
            max_wait,
            held: None,
            last_slot: None,
            waited: Duration::ZERO,
            refused: None,
            errors: Vec::new(),
        }
    }

    /// Takes a free slot if there is one, starting at a pid-dependent slot to spread contention.
    fn try_take(&self) -> Result<Option<(u32, LockGuard)>, String> {
        self.file.ensure_dir().map_err(|e| e.to_string())?;
        let n = self.max_concurrent;
        let first = std::process::id() % n;
        for k in 0..n {
            let i = (first + k) % n;
            match LockGuard::try_exclusive(&self.file.lock_path(&format!("slot{i}"))) {
                Ok(Some(lock)) => return Ok(Some((i, lock))),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(None)
    }
}

impl Guard for Bulkhead {
    fn name(&self) -> &'static str {
        "bulkhead"
    }

    fn before_attempt(&mut self, ctx: &GuardCtx) -> Admission {
        if self.held.is_some() {
            return Admission::Proceed;
        }
        let start = ctx.timer.now();
        let mut pause = FIRST_PAUSE;
        let mut logged = false;
        loop {
            match self.try_take() {
                Ok(Some((i, lock))) => {
                    self.waited += ctx.timer.now().saturating_sub(start);
                    self.held = Some((i, lock));
                    self.last_slot = Some(i);
                    return Admission::Proceed;
                }
                Ok(None) => {}
                Err(e) => {
                    ctx.log.warn(
                        "bulkhead state unavailable, letting the call through",
                        &[("key", self.key.clone()), ("error", e.clone())],
                    );
                    self.errors.push(e);
                    return Admission::Proceed;
                }
            }
            let waited = ctx.timer.now().saturating_sub(start);
            if let Some(sig) = ctx.cancel.signal() {
                self.waited += waited;
                let message = format!(
                    "stopped by signal {sig} while waiting for a slot of bulkhead '{}'; the command was not run",
                    self.key
                );
                self.refused = Some(message.clone());
                return Admission::Refuse {
                    class: ErrorClass::BulkheadFull,
                    message,
                };
            }
            if waited >= self.max_wait {
                self.waited += waited;
                let message = format!(
                    "bulkhead '{}' is full: all {} slot(s) busy, waited {} (max_wait {}); the command was not run",
                    self.key,
                    self.max_concurrent,
                    format_duration(waited),
                    format_duration(self.max_wait)
                );
                self.refused = Some(message.clone());
                return Admission::Refuse {
                    class: ErrorClass::BulkheadFull,
                    message,
                };
            }
            if !logged {
                ctx.log.info(
                    "bulkhead full, waiting for a slot",
                    &[
                        ("operation", ctx.operation.to_string()),
                        ("key", self.key.clone()),
                        ("max_concurrent", self.max_concurrent.to_string()),
                        ("max_wait", format_duration(self.max_wait)),
                    ],
                );
                logged = true;
            }
            let _ = ctx
                .timer
                .sleep(pause.min(self.max_wait - waited), ctx.cancel);
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    fn after_attempt(&mut self, _ctx: &GuardCtx, _attempt: &AttemptView) {
        self.held = None;
    }

    fn after_operation(&mut self, _ctx: &GuardCtx, _success: bool) {
        self.held = None;
    }

    fn report(&self) -> Value {
        let mut v = json!({
            "key": self.key,
            "max_concurrent": self.max_concurrent,
            "max_wait": self.max_wait.as_secs_f64(),
            "slot": self.last_slot,
            "waited": self.waited.as_secs_f64(),
            "refused": self.refused,
        });
        if !self.errors.is_empty() {
            v["errors"] = json!(self.errors);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Logger;
    use crate::sys::clock::{FakeTimer, Timer};
    use crate::sys::stop::Cancel;

    fn ctx<'a>(t: &'a FakeTimer, c: &'a Cancel, l: &'a Logger) -> GuardCtx<'a> {
        GuardCtx {
            timer: t,
            cancel: c,
            log: l,
            operation: "op",
            attempt: 1,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn a_full_bulkhead_waits_max_wait_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (t, c, l) = (FakeTimer::new(), Cancel::new(), Logger::memory(-2));
        let mut a = Bulkhead::new(dir.path(), "k", 2, Duration::ZERO);
        let mut b = Bulkhead::new(dir.path(), "k", 2, Duration::ZERO);
        let mut third = Bulkhead::new(dir.path(), "k", 2, Duration::from_secs(3));
        assert_eq!(a.before_attempt(&ctx(&t, &c, &l)), Admission::Proceed);
        assert_eq!(b.before_attempt(&ctx(&t, &c, &l)), Admission::Proceed);
        assert_ne!(a.last_slot, b.last_slot);
        let refused = third.before_attempt(&ctx(&t, &c, &l));
        assert!(
            matches!(&refused, Admission::Refuse { class: ErrorClass::BulkheadFull, message } if message.contains("all 2 slot(s) busy")),
            "{refused:?}"
        );
        assert_eq!(t.now(), Duration::from_secs(3), "waited exactly max_wait");
        assert!(t.sleeps().iter().all(|d| *d <= LONGEST_PAUSE));
        // A slot given back is taken at once.
        a.after_attempt(
            &ctx(&t, &c, &l),
            &AttemptView {
                success: true,
                class: None,
                duration: Duration::ZERO,
            },
        );
        assert_eq!(third.before_attempt(&ctx(&t, &c, &l)), Admission::Proceed);
        assert_eq!(third.last_slot, a.last_slot);
    }

    #[test]
    fn a_stop_signal_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = FakeTimer::new();
        t.interrupt_at = Some((Duration::from_millis(200), 15));
        let (c, l) = (Cancel::new(), Logger::memory(-2));
        let mut a = Bulkhead::new(dir.path(), "k", 1, Duration::ZERO);
        let mut b = Bulkhead::new(dir.path(), "k", 1, Duration::from_secs(3600));
        assert_eq!(a.before_attempt(&ctx(&t, &c, &l)), Admission::Proceed);
        assert!(matches!(
            b.before_attempt(&ctx(&t, &c, &l)),
            Admission::Refuse { message, .. } if message.contains("stopped by signal 15")
        ));
        assert!(t.now() < Duration::from_secs(1));
    }
}
