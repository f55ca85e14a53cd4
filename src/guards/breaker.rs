//! Circuit breaker per key, shared across processes and runs (closed / open / half-open, as in
//! resilience4j). The state machine is pure (`admit`, `record` on a `BreakerState` with the
//! time passed in); the guard wraps it in locked read-modify-writes of the key's state file.
//! It never spawns anything and never writes records.
//!
//! - Closed: every call runs; each attempt's outcome enters the window (the last `window_size`
//!   calls, or the calls of the last `window_duration`). With at least `minimum_calls` in the
//!   window, a failure rate ≥ `failure_rate_threshold` (or a slow-call rate ≥
//!   `slow_call_rate_threshold`) opens the breaker; so do `consecutive_failures` in a row.
//! - Open: calls are refused (class `circuit_open`, exit 75) until `open_duration` has passed;
//!   `retryx breaker open KEY` forces it open until `reset`.
//! - Half-open: `half_open_max_calls` trial calls run (a permit per call, held by the pid; a
//!   dead holder's permit is reclaimed); when all have reported, the same thresholds over the
//!   trial calls decide: open again, or closed with a fresh window.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::state::{Found, StateFile, pid_alive};
use super::{Admission, AttemptView, Guard, GuardCtx, RetryVerdict};
use crate::classify::ErrorClass;
use crate::config::guards::{CircuitBreakerConfig, WindowType};

pub const DEFAULT_WINDOW_SIZE: u32 = 20;
pub const DEFAULT_WINDOW_DURATION: Duration = Duration::from_secs(60);
pub const DEFAULT_FAILURE_RATE: f64 = 50.0;
pub const DEFAULT_MINIMUM_CALLS: u32 = 5;
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(30);
pub const DEFAULT_HALF_OPEN_CALLS: u32 = 1;
/// Most calls kept in a time window (a bound on the state file).
const MAX_TIME_WINDOW_CALLS: usize = 100_000;

/// The breaker's settings with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub window: Window,
    /// `None` when only `consecutive_failures` was configured.
    pub failure_rate_threshold: Option<f64>,
    pub minimum_calls: u32,
    pub consecutive_failures: Option<u32>,
    pub slow_call_ms: Option<u64>,
    pub slow_call_rate_threshold: f64,
    pub open_ms: u64,
    pub half_open_max_calls: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Count(u32),
    TimeMs(u64),
}

impl Settings {
    pub fn from_config(c: &CircuitBreakerConfig) -> Settings {
        let window = match c.window_type {
            Some(WindowType::Time) => Window::TimeMs(ms(c
                .window_duration
                .map(|d| d.get())
                .unwrap_or(DEFAULT_WINDOW_DURATION))),
            _ => Window::Count(c.window_size.unwrap_or(DEFAULT_WINDOW_SIZE)),
        };
        let failure_rate_threshold = match (c.failure_rate_threshold, c.consecutive_failures) {
            (Some(r), _) => Some(r),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_FAILURE_RATE),
        };
        Settings {
            window,
            failure_rate_threshold,
            minimum_calls: c.minimum_calls.unwrap_or(DEFAULT_MINIMUM_CALLS),
            consecutive_failures: c.consecutive_failures,
            slow_call_ms: c.slow_call_duration.map(|d| ms(d.get())),
            slow_call_rate_threshold: c.slow_call_rate_threshold.unwrap_or(100.0),
            open_ms: ms(c
                .open_duration
                .map(|d| d.get())
                .unwrap_or(DEFAULT_OPEN_DURATION)),
            half_open_max_calls: c.half_open_max_calls.unwrap_or(DEFAULT_HALF_OPEN_CALLS),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Closed,
    Open,
    HalfOpen,
    /// Opened by hand (`retryx breaker open KEY`) until `reset`.
    ForcedOpen,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half_open",
            Phase::ForcedOpen => "forced_open",
        }
    }
}

/// One call: when it ended (epoch ms), and whether it failed / was slow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Call(pub i64, pub bool, pub bool);

