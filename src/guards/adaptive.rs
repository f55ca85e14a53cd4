//! Adaptive retry (seed 003): before an operation starts, its key's recent history (the last
//! `window` operations that ran at least one attempt, kept in `adaptive_<key>.json` across
//! processes and runs) tunes the plan. The formula, with r the success rate in percent and
//! F the `success_rate_floor`:
//!
//! - fewer than min(5, window) operations in the history, or r ≥ F: the plan is left alone;
//! - else, with the deficit d = (F − r) / F (0 < d ≤ 1):
//!   base_delay ← min(base_delay × (1 + (max_delay_factor − 1) × d), max_delay)
//!   max_attempts ← max(min_attempts, ⌈max_attempts × (1 − d)⌉)  (never more than configured).
//!
//! So a key whose operations all failed waits `max_delay_factor` times longer and tries
//! `min_attempts` times; as successes come back the deficit shrinks and the configured values
//! return. `max_delay` stays a promise and is never raised. The operation's record shows the
//! values before and after and why. This file must not spawn anything or write records.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::backend::{STATE_TTL, Store};
use super::state::Found;
use super::{AttemptView, Guard, GuardCtx};
use crate::config::{Plan, format_duration};
use crate::log::Logger;

pub const DEFAULT_WINDOW: u32 = 20;
pub const DEFAULT_FLOOR: f64 = 50.0;
pub const DEFAULT_MAX_DELAY_FACTOR: f64 = 4.0;
pub const DEFAULT_MIN_ATTEMPTS: u32 = 1;
const MIN_SAMPLES: usize = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub window: u32,
    pub floor: f64,
    pub max_delay_factor: f64,
    pub min_attempts: u32,
}

/// One finished operation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub success: bool,
    pub attempts: u32,
}

/// The document kept in `adaptive_<key>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct History {
    pub key: String,
    pub operations: VecDeque<Entry>,
}

/// What the formula made of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    pub samples: usize,
    pub success_rate: Option<f64>,
    pub base_delay: (Duration, Duration),
    pub max_attempts: (u32, u32),
    pub why: String,
}

