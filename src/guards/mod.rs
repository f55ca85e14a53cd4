//! Guards protect the service being retried: each is a small type the engine consults at fixed
//! points (before the operation, before each attempt, after each attempt, before each retry,
//! after the operation). This file holds the contract and the set; each guard lives in its own
//! file, and where their shared state lives is behind `backend` (file or Redis). Guards never
//! spawn the command and never write records.

pub mod adaptive;
pub mod backend;
pub mod breaker;
pub mod budget;
mod build;
pub mod bulkhead;
mod file_backend;
pub mod idempotency;
pub mod network;
mod redis_backend;
mod resp;
pub mod state;

pub use build::{DEFAULT_STATE_DIR, GuardError, backend_spec, build, state_dir_for};

use std::time::Duration;

use serde_json::{Map, Value};

use crate::classify::ErrorClass;
use crate::config::Plan;
use crate::log::Logger;
use crate::log::events::{Event, GuardData, GuardDecision};
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

/// Tells the run's observers (`--events`, `-v`) what a guard decided.
fn tell(
    ctx: &GuardCtx,
    guard: &str,
    decision: GuardDecision,
    class: Option<ErrorClass>,
    reason: &str,
) {
    ctx.log.event(&Event::Guard(GuardData {
        guard: guard.to_string(),
        attempt: ctx.attempt,
        decision,
        class,
        reason: reason.to_string(),
    }));
}

/// What the engine tells a guard.
pub struct GuardCtx<'a> {
    pub timer: &'a dyn Timer,
    pub cancel: &'a Cancel,
    pub log: &'a Logger,
    pub operation: &'a str,
    /// The attempt about to run or just run (0 before the first).
    pub attempt: u32,
    /// Time since the operation started.
    pub elapsed: Duration,
}

/// May the operation (or the next attempt) run?
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Proceed,
    /// Refused without running the command (exit 75).
    Refuse {
        class: ErrorClass,
        message: String,
    },
    /// Nothing to do: the work is already done (exit 0, not changed).
    Skip {
        message: String,
    },
}

/// What a guard says about retrying a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryVerdict {
    /// Retry after the policy's wait.
    Allow,
    /// Retry at once (the guard already waited, e.g. for the network).
    AllowNow { reason: String },
    /// Do not retry; the operation fails.
    Deny { reason: String },
    /// The work turned out to be done: stop with success, not changed.
    Done { reason: String },
}

/// What an attempt looked like, for guards that keep statistics.
#[derive(Debug, Clone)]
pub struct AttemptView {
    pub success: bool,
    pub class: Option<ErrorClass>,
    pub duration: Duration,
}

pub trait Guard {
    fn name(&self) -> &'static str;
    /// Adjusts the plan before the first attempt (adaptive retry); returns why, when it did.
    fn adjust(&mut self, _plan: &mut Plan, _log: &Logger) -> Option<String> {
        None
    }
    fn before_operation(&mut self, _ctx: &GuardCtx) -> Admission {
        Admission::Proceed
    }
    fn before_attempt(&mut self, _ctx: &GuardCtx) -> Admission {
        Admission::Proceed
    }
    fn after_attempt(&mut self, _ctx: &GuardCtx, _attempt: &AttemptView) {}
    fn before_retry(&mut self, _ctx: &GuardCtx, _class: ErrorClass) -> RetryVerdict {
        RetryVerdict::Allow
    }
    fn after_operation(&mut self, _ctx: &GuardCtx, _success: bool) {}
    /// What this guard saw and did, for the result and the records.
    fn report(&self) -> Value {
        Value::Null
    }
}

/// The guards configured for one operation, consulted in order.
#[derive(Default)]
pub struct GuardSet {
    guards: Vec<Box<dyn Guard>>,
}

impl GuardSet {
    pub fn new(guards: Vec<Box<dyn Guard>>) -> Self {
        GuardSet { guards }
    }

    pub fn is_empty(&self) -> bool {
        self.guards.is_empty()
    }

    /// The configured guards, in the order they are consulted.
    pub fn names(&self) -> Vec<&'static str> {
        self.guards.iter().map(|g| g.name()).collect()
    }

    pub fn adjust(&mut self, plan: &mut Plan, log: &Logger) -> Vec<String> {
        let mut notes = Vec::new();
        for g in self.guards.iter_mut() {
            if let Some(note) = g.adjust(plan, log) {
                log.event(&Event::Guard(GuardData {
                    guard: g.name().to_string(),
                    attempt: 0,
                    decision: GuardDecision::Adjust,
                    class: None,
                    reason: note.clone(),
                }));
                notes.push(note);
            }
        }
        notes
    }

    fn first_not_proceed(
        &mut self,
        ctx: &GuardCtx,
        f: impl Fn(&mut Box<dyn Guard>) -> Admission,
    ) -> Admission {
        for g in self.guards.iter_mut() {
            let a = f(g);
            match &a {
                Admission::Proceed => continue,
                Admission::Refuse { class, message } => {
                    tell(ctx, g.name(), GuardDecision::Refuse, Some(*class), message)
                }
                Admission::Skip { message } => {
                    tell(ctx, g.name(), GuardDecision::Skip, None, message)
                }
            }
            return a;
        }
        Admission::Proceed
    }

    pub fn before_operation(&mut self, ctx: &GuardCtx) -> Admission {
        self.first_not_proceed(ctx, |g| g.before_operation(ctx))
    }

    pub fn before_attempt(&mut self, ctx: &GuardCtx) -> Admission {
        self.first_not_proceed(ctx, |g| g.before_attempt(ctx))
    }

    pub fn after_attempt(&mut self, ctx: &GuardCtx, view: &AttemptView) {
        self.guards
            .iter_mut()
            .for_each(|g| g.after_attempt(ctx, view));
    }

    /// The first verdict other than `Allow` wins; `AllowNow` only if every guard allows.
    pub fn before_retry(&mut self, ctx: &GuardCtx, class: ErrorClass) -> RetryVerdict {
        let mut verdict = RetryVerdict::Allow;
        let mut by = "";
        for g in self.guards.iter_mut() {
            match g.before_retry(ctx, class) {
                RetryVerdict::Allow => {}
                now @ RetryVerdict::AllowNow { .. } => {
                    verdict = now;
                    by = g.name();
                }
                stop => {
                    verdict = stop;
                    by = g.name();
                    break;
                }
            }
        }
        match &verdict {
            RetryVerdict::Allow => {}
            RetryVerdict::AllowNow { reason } => {
                tell(ctx, by, GuardDecision::RetryNow, Some(class), reason)
            }
            RetryVerdict::Deny { reason } => {
                tell(ctx, by, GuardDecision::DenyRetry, Some(class), reason)
            }
            RetryVerdict::Done { reason } => {
                tell(ctx, by, GuardDecision::Done, Some(class), reason)
            }
        }
        verdict
    }

    pub fn after_operation(&mut self, ctx: &GuardCtx, success: bool) {
        self.guards
            .iter_mut()
            .for_each(|g| g.after_operation(ctx, success));
    }

    pub fn report(&self) -> Map<String, Value> {
        self.guards
            .iter()
            .map(|g| (g.name().to_string(), g.report()))
            .filter(|(_, v)| !v.is_null())
            .collect()
    }
}