/// A half-open trial permit, held by a process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Permit {
    pub pid: u32,
    pub at_ms: i64,
}

/// The document kept in `breaker_<key>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BreakerState {
    pub key: String,
    pub state: Phase,
    /// When the current state began (epoch ms).
    pub since_ms: i64,
    /// Open until then (epoch ms); `None` unless open.
    pub open_until_ms: Option<i64>,
    pub window: VecDeque<Call>,
    pub consecutive_failures: u32,
    pub permits: Vec<Permit>,
    pub trial_results: Vec<Call>,
    /// Every call reported, ever (failures included): counters that show no update is lost.
    pub total_calls: u64,
    pub total_failures: u64,
    pub total_refused: u64,
    pub times_opened: u64,
    /// Why the last transition happened.
    pub reason: Option<String>,
    /// The settings last used (the CLI's `open` uses their open duration).
    pub settings: Option<Settings>,
}

/// Failure and slow-call rates in percent over some calls.
pub fn rates(calls: &[Call]) -> (f64, f64) {
    if calls.is_empty() {
        return (0.0, 0.0);
    }
    let n = calls.len() as f64;
    let failed = calls.iter().filter(|c| c.1).count() as f64;
    let slow = calls.iter().filter(|c| c.2).count() as f64;
    (100.0 * failed / n, 100.0 * slow / n)
}

pub fn time_text(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// What `admit` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    Yes { trial: bool },
    No { message: String },
}

impl BreakerState {
    fn transition(&mut self, to: Phase, now: i64, reason: String) {
        self.state = to;
        self.since_ms = now;
        self.reason = Some(reason);
        self.permits.clear();
        self.trial_results.clear();
        self.consecutive_failures = 0;
        match to {
            Phase::Open => {
                self.times_opened += 1;
                self.window.clear();
            }
            Phase::ForcedOpen => {
                self.times_opened += 1;
                self.window.clear();
                self.open_until_ms = None;
            }
            Phase::Closed => {
                self.window.clear();
                self.open_until_ms = None;
            }
            Phase::HalfOpen => self.open_until_ms = None,
        }
    }

    /// Opens the breaker until `now + open_ms`.
    pub fn open(&mut self, now: i64, open_ms: u64, reason: String) {
        self.transition(Phase::Open, now, reason);
        self.open_until_ms = Some(now.saturating_add(i64::try_from(open_ms).unwrap_or(i64::MAX)));
    }

    pub fn force_open(&mut self, now: i64, reason: String) {
        self.transition(Phase::ForcedOpen, now, reason);
    }

    pub fn reset(&mut self, now: i64, reason: String) {
        self.transition(Phase::Closed, now, reason);
    }

    /// The state as seen at `now` (an open breaker whose time is up reads as half-open).
    pub fn effective(&self, now: i64) -> Phase {
        match (self.state, self.open_until_ms) {
            (Phase::Open, Some(until)) if now >= until => Phase::HalfOpen,
            (s, _) => s,
        }
    }

    fn why_open(&self) -> String {
        self.reason.clone().unwrap_or_default()
    }

    /// May a call run now? Takes a half-open permit for `pid` when it is a trial call.
    pub fn admit(&mut self, s: &Settings, now: i64, pid: u32) -> Admit {
        if self.state == Phase::Open && self.open_until_ms.is_some_and(|u| now >= u) {
            self.transition(
                Phase::HalfOpen,
                now,
                "open duration passed; letting trial calls through".into(),
            );
        }
        match self.state {
            Phase::Closed => Admit::Yes { trial: false },
            Phase::Open => {
                self.total_refused += 1;
                Admit::No {
                    message: format!(
                        "circuit breaker '{}' is open until {} ({}); the command was not run",
                        self.key,
                        time_text(self.open_until_ms.unwrap_or(now)),
                        self.why_open()
                    ),
                }
            }
            Phase::ForcedOpen => {
                self.total_refused += 1;
                Admit::No {
                    message: format!(
                        "circuit breaker '{}' is forced open until someone runs `retryx breaker reset {}` ({}); the command was not run",
                        self.key,
                        self.key,
                        self.why_open()
                    ),
                }
            }
            Phase::HalfOpen => {
                self.permits.retain(|p| pid_alive(p.pid));
                let used = self.permits.len() + self.trial_results.len();
                if used < s.half_open_max_calls as usize {
                    self.permits.push(Permit { pid, at_ms: now });
                    Admit::Yes { trial: true }
                } else {
                    self.total_refused += 1;
                    Admit::No {
                        message: format!(
                            "circuit breaker '{}' is half-open with its {} trial call(s) taken; try again once they report (since {})",
                            self.key,
                            s.half_open_max_calls,
                            time_text(self.since_ms)
                        ),
                    }
                }
            }
        }
    }

