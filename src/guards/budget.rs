//! Retry budget, as gRPC's retryThrottling (and Envoy's retry budgets): a token bucket per key,
//! shared by every process that retries against the same service. The bucket starts full at
//! `max_tokens`; each failed attempt takes 1 token, each successful one gives back
//! `token_ratio` (never above `max_tokens`). A failure is retried only while more than half the
//! bucket is left (tokens > max_tokens / 2); otherwise the operation stops and its record says
//! why. So a fleet of retriers on one controller backs off as a whole when the service
//! struggles, and first attempts (never throttled) refill the bucket as it recovers. With a
//! Redis `state_backend` the bucket is shared by every host. An unreadable bucket starts full
//! (a budget only ever throttles, so starting full cannot hide an outage from the breaker).
//! This file must not spawn anything or write records.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::backend::{BackendError, STATE_TTL, StateBackend, Store, read_doc, update_doc};
use super::state::Found;
use super::{Admission, AttemptView, Guard, GuardCtx, RetryVerdict};
use crate::classify::ErrorClass;

pub const DEFAULT_MAX_TOKENS: f64 = 10.0;
pub const DEFAULT_TOKEN_RATIO: f64 = 0.1;

/// The document kept in `budget_<key>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Bucket {
    pub key: String,
    /// `None` until the first update: a bucket nobody used is full.
    pub tokens: Option<f64>,
    pub max_tokens: f64,
    pub successes: u64,
    pub failures: u64,
    pub retries_denied: u64,
}

impl Bucket {
    pub fn level(&self, max_tokens: f64) -> f64 {
        self.tokens.unwrap_or(max_tokens).min(max_tokens)
    }

    /// A success gives back `ratio`; a failure takes 1.
    pub fn settle(&mut self, max_tokens: f64, ratio: f64, success: bool) {
        let t = self.level(max_tokens);
        self.max_tokens = max_tokens;
        if success {
            self.successes += 1;
            self.tokens = Some((t + ratio).min(max_tokens));
        } else {
            self.failures += 1;
            self.tokens = Some((t - 1.0).max(0.0));
        }
    }
}

/// Whether a retry may go ahead with `tokens` left in a bucket of `max_tokens`.
pub fn retry_allowed(tokens: f64, max_tokens: f64) -> bool {
    tokens > max_tokens / 2.0
}

pub struct Budget {
    store: Rc<Store>,
    key: String,
    max_tokens: f64,
    ratio: f64,
    tokens_before: Option<f64>,
    tokens: Option<f64>,
    denied: Option<String>,
    errors: Vec<String>,
}

impl Budget {
    pub fn new(store: Rc<Store>, key: &str, max_tokens: f64, ratio: f64) -> Self {
        Budget {
            store,
            key: key.to_string(),
            max_tokens,
            ratio,
            tokens_before: None,
            tokens: None,
            denied: None,
            errors: Vec::new(),
        }
    }

    /// Refuses when the shared backend is down under `closed` (checked once before the
    /// operation, connecting; then from what earlier calls found).
    fn refusal(&mut self, ctx: &GuardCtx, connect: bool) -> Admission {
        if connect {
            let _ = self.store.check(ctx.log);
        }
        match self.store.refusal() {
            Some(message) => {
                self.denied = Some(message.clone());
                Admission::Refuse {
                    class: ErrorClass::BackendUnavailable,
                    message,
                }
            }
            None => Admission::Proceed,
        }
    }

    fn note_error(&mut self, ctx: &GuardCtx, e: String) {
        ctx.log.warn(
            "retry budget state unavailable, not throttling",
            &[("key", self.key.clone()), ("error", e.clone())],
        );
        self.errors.push(e);
    }
}

