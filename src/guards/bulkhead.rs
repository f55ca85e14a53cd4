//! Bulkhead: at most `max_concurrent` attempts per key run at once, across processes (and,
//! with a Redis `state_backend`, across hosts). On the file backend each slot is a lock file
//! held with flock while an attempt runs, so a holder that dies (even by SIGKILL) frees its
//! slot: the kernel drops the lock. On Redis a slot is a lease (owner `host:pid:salt`, expiry by
//! the server's clock) renewed every third of `lease_duration` while the attempt runs and
//! released when it ends; a holder that dies stops renewing and its slot frees after at most
//! `lease_duration`. The slot is held for the attempt only, not during the backoff waits
//! between attempts, so a retrier that is sleeping does not keep others out. A full bulkhead is
//! waited on for up to `max_wait` (polling with growing pauses of at most 50 ms, cut short by
//! stop signals), then refused with class `bulkhead_full` (exit 75). This file must not spawn
//! anything or write records.

use std::rc::Rc;
use std::time::Duration;

use serde_json::{Value, json};

use super::backend::{BackendError, DEFAULT_LEASE, Slot, Store, lease_owner};
use super::{Admission, AttemptView, Guard, GuardCtx};
use crate::classify::ErrorClass;
use crate::config::format_duration;

pub const DEFAULT_MAX_CONCURRENT: u32 = 1;
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

pub struct Bulkhead {
    store: Rc<Store>,
    key: String,
    max_concurrent: u32,
    max_wait: Duration,
    lease: Duration,
    owner: String,
    held: Option<Slot>,
    last_slot: Option<u32>,
    slots_taken: u32,
    waited: Duration,
    refused: Option<String>,
    errors: Vec<String>,
}

impl Bulkhead {
    pub fn new(
        store: Rc<Store>,
        key: &str,
        max_concurrent: u32,
        max_wait: Duration,
        lease: Option<Duration>,
    ) -> Self {
        Bulkhead {
            store,
            key: key.to_string(),
            max_concurrent: max_concurrent.max(1),
            max_wait,
            lease: lease.unwrap_or(DEFAULT_LEASE),
            owner: lease_owner(),
            held: None,
            last_slot: None,
            slots_taken: 0,
            waited: Duration::ZERO,
            refused: None,
            errors: Vec::new(),
        }
    }

    fn refuse(&mut self, class: ErrorClass, message: String) -> Admission {
        self.refused = Some(message.clone());
        Admission::Refuse { class, message }
    }
}

impl Guard for Bulkhead {
    fn name(&self) -> &'static str {
        "bulkhead"
    }

    fn before_operation(&mut self, ctx: &GuardCtx) -> Admission {
        match self.store.check(ctx.log) {
            Err(_) if self.store.refusal().is_some() => {
                let m = self.store.refusal().unwrap_or_default();
                self.refuse(ErrorClass::BackendUnavailable, m)
            }
            _ => Admission::Proceed,
        }
    }

    fn before_attempt(&mut self, ctx: &GuardCtx) -> Admission {
        if self.held.is_some() {
            return Admission::Proceed;
        }
        let start = ctx.timer.now();
        let mut pause = FIRST_PAUSE;
        let mut logged = false;
        loop {
            match self.store.take_slot(
                ctx.log,
                &self.key,
                self.max_concurrent,
                &self.owner,
                self.lease,
            ) {
                Ok(Some(slot)) => {
                    self.waited += ctx.timer.now().saturating_sub(start);
                    self.last_slot = slot.index();
                    self.held = Some(slot);
                    self.slots_taken += 1;
                    return Admission::Proceed;
                }
                Ok(None) => {}
                Err(BackendError::Unavailable { .. }) if self.store.refusal().is_some() => {
                    let m = self.store.refusal().unwrap_or_default();
                    return self.refuse(ErrorClass::BackendUnavailable, m);
                }
                Err(e) => {
                    let e = e.to_string();
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
            "slots_taken": self.slots_taken,
            "waited": self.waited.as_secs_f64(),
            "refused": self.refused,
            "backend": self.store.describe(),
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
    use crate::config::guards::BackendFailure;
    use crate::guards::backend::BackendSpec;
    use crate::log::Logger;
    use crate::sys::clock::{FakeTimer, Timer};
    use crate::sys::stop::Cancel;

    fn store(dir: &std::path::Path) -> Rc<Store> {
        Rc::new(Store::new(
            BackendSpec::File(dir.to_path_buf()),
            dir.to_path_buf(),
            BackendFailure::Open,
        ))
    }

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
        let mut a = Bulkhead::new(store(dir.path()), "k", 2, Duration::ZERO, None);
        let mut b = Bulkhead::new(store(dir.path()), "k", 2, Duration::ZERO, None);
        let mut third = Bulkhead::new(store(dir.path()), "k", 2, Duration::from_secs(3), None);
        assert_eq!(a.before_attempt(&ctx(&t, &c, &l)), Admission::Proceed);
        assert_eq!(b.before_attempt(&ctx(&t, &c, &l)), Admission::Proceed);
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
    }

    #[test]
    fn a_stop_signal_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = FakeTimer::new();
        t.interrupt_at = Some((Duration::from_millis(200), 15));
        let (c, l) = (Cancel::new(), Logger::memory(-2));
        let mut a = Bulkhead::new(store(dir.path()), "k", 1, Duration::ZERO, None);
        let mut b = Bulkhead::new(store(dir.path()), "k", 1, Duration::from_secs(3600), None);
        assert_eq!(a.before_attempt(&ctx(&t, &c, &l)), Admission::Proceed);
        assert!(matches!(
            b.before_attempt(&ctx(&t, &c, &l)),
            Admission::Refuse { message, .. } if message.contains("stopped by signal 15")
        ));
        assert!(t.now() < Duration::from_secs(1));
    }
}