    /// Gives back a trial permit without a result (the attempt was stopped by a signal).
    pub fn release(&mut self, pid: u32) {
        if let Some(i) = self.permits.iter().position(|p| p.pid == pid) {
            self.permits.remove(i);
        }
    }

    /// Why the thresholds say "open" for these calls, if they do.
    fn tripped(&self, s: &Settings, calls: &[Call], min_calls: usize) -> Option<String> {
        if calls.len() < min_calls {
            return None;
        }
        let (fail, slow) = rates(calls);
        if let Some(t) = s.failure_rate_threshold
            && fail >= t
        {
            return Some(format!(
                "failure rate {fail:.0}% over {} calls reached the {t}% threshold",
                calls.len()
            ));
        }
        if s.slow_call_ms.is_some() && slow >= s.slow_call_rate_threshold {
            return Some(format!(
                "slow-call rate {slow:.0}% over {} calls reached the {}% threshold",
                calls.len(),
                s.slow_call_rate_threshold
            ));
        }
        None
    }

    /// Reports a call's outcome; may open or close the breaker.
    pub fn record(&mut self, s: &Settings, now: i64, pid: u32, failed: bool, slow: bool) {
        self.total_calls += 1;
        if failed {
            self.total_failures += 1;
        }
        let call = Call(now, failed, slow);
        match self.state {
            Phase::HalfOpen => {
                let Some(i) = self.permits.iter().position(|p| p.pid == pid) else {
                    // A call admitted before the breaker opened: it says nothing about the trial.
                    return;
                };
                self.permits.remove(i);
                self.trial_results.push(call);
                if self.trial_results.len() >= s.half_open_max_calls as usize {
                    let trials = self.trial_results.clone();
                    let verdict = match s.failure_rate_threshold {
                        Some(_) => self.tripped(s, &trials, 1),
                        // Only consecutive_failures configured: any failed trial reopens.
                        None => trials
                            .iter()
                            .any(|c| c.1)
                            .then(|| "a trial call failed".to_string())
                            .or_else(|| self.tripped(s, &trials, 1)),
                    };
                    match verdict {
                        Some(why) => self.open(now, s.open_ms, format!("trial calls: {why}")),
                        None => {
                            self.reset(now, format!("{} trial call(s) went well", trials.len()))
                        }
                    }
                }
            }
            Phase::Open | Phase::ForcedOpen => {}
            Phase::Closed => {
                self.window.push_back(call);
                match s.window {
                    Window::Count(n) => {
                        while self.window.len() > n as usize {
                            self.window.pop_front();
                        }
                    }
                    Window::TimeMs(w) => {
                        let from = now.saturating_sub(i64::try_from(w).unwrap_or(i64::MAX));
                        while self.window.front().is_some_and(|c| c.0 < from)
                            || self.window.len() > MAX_TIME_WINDOW_CALLS
                        {
                            self.window.pop_front();
                        }
                    }
                }
                self.consecutive_failures = if failed {
                    self.consecutive_failures + 1
                } else {
                    0
                };
                if let Some(n) = s.consecutive_failures
                    && self.consecutive_failures >= n
                {
                    let why = format!("{} failures in a row", self.consecutive_failures);
                    self.open(now, s.open_ms, why);
                    return;
                }
                let calls: Vec<Call> = self.window.iter().copied().collect();
                if let Some(why) = self.tripped(s, &calls, s.minimum_calls as usize) {
                    self.open(now, s.open_ms, why);
                }
            }
        }
    }