impl Guard for Budget {
    fn name(&self) -> &'static str {
        "retry_budget"
    }

    fn before_operation(&mut self, ctx: &GuardCtx) -> Admission {
        self.refusal(ctx, true)
    }

    fn before_attempt(&mut self, ctx: &GuardCtx) -> Admission {
        self.refusal(ctx, false)
    }

    fn after_attempt(&mut self, ctx: &GuardCtx, attempt: &AttemptView) {
        if ctx.cancel.signal().is_some() {
            return;
        }
        let (key, max, ratio) = (self.key.clone(), self.max_tokens, self.ratio);
        let local = ctx.timer.wall().timestamp_millis();
        match self.store.update(
            ctx.log,
            "budget",
            &self.key,
            Some(STATE_TTL),
            local,
            |b: &mut Bucket, _, _| {
                b.key = key.clone();
                let before = b.level(max);
                b.settle(max, ratio, attempt.success);
                (before, b.level(max))
            },
        ) {
            Ok(((before, after), found, _)) => {
                if let Found::Corrupt(e) = found {
                    self.note_error(
                        ctx,
                        format!("state file was unreadable and started full: {e}"),
                    );
                }
                self.tokens_before.get_or_insert(before);
                self.tokens = Some(after);
            }
            Err(e) => self.note_error(ctx, e.to_string()),
        }
    }

    fn before_retry(&mut self, ctx: &GuardCtx, _class: ErrorClass) -> RetryVerdict {
        let Some(tokens) = self.tokens else {
            return RetryVerdict::Allow;
        };
        if retry_allowed(tokens, self.max_tokens) {
            return RetryVerdict::Allow;
        }
        let reason = format!(
            "retry budget '{}' exhausted: {tokens:.1} of {} tokens left, retries need more than {} (each failure takes 1, each success gives back {})",
            self.key,
            self.max_tokens,
            self.max_tokens / 2.0,
            self.ratio
        );
        let key = self.key.clone();
        let local = ctx.timer.wall().timestamp_millis();
        if let Err(e) = self.store.update(
            ctx.log,
            "budget",
            &self.key,
            Some(STATE_TTL),
            local,
            |b: &mut Bucket, _, _| {
                b.key = key.clone();
                b.retries_denied += 1;
            },
        ) {
            self.note_error(ctx, e.to_string());
        }
        self.denied = Some(reason.clone());
        RetryVerdict::Deny { reason }
    }

    fn report(&self) -> Value {
        let mut v = json!({
            "key": self.key,
            "max_tokens": self.max_tokens,
            "token_ratio": self.ratio,
            "retry_threshold": self.max_tokens / 2.0,
            "tokens_before": self.tokens_before,
            "tokens": self.tokens,
            "retry_denied": self.denied,
            "backend": self.store.describe(),
        });
        if !self.errors.is_empty() {
            v["errors"] = json!(self.errors);
        }
        v
    }
}

/// What `retryx budget` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdminAction {
    Status,
    /// Refill the bucket and zero its counters.
    Reset,
}

/// `retryx budget status|reset KEY` on any backend; returns the bucket as JSON.
pub fn admin(
    backend: &dyn StateBackend,
    key: &str,
    action: AdminAction,
    local_now: i64,
) -> Result<Value, BackendError> {
    let (bucket, exists) = match action {
        AdminAction::Status => {
            let (b, found, _) = read_doc::<Bucket>(backend, "budget", key, local_now)?;
            let exists = b.is_some() || matches!(found, Found::Corrupt(_));
            (b.unwrap_or_default(), exists)
        }
        AdminAction::Reset => {
            let (b, _, _) = update_doc(
                backend,
                "budget",
                key,
                Some(STATE_TTL),
                local_now,
                true,
                |b: &mut Bucket, _, _| {
                    *b = Bucket {
                        key: key.to_string(),
                        max_tokens: b.max_tokens,
                        ..Default::default()
                    };
                    b.clone()
                },
            )?;
            (b, true)
        }
    };
    // A bucket nobody used is full; its size is the one its users last gave.
    let max = if bucket.max_tokens > 0.0 {
        bucket.max_tokens
    } else {
        DEFAULT_MAX_TOKENS
    };
    let tokens = bucket.level(max);
    Ok(json!({
        "key": key,
        "exists": exists,
        "tokens": tokens,
        "max_tokens": max,
        "retry_threshold": max / 2.0,
        "retries_allowed": retry_allowed(tokens, max),
        "successes": bucket.successes,
        "failures": bucket.failures,
        "retries_denied": bucket.retries_denied,
        "backend": backend.describe(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_drain_and_successes_refill_the_bucket() {
        let mut b = Bucket::default();
        assert_eq!(b.level(10.0), 10.0);
        for _ in 0..5 {
            b.settle(10.0, 0.5, false);
        }
        assert_eq!(b.level(10.0), 5.0);
        assert!(
            !retry_allowed(b.level(10.0), 10.0),
            "5 is not more than half of 10"
        );
        b.settle(10.0, 0.5, true);
        assert!(retry_allowed(b.level(10.0), 10.0));
        for _ in 0..100 {
            b.settle(10.0, 0.5, true);
        }
        assert_eq!(b.level(10.0), 10.0, "never above max_tokens");
        for _ in 0..100 {
            b.settle(10.0, 0.5, false);
        }
        assert_eq!(b.level(10.0), 0.0, "never below zero");
        assert_eq!((b.successes, b.failures), (101, 105));
    }
}