/// The documented formula, pure.
pub fn tune(
    s: &Settings,
    history: &[Entry],
    base: Duration,
    max_delay: Duration,
    attempts: u32,
) -> Tuning {
    let samples = history.len();
    let unchanged = |rate: Option<f64>, why: String| Tuning {
        samples,
        success_rate: rate,
        base_delay: (base, base),
        max_attempts: (attempts, attempts),
        why,
    };
    let needed = MIN_SAMPLES.min(s.window as usize).max(1);
    if samples < needed {
        return unchanged(
            None,
            format!("{samples} operation(s) in the history, {needed} needed before adapting"),
        );
    }
    let ok = history.iter().filter(|e| e.success).count();
    let rate = 100.0 * ok as f64 / samples as f64;
    if rate >= s.floor {
        return unchanged(
            Some(rate),
            format!(
                "success rate {rate:.0}% over the last {samples} operations is at or above the {}% floor",
                s.floor
            ),
        );
    }
    let deficit = if s.floor > 0.0 {
        ((s.floor - rate) / s.floor).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let factor = 1.0 + (s.max_delay_factor - 1.0) * deficit;
    let new_base =
        Duration::from_secs_f64((base.as_secs_f64() * factor).min(1e9)).min(max_delay.max(base));
    let cut = (f64::from(attempts) * (1.0 - deficit)).ceil() as u32;
    let new_attempts = cut.max(s.min_attempts).min(attempts).max(1);
    Tuning {
        samples,
        success_rate: Some(rate),
        base_delay: (base, new_base),
        max_attempts: (attempts, new_attempts),
        why: format!(
            "success rate {rate:.0}% over the last {samples} operations is below the {}% floor (deficit {:.2}): base_delay x{factor:.2} = {}, max_attempts {attempts} -> {new_attempts}",
            s.floor,
            deficit,
            format_duration(new_base)
        ),
    }
}

pub struct Adaptive {
    store: Rc<Store>,
    key: String,
    settings: Settings,
    tuning: Option<Tuning>,
    attempts_run: u32,
    errors: Vec<String>,
}

impl Adaptive {
    pub fn new(store: Rc<Store>, key: &str, settings: Settings) -> Self {
        Adaptive {
            store,
            key: key.to_string(),
            settings,
            tuning: None,
            attempts_run: 0,
            errors: Vec::new(),
        }
    }
}

impl Guard for Adaptive {
    fn name(&self) -> &'static str {
        "adaptive"
    }

    fn adjust(&mut self, plan: &mut Plan, log: &Logger) -> Option<String> {
        let local = chrono::Utc::now().timestamp_millis();
        let history = match self
            .store
            .read::<History>(log, "adaptive", &self.key, local)
        {
            Ok((h, _, _)) => h.unwrap_or_default(),
            Err(e) => {
                log.warn(
                    "adaptive retry history unavailable, plan left alone",
                    &[("key", self.key.clone()), ("error", e.to_string())],
                );
                self.errors.push(e.to_string());
                History::default()
            }
        };
        let entries: Vec<Entry> = history.operations.into_iter().collect();
        let t = tune(
            &self.settings,
            &entries,
            plan.backoff.base,
            plan.backoff.max,
            plan.max_attempts,
        );
        let changed = t.base_delay.0 != t.base_delay.1 || t.max_attempts.0 != t.max_attempts.1;
        plan.backoff.base = t.base_delay.1;
        plan.max_attempts = t.max_attempts.1;
        let why = t.why.clone();
        if changed {
            log.info(
                "adaptive retry adjusted the plan",
                &[
                    ("operation", plan.operation.clone()),
                    ("key", self.key.clone()),
                    ("reason", why.clone()),
                ],
            );
        }
        self.tuning = Some(t);
        changed.then(|| format!("adaptive: {why}"))
    }

    fn after_attempt(&mut self, _ctx: &GuardCtx, _attempt: &AttemptView) {
        self.attempts_run += 1;
    }

    fn after_operation(&mut self, ctx: &GuardCtx, success: bool) {
        // Operations refused before any attempt, or stopped by us, say nothing about the service.
        if self.attempts_run == 0 || ctx.cancel.signal().is_some() {
            return;
        }
        let (key, window, attempts) = (self.key.clone(), self.settings.window, self.attempts_run);
        let local = ctx.timer.wall().timestamp_millis();
        match self.store.update(
            ctx.log,
            "adaptive",
            &self.key,
            Some(STATE_TTL),
            local,
            |h: &mut History, _, _| {
                h.key = key.clone();
                h.operations.push_back(Entry { success, attempts });
                while h.operations.len() > window as usize {
                    h.operations.pop_front();
                }
            },
        ) {
            Ok((_, Found::Corrupt(e), _)) => self
                .errors
                .push(format!("history was unreadable and started afresh: {e}")),
            Ok(_) => {}
            Err(e) => {
                ctx.log.warn(
                    "adaptive retry history not saved",
                    &[("key", self.key.clone()), ("error", e.to_string())],
                );
                self.errors.push(e.to_string());
            }
        }
    }

    fn report(&self) -> Value {
        let mut v = json!({
            "key": self.key,
            "window": self.settings.window,
            "success_rate_floor": self.settings.floor,
            "max_delay_factor": self.settings.max_delay_factor,
            "min_attempts": self.settings.min_attempts,
        });
        if let Some(t) = &self.tuning {
            v["samples"] = json!(t.samples);
            v["success_rate"] = json!(t.success_rate);
            v["adjusted"] =
                json!(t.base_delay.0 != t.base_delay.1 || t.max_attempts.0 != t.max_attempts.1);
            v["base_delay"] = json!({"configured": t.base_delay.0.as_secs_f64(), "used": t.base_delay.1.as_secs_f64()});
            v["max_attempts"] = json!({"configured": t.max_attempts.0, "used": t.max_attempts.1});
            v["reason"] = json!(t.why);
        }
        if !self.errors.is_empty() {
            v["errors"] = json!(self.errors);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Settings {
        Settings {
            window: 10,
            floor: 50.0,
            max_delay_factor: 4.0,
            min_attempts: 1,
        }
    }

    fn hist(ok: usize, bad: usize) -> Vec<Entry> {
        let mut v = vec![
            Entry {
                success: true,
                attempts: 1
            };
            ok
        ];
        v.extend(vec![
            Entry {
                success: false,
                attempts: 3
            };
            bad
        ]);
        v
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn too_little_history_or_a_healthy_rate_changes_nothing() {
        let t = tune(&s(), &hist(0, 4), SEC, 30 * SEC, 5);
        assert_eq!((t.base_delay.1, t.max_attempts.1), (SEC, 5));
        let t = tune(&s(), &hist(5, 5), SEC, 30 * SEC, 5);
        assert_eq!((t.base_delay.1, t.max_attempts.1), (SEC, 5));
        assert_eq!(t.success_rate, Some(50.0));
    }

    #[test]
    fn all_failures_give_the_full_factor_and_min_attempts() {
        let t = tune(&s(), &hist(0, 10), SEC, 30 * SEC, 5);
        assert_eq!(t.base_delay.1, 4 * SEC);
        assert_eq!(t.max_attempts.1, 1);
        assert!(t.why.contains("below the 50% floor"), "{}", t.why);
    }

    #[test]
    fn half_the_deficit_gives_half_the_change_and_recovery_restores() {
        // 25% success, floor 50%: deficit 0.5 -> factor 2.5, attempts ceil(6 * 0.5) = 3.
        let t = tune(&s(), &hist(2, 6), SEC, 30 * SEC, 6);
        assert_eq!(t.base_delay.1, Duration::from_millis(2500));
        assert_eq!(t.max_attempts.1, 3);
        let t = tune(&s(), &hist(6, 4), SEC, 30 * SEC, 6);
        assert_eq!((t.base_delay.1, t.max_attempts.1), (SEC, 6));
    }

    #[test]
    fn max_delay_stays_a_promise() {
        let t = tune(&s(), &hist(0, 10), 10 * SEC, 20 * SEC, 5);
        assert_eq!(t.base_delay.1, 20 * SEC);
    }
}