    /// The document for `retryx breaker status` and the guard's report.
    pub fn summary(&self, now: i64) -> Value {
        let calls: Vec<Call> = self.window.iter().copied().collect();
        let (fail, slow) = rates(&calls);
        json!({
            "key": self.key,
            "state": self.effective(now).as_str(),
            "since": (self.since_ms != 0).then(|| time_text(self.since_ms)),
            "open_until": self.open_until_ms.map(time_text),
            "reason": self.reason,
            "window_calls": calls.len(),
            "failure_rate": fail,
            "slow_call_rate": slow,
            "consecutive_failures": self.consecutive_failures,
            "trial_permits": self.permits.len(),
            "trial_results": self.trial_results.len(),
            "total_calls": self.total_calls,
            "total_failures": self.total_failures,
            "total_refused": self.total_refused,
            "times_opened": self.times_opened,
        })
    }
}

/// The guard: one breaker key for one operation.
pub struct Breaker {
    file: StateFile,
    key: String,
    settings: Settings,
    pid: u32,
    holds_permit: bool,
    state_before: Option<Phase>,
    last: Option<BreakerState>,
    refused: Option<String>,
    denied: Option<String>,
    trial_calls: u32,
    errors: Vec<String>,
    /// The wall time (epoch ms) the guard last looked at the breaker.
    last_now: i64,
}

impl Breaker {
    pub fn new(state_dir: &Path, key: &str, settings: Settings) -> Self {
        Breaker {
            file: StateFile::new(state_dir, "breaker", key),
            key: key.to_string(),
            settings,
            pid: std::process::id(),
            holds_permit: false,
            state_before: None,
            last: None,
            refused: None,
            denied: None,
            trial_calls: 0,
            errors: Vec::new(),
            last_now: 0,
        }
    }

    fn note_error(&mut self, ctx: &GuardCtx, what: &str, e: impl std::fmt::Display) {
        let text = format!("{what}: {e}");
        ctx.log.warn(
            "circuit breaker state unavailable, letting the call through",
            &[("key", self.key.clone()), ("error", text.clone())],
        );
        self.errors.push(text);
    }

    fn note_corrupt(&mut self, ctx: &GuardCtx, found: &Found) {
        if let Found::Corrupt(e) = found {
            self.note_error(ctx, "state file was unreadable and was started afresh", e);
        }
    }

    fn update<R>(&mut self, ctx: &GuardCtx, f: impl FnOnce(&mut BreakerState) -> R) -> Option<R> {
        let key = self.key.clone();
        let settings = self.settings.clone();
        match self.file.update(|st: &mut BreakerState| {
            st.key = key;
            st.settings = Some(settings);
            let r = f(st);
            (r, st.clone())
        }) {
            Ok(((r, st), found)) => {
                self.note_corrupt(ctx, &found);
                self.last = Some(st);
                Some(r)
            }
            Err(e) => {
                self.note_error(ctx, "updating", e);
                None
            }
        }
    }
}

fn now_ms(ctx: &GuardCtx) -> i64 {
    ctx.timer.wall().timestamp_millis()
}

impl Guard for Breaker {
    fn name(&self) -> &'static str {
        "circuit_breaker"
    }

    fn before_attempt(&mut self, ctx: &GuardCtx) -> Admission {
        let now = now_ms(ctx);
        self.last_now = now;
        // Lock-free look first: a closed breaker costs one read and no write.
        let seen = match self.file.read::<BreakerState>() {
            Ok(s) => s,
            Err(e) => {
                self.note_error(ctx, "reading", e);
                return Admission::Proceed;
            }
        };
        if self.state_before.is_none() {
            self.state_before = Some(seen.as_ref().map_or(Phase::Closed, |s| s.effective(now)));
        }
        if seen.as_ref().is_none_or(|s| s.state == Phase::Closed) {
            self.last = seen;
            return Admission::Proceed;
        }
        let (settings, pid) = (self.settings.clone(), self.pid);
        match self.update(ctx, |st| st.admit(&settings, now, pid)) {
            Some(Admit::Yes { trial }) => {
                if trial {
                    self.holds_permit = true;
                    self.trial_calls += 1;
                    ctx.log.info(
                        "circuit breaker half-open, running a trial call",
                        &[
                            ("operation", ctx.operation.to_string()),
                            ("key", self.key.clone()),
                        ],
                    );
                }
                Admission::Proceed
            }
            Some(Admit::No { message }) => {
                self.refused = Some(message.clone());
                Admission::Refuse {
                    class: ErrorClass::CircuitOpen,
                    message,
                }
            }
            None => Admission::Proceed,
        }
    }

    fn after_attempt(&mut self, ctx: &GuardCtx, attempt: &AttemptView) {
        let now = now_ms(ctx);
        self.last_now = now;
        let pid = self.pid;
        let settings = self.settings.clone();
        if ctx.cancel.signal().is_some() {
            // Stopped by us, not failed by the service: say nothing about the service.
            if self.holds_permit {
                self.update(ctx, |st| st.release(pid));
                self.holds_permit = false;
            }
            return;
        }
        let failed = !attempt.success;
        let slow = settings
            .slow_call_ms
            .is_some_and(|limit| ms(attempt.duration) >= limit);
        let before = self.last.as_ref().map(|s| s.state);
        self.update(ctx, |st| st.record(&settings, now, pid, failed, slow));
        self.holds_permit = false;
        if let Some(st) = &self.last
            && Some(st.state) != before
        {
            let reason = st.reason.clone().unwrap_or_default();
            if st.state == Phase::Open {
                ctx.log.warn(
                    "circuit breaker opened",
                    &[
                        ("operation", ctx.operation.to_string()),
                        ("key", self.key.clone()),
                        ("until", st.open_until_ms.map(time_text).unwrap_or_default()),
                        ("reason", reason),
                    ],
                );
            } else if st.state == Phase::Closed && before == Some(Phase::HalfOpen) {
                ctx.log.info(
                    "circuit breaker closed",
                    &[("key", self.key.clone()), ("reason", reason)],
                );
            }
        }
    }

    fn before_retry(&mut self, ctx: &GuardCtx, _class: ErrorClass) -> RetryVerdict {
        // If our own failures just opened the breaker, waiting out the backoff only to be
        // refused helps nobody: stop now, with the command's own exit code.
        match &self.last {
            Some(st) if matches!(st.state, Phase::Open | Phase::ForcedOpen) => {
                let now = now_ms(ctx);
                if st.open_until_ms.is_none_or(|u| u > now) {
                    let reason = format!(
                        "circuit breaker '{}' opened ({}) until {}; not retrying",
                        self.key,
                        st.reason.clone().unwrap_or_default(),
                        st.open_until_ms
                            .map(time_text)
                            .unwrap_or_else(|| "reset".into())
                    );
                    self.denied = Some(reason.clone());
                    return RetryVerdict::Deny { reason };
                }
                RetryVerdict::Allow
            }
            _ => RetryVerdict::Allow,
        }
    }

    fn after_operation(&mut self, ctx: &GuardCtx, _success: bool) {
        if self.holds_permit {
            let pid = self.pid;
            self.update(ctx, |st| st.release(pid));
            self.holds_permit = false;
        }
    }

    fn report(&self) -> Value {
        let mut v = match &self.last {
            Some(st) => st.summary(self.last_now),
            None => json!({"key": self.key, "state": "closed", "total_calls": 0}),
        };
        v["state_before"] = json!(self.state_before.unwrap_or_default().as_str());
        v["refused"] = json!(self.refused);
        v["retry_denied"] = json!(self.denied);
        v["trial_calls"] = json!(self.trial_calls);
        if !self.errors.is_empty() {
            v["errors"] = json!(self.errors);
        }
        v
    }
}

/// What `retryx breaker` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdminAction {
    Status,
    Reset,
    /// Open for this long, or until `reset` when `None`.
    Open(Option<Duration>),
}

/// `retryx breaker status|reset|open KEY`: reads (status, which creates nothing) or changes the
/// key's breaker under its lock; returns the breaker's summary.
pub fn admin(
    state_dir: &Path,
    key: &str,
    action: AdminAction,
    now: i64,
) -> Result<Value, super::state::StateError> {
    let file = StateFile::new(state_dir, "breaker", key);
    let st = match action {
        AdminAction::Status => {
            let st = file.read::<BreakerState>()?;
            let exists = st.is_some();
            let mut v = st
                .unwrap_or_else(|| BreakerState {
                    key: key.to_string(),
                    ..Default::default()
                })
                .summary(now);
            v["exists"] = json!(exists);
            v["file"] = json!(file.path());
            return Ok(v);
        }
        AdminAction::Reset => {
            file.update_durable(|st: &mut BreakerState| {
                st.key = key.to_string();
                st.reset(now, "reset by `retryx breaker reset`".into());
                st.clone()
            })?
            .0
        }
        AdminAction::Open(for_) => {
            file.update_durable(|st: &mut BreakerState| {
                st.key = key.to_string();
                match for_ {
                    Some(d) => st.open(now, ms(d), "opened by `retryx breaker open`".into()),
                    None => st.force_open(now, "forced open by `retryx breaker open`".into()),
                }
                st.clone()
            })?
            .0
        }
    };
    let mut v = st.summary(now);
    v["exists"] = json!(true);
    v["file"] = json!(file.path());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: Value) -> Settings {
        let c: CircuitBreakerConfig = serde_json::from_value(v).unwrap();
        Settings::from_config(&c)
    }

    fn fresh() -> BreakerState {
        BreakerState {
            key: "k".into(),
            ..Default::default()
        }
    }

    const ME: u32 = 1;

    #[test]
    fn a_count_window_opens_at_the_failure_rate_after_minimum_calls() {
        let s =
            settings(json!({"window_size": 4, "minimum_calls": 4, "failure_rate_threshold": 50}));
        let mut b = fresh();
        b.record(&s, 1, ME, true, false);
        b.record(&s, 2, ME, true, false);
        b.record(&s, 3, ME, true, false);
        assert_eq!(b.state, Phase::Closed, "3 calls < minimum_calls 4");
        b.record(&s, 4, ME, false, false);
        assert_eq!(b.state, Phase::Open, "3 of 4 failed = 75% >= 50%");
        assert_eq!(b.open_until_ms, Some(4 + 30_000));
    }

    #[test]
    fn old_calls_leave_a_count_window() {
        let s =
            settings(json!({"window_size": 4, "minimum_calls": 4, "failure_rate_threshold": 60}));
        let mut b = fresh();
        for (t, f) in [
            (1, true),
            (2, true),
            (3, false),
            (4, false),
            (5, false),
            (6, true),
        ] {
            b.record(&s, t, ME, f, false);
        }
        // window: F? no: [3 ok, 4 ok, 5 ok, 6 fail] = 25%
        assert_eq!(b.state, Phase::Closed);
        assert_eq!(b.window.len(), 4);
    }

    #[test]
    fn a_time_window_forgets_calls_older_than_its_duration() {
        let s =
            settings(json!({"window_type": "time", "window_duration": "10s", "minimum_calls": 3}));
        let mut b = fresh();
        b.record(&s, 0, ME, true, false);
        b.record(&s, 1_000, ME, true, false);
        b.record(&s, 20_000, ME, false, false);
        assert_eq!(b.window.len(), 1);
        assert_eq!(b.state, Phase::Closed);
        b.record(&s, 21_000, ME, true, false);
        b.record(&s, 22_000, ME, true, false);
        assert_eq!(b.state, Phase::Open, "2 of 3 in the last 10s failed");
    }

    #[test]
    fn consecutive_failures_alone_ignore_the_rate() {
        let s = settings(json!({"consecutive_failures": 3}));
        assert_eq!(s.failure_rate_threshold, None);
        let mut b = fresh();
        for t in 0..10 {
            b.record(&s, t, ME, t % 2 == 0, false);
        }
        assert_eq!(b.state, Phase::Closed, "50% failures but never 3 in a row");
        b.record(&s, 10, ME, true, false);
        b.record(&s, 11, ME, true, false);
        assert_eq!(b.state, Phase::Closed, "after 9 succeeded: 2 in a row");
        b.record(&s, 12, ME, true, false);
        assert_eq!(b.state, Phase::Open);
        assert!(b.reason.as_deref().unwrap().contains("in a row"));
    }

    #[test]
    fn slow_calls_open_it_too() {
        let s = settings(
            json!({"slow_call_duration": "1s", "slow_call_rate_threshold": 50, "minimum_calls": 2, "failure_rate_threshold": 100}),
        );
        let mut b = fresh();
        b.record(&s, 1, ME, false, true);
        b.record(&s, 2, ME, false, true);
        assert_eq!(b.state, Phase::Open);
        assert!(b.reason.as_deref().unwrap().contains("slow-call"));
    }

    #[test]
    fn open_refuses_then_half_open_trials_decide() {
        let s = settings(
            json!({"consecutive_failures": 1, "open_duration": "10s", "half_open_max_calls": 2}),
        );
        let mut b = fresh();
        b.record(&s, 0, ME, true, false);
        assert!(
            matches!(b.admit(&s, 5_000, ME), Admit::No { message } if message.contains("open until"))
        );
        assert_eq!(b.total_refused, 1);
        let me = std::process::id();
        // 10s later: half-open, two trial permits, a third is refused.
        assert_eq!(b.admit(&s, 10_000, me), Admit::Yes { trial: true });
        assert_eq!(b.state, Phase::HalfOpen);
        assert_eq!(b.admit(&s, 10_001, me), Admit::Yes { trial: true });
        assert!(matches!(b.admit(&s, 10_002, me), Admit::No { .. }));
        b.record(&s, 10_100, me, false, false);
        assert_eq!(b.state, Phase::HalfOpen, "one of two trials reported");
        b.record(&s, 10_200, me, false, false);
        assert_eq!(b.state, Phase::Closed);
        assert!(b.window.is_empty());
    }

    #[test]
    fn a_failed_trial_opens_it_again() {
        let s = settings(json!({"consecutive_failures": 1, "open_duration": "10s"}));
        let mut b = fresh();
        b.record(&s, 0, ME, true, false);
        let me = std::process::id();
        assert_eq!(b.admit(&s, 10_000, me), Admit::Yes { trial: true });
        b.record(&s, 10_500, me, true, false);
        assert_eq!(b.state, Phase::Open);
        assert_eq!(b.open_until_ms, Some(20_500));
        assert_eq!(b.times_opened, 2);
    }

    #[test]
    fn a_dead_holders_permit_is_reclaimed() {
        let s = settings(json!({"consecutive_failures": 1, "open_duration": "1s"}));
        let mut b = fresh();
        b.record(&s, 0, ME, true, false);
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        assert_eq!(b.admit(&s, 1_000, dead), Admit::Yes { trial: true });
        let me = std::process::id();
        assert_eq!(b.admit(&s, 1_001, me), Admit::Yes { trial: true });
    }

    #[test]
    fn forced_open_stays_open_until_reset() {
        let s = settings(json!({}));
        let mut b = fresh();
        b.force_open(0, "by hand".into());
        assert!(
            matches!(b.admit(&s, i64::MAX / 2, ME), Admit::No { message } if message.contains("reset"))
        );
        b.reset(1, "by hand".into());
        assert_eq!(b.admit(&s, 2, ME), Admit::Yes { trial: false });
    }
}
