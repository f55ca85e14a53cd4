//! Circuit breaker per key, shared across processes, runs and (with a Redis `state_backend`)
//! hosts: closed / open / half-open, as in resilience4j. The state machine is pure (`admit`,
//! `record` on a `BreakerState` with the time passed in); the guard wraps it in atomic
//! read-modify-writes through the `Store`. It never spawns anything and never writes records.
//!
//! - Closed: every call runs; each attempt's outcome enters the window (the last `window_size`
//!   calls, or the calls of the last `window_duration` counted in 60 fixed buckets, so the state
//!   is bounded by the window, not by the traffic). With at least `minimum_calls` in the window,
//!   a failure rate ≥ `failure_rate_threshold` (or a slow-call rate ≥
//!   `slow_call_rate_threshold`) opens the breaker; so do `consecutive_failures` in a row.
//!   A failed attempt counts as a failure when its class is in `record_classes` (default: the
//!   retryable classes and `unknown_error`) and not in `ignore_classes`; other failures (a
//!   `spawn_error`, a configuration error) do not enter the window at all.
//! - Open: calls are refused (class `circuit_open`, exit 75) until `open_duration` has passed;
//!   `retryx breaker open KEY` forces it open until `reset`.
//! - Half-open: `half_open_max_calls` trial calls run, each under a permit leased to its owner
//!   (`host:pid:salt`) for `lease_duration`, renewed while the call runs; a holder that dies
//!   stops renewing and its permit lapses. When all have reported, the same thresholds over the
//!   trial calls decide: open again, or closed with a fresh window.
//! - A state document that cannot be read never closes an open breaker: it is taken as open
//!   (for `open_duration`), with a warning.

use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::backend::{
    BackendError, BackendSpec, DEFAULT_LEASE, LeaseKeeper, STATE_TTL, StateBackend, Store,
    lease_owner, update_doc,
};
use super::state::Found;
use super::{Admission, AttemptView, Guard, GuardCtx, RetryVerdict};
use crate::classify::ErrorClass;
use crate::config::guards::{CircuitBreakerConfig, WindowType};

pub const DEFAULT_WINDOW_SIZE: u32 = 20;
pub const DEFAULT_WINDOW_DURATION: Duration = Duration::from_secs(60);
pub const DEFAULT_FAILURE_RATE: f64 = 50.0;
pub const DEFAULT_MINIMUM_CALLS: u32 = 5;
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(30);
pub const DEFAULT_HALF_OPEN_CALLS: u32 = 1;
/// A time window is counted in this many fixed buckets (its state never grows beyond them).
pub const TIME_BUCKETS: i64 = 60;

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
    /// How long a trial permit lasts unless renewed.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Classes that count as failures, and classes that never count.
    #[serde(default = "default_record")]
    pub record_classes: BTreeSet<ErrorClass>,
    #[serde(default)]
    pub ignore_classes: BTreeSet<ErrorClass>,
}

fn default_lease_ms() -> u64 {
    ms(DEFAULT_LEASE)
}

fn default_record() -> BTreeSet<ErrorClass> {
    ErrorClass::default_retry_conditions()
}

/// What an attempt's outcome means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counts {
    Success,
    Failure,
    /// Not a call of the service's (ignored or not recorded): enters no window.
    Nothing,
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
            lease_ms: ms(c.lease_duration.map(|d| d.get()).unwrap_or(DEFAULT_LEASE)),
            record_classes: c
                .record_classes
                .as_ref()
                .map(|v| v.iter().copied().collect())
                .unwrap_or_else(default_record),
            ignore_classes: c
                .ignore_classes
                .as_ref()
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// How an attempt counts: a success always; a failure when its class is recorded and not
    /// ignored (an unclassified failure counts as `unknown_error`).
    pub fn counts(&self, success: bool, class: Option<ErrorClass>) -> Counts {
        if success {
            return Counts::Success;
        }
        let c = class.unwrap_or(ErrorClass::UnknownError);
        if self.ignore_classes.contains(&c) || !self.record_classes.contains(&c) {
            Counts::Nothing
        } else {
            Counts::Failure
        }
    }

    fn bucket_ms(&self) -> Option<i64> {
        match self.window {
            Window::TimeMs(w) => Some((i64::try_from(w).unwrap_or(i64::MAX) / TIME_BUCKETS).max(1)),
            Window::Count(_) => None,
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

/// A half-open trial permit: leased to its owner until `until_ms` (renewed while it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Permit {
    pub owner: String,
    pub at_ms: i64,
    pub until_ms: i64,
}

/// One fixed bucket of a time window: the calls that ended in `[start_ms, start_ms + width)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Bucket {
    pub start_ms: i64,
    pub calls: u32,
    pub failures: u32,
    pub slow: u32,
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
    /// The calls of a count window.
    pub window: VecDeque<Call>,
    /// The buckets of a time window.
    pub buckets: VecDeque<Bucket>,
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

/// Calls, failures and slow calls counted together.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tally {
    pub calls: u64,
    pub failures: u64,
    pub slow: u64,
}

impl Tally {
    pub fn of_calls<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Tally {
        calls.into_iter().fold(Tally::default(), |t, c| Tally {
            calls: t.calls + 1,
            failures: t.failures + u64::from(c.1),
            slow: t.slow + u64::from(c.2),
        })
    }

    /// Failure and slow-call rates in percent.
    pub fn rates(&self) -> (f64, f64) {
        if self.calls == 0 {
            return (0.0, 0.0);
        }
        let n = self.calls as f64;
        (
            100.0 * self.failures as f64 / n,
            100.0 * self.slow as f64 / n,
        )
    }
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
                self.buckets.clear();
            }
            Phase::ForcedOpen => {
                self.times_opened += 1;
                self.window.clear();
                self.buckets.clear();
                self.open_until_ms = None;
            }
            Phase::Closed => {
                self.window.clear();
                self.buckets.clear();
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

    /// The time window's buckets still inside the window at `now` (older ones dropped).
    fn expire_buckets(&mut self, s: &Settings, now: i64) {
        if let (Some(width), Window::TimeMs(w)) = (s.bucket_ms(), s.window) {
            let w = i64::try_from(w).unwrap_or(i64::MAX);
            // A bucket counts while any of it is inside the window (at most TIME_BUCKETS + 1).
            let from = now.saturating_sub(w).saturating_sub(width);
            while self.buckets.front().is_some_and(|b| b.start_ms <= from) {
                self.buckets.pop_front();
            }
            while self.buckets.len() > TIME_BUCKETS as usize + 1 {
                self.buckets.pop_front();
            }
        }
    }

    /// What the window holds (a count window's calls, or a time window's buckets).
    pub fn tally(&self) -> Tally {
        self.buckets
            .iter()
            .fold(Tally::of_calls(&self.window), |t, b| Tally {
                calls: t.calls + u64::from(b.calls),
                failures: t.failures + u64::from(b.failures),
                slow: t.slow + u64::from(b.slow),
            })
    }

    /// May a call run now? Takes a half-open permit for `owner` when it is a trial call.
    pub fn admit(&mut self, s: &Settings, now: i64, owner: &str) -> Admit {
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
                // A holder that stopped renewing (it died) has lost its permit.
                self.permits.retain(|p| p.until_ms > now);
                let used = self.permits.len() + self.trial_results.len();
                if used < s.half_open_max_calls as usize {
                    self.permits.push(Permit {
                        owner: owner.to_string(),
                        at_ms: now,
                        until_ms: now.saturating_add(i64::try_from(s.lease_ms).unwrap_or(i64::MAX)),
                    });
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

    /// Gives back a trial permit without a result (the attempt was stopped by a signal, or its
    /// failure does not count).
    pub fn release(&mut self, owner: &str) {
        if let Some(i) = self.permits.iter().position(|p| p.owner == owner) {
            self.permits.remove(i);
        }
    }

    /// Extends `owner`'s permit to `now + lease_ms`; false when it has lapsed already.
    pub fn renew(&mut self, owner: &str, now: i64, lease_ms: u64) -> bool {
        match self.permits.iter_mut().find(|p| p.owner == owner) {
            Some(p) if p.until_ms > now => {
                p.until_ms = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
                true
            }
            _ => false,
        }
    }

    /// Why the thresholds say "open" for these calls, if they do.
    fn tripped(&self, s: &Settings, t: Tally, min_calls: u64) -> Option<String> {
        if t.calls < min_calls.max(1) {
            return None;
        }
        let (fail, slow) = t.rates();
        if let Some(th) = s.failure_rate_threshold
            && fail >= th
        {
            return Some(format!(
                "failure rate {fail:.0}% over {} calls reached the {th}% threshold",
                t.calls
            ));
        }
        if s.slow_call_ms.is_some() && slow >= s.slow_call_rate_threshold {
            return Some(format!(
                "slow-call rate {slow:.0}% over {} calls reached the {}% threshold",
                t.calls, s.slow_call_rate_threshold
            ));
        }
        None
    }

    /// Reports a call's outcome; may open or close the breaker.
    pub fn record(&mut self, s: &Settings, now: i64, owner: &str, failed: bool, slow: bool) {
        self.total_calls += 1;
        if failed {
            self.total_failures += 1;
        }
        let call = Call(now, failed, slow);
        match self.state {
            Phase::HalfOpen => {
                let Some(i) = self.permits.iter().position(|p| p.owner == owner) else {
                    // A call admitted before the breaker opened: it says nothing about the trial.
                    return;
                };
                self.permits.remove(i);
                self.trial_results.push(call);
                if self.trial_results.len() >= s.half_open_max_calls as usize {
                    let trials = self.trial_results.clone();
                    let t = Tally::of_calls(&trials);
                    let verdict = match s.failure_rate_threshold {
                        Some(_) => self.tripped(s, t, 1),
                        // Only consecutive_failures configured: any failed trial reopens.
                        None => (t.failures > 0)
                            .then(|| "a trial call failed".to_string())
                            .or_else(|| self.tripped(s, t, 1)),
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
                match s.window {
                    Window::TimeMs(_) => {
                        let width = s.bucket_ms().unwrap_or(1);
                        // A document from before buckets (one entry per call) is dropped.
                        self.window.clear();
                        self.expire_buckets(s, now);
                        let start = now - now.rem_euclid(width);
                        match self.buckets.back_mut() {
                            Some(b) if b.start_ms == start => {
                                b.calls = b.calls.saturating_add(1);
                                b.failures = b.failures.saturating_add(u32::from(failed));
                                b.slow = b.slow.saturating_add(u32::from(slow));
                            }
                            _ => self.buckets.push_back(Bucket {
                                start_ms: start,
                                calls: 1,
                                failures: u32::from(failed),
                                slow: u32::from(slow),
                            }),
                        }
                    }
                    Window::Count(n) => {
                        self.buckets.clear();
                        self.window.push_back(call);
                        while self.window.len() > n.max(1) as usize {
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
                let t = self.tally();
                if let Some(why) = self.tripped(s, t, u64::from(s.minimum_calls)) {
                    self.open(now, s.open_ms, why);
                }
            }
        }
    }

    /// The document for `retryx breaker status` and the guard's report.
    pub fn summary(&self, now: i64) -> Value {
        let mut seen = self.clone();
        if let Some(s) = &self.settings {
            seen.expire_buckets(s, now);
        }
        let t = seen.tally();
        let (fail, slow) = t.rates();
        json!({
            "key": self.key,
            "state": self.effective(now).as_str(),
            "since": (self.since_ms != 0).then(|| time_text(self.since_ms)),
            "open_until": self.open_until_ms.map(time_text),
            "reason": self.reason,
            "window_calls": t.calls,
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
    store: Rc<Store>,
    key: String,
    settings: Settings,
    owner: String,
    holds_permit: bool,
    keeper: Option<LeaseKeeper>,
    state_before: Option<Phase>,
    last: Option<BreakerState>,
    refused: Option<String>,
    denied: Option<String>,
    trial_calls: u32,
    errors: Vec<String>,
    /// The backend's time (epoch ms) when the guard last looked at the breaker.
    last_now: i64,
}

/// How long a breaker document lives untouched: long enough for its window and open time.
fn ttl_for(s: &Settings, st: &BreakerState) -> Option<Duration> {
    if st.state == Phase::ForcedOpen {
        return None;
    }
    let window = match s.window {
        Window::TimeMs(w) => Duration::from_millis(w),
        Window::Count(_) => Duration::ZERO,
    };
    Some(STATE_TTL.max(2 * Duration::from_millis(s.open_ms) + window))
}

/// Opens an unreadable document's breaker instead of closing it (fail safe).
fn fail_safe(st: &mut BreakerState, s: &Settings, now: i64, found: &Found) {
    if let Found::Corrupt(e) = found {
        st.open(
            now,
            s.open_ms,
            format!("the breaker's state was unreadable ({e}); opened to be safe"),
        );
    }
}

impl Breaker {
    pub fn new(store: Rc<Store>, key: &str, settings: Settings) -> Self {
        Breaker {
            store,
            key: key.to_string(),
            settings,
            owner: lease_owner(),
            holds_permit: false,
            keeper: None,
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
            let text = format!("state was unreadable ({e}): taken as open");
            ctx.log.warn(
                "circuit breaker state unreadable, opened to be safe",
                &[("key", self.key.clone()), ("error", text.clone())],
            );
            self.errors.push(text);
        }
    }

    /// An atomic read-modify-write of the breaker; `Err` only for a backend that is down
    /// under `state_backend_failure: closed` (other errors are noted and give `Ok(None)`).
    fn update<R>(
        &mut self,
        ctx: &GuardCtx,
        f: impl Fn(&mut BreakerState, i64) -> R,
    ) -> Result<Option<R>, String> {
        let (key, settings) = (self.key.clone(), self.settings.clone());
        let local = now_ms(ctx);
        // The TTL follows the state last seen: a breaker forced open by hand never expires.
        let ttl = ttl_for(
            &settings,
            self.last.as_ref().unwrap_or(&BreakerState::default()),
        );
        let r = self.store.update(
            ctx.log,
            "breaker",
            &self.key,
            ttl,
            local,
            |st: &mut BreakerState, now, found| {
                st.key = key.clone();
                st.settings = Some(settings.clone());
                fail_safe(st, &settings, now, found);
                let r = f(st, now);
                (r, st.clone())
            },
        );
        match r {
            Ok(((r, st), found, now)) => {
                self.note_corrupt(ctx, &found);
                self.last = Some(st);
                self.last_now = now;
                Ok(Some(r))
            }
            Err(BackendError::Unavailable { .. }) if self.store.refusal().is_some() => {
                Err(self.store.refusal().unwrap_or_default())
            }
            Err(e) => {
                self.note_error(ctx, "updating", e);
                Ok(None)
            }
        }
    }

    fn refuse_unavailable(&mut self, message: String) -> Admission {
        self.refused = Some(message.clone());
        Admission::Refuse {
            class: ErrorClass::BackendUnavailable,
            message,
        }
    }

    /// Keeps the trial permit leased while the trial call runs.
    fn keep_permit(&mut self) {
        let spec: BackendSpec = self.store.active_spec();
        let (key, owner, lease_ms) = (self.key.clone(), self.owner.clone(), self.settings.lease_ms);
        let mut backend: Option<Box<dyn StateBackend>> = None;
        self.keeper = Some(LeaseKeeper::start(
            Duration::from_millis(lease_ms),
            move |last| {
                if last {
                    return;
                }
                let b = backend.get_or_insert_with(|| spec.open());
                let local = Utc::now().timestamp_millis();
                // A renewal that fails lets the permit lapse: the documented bound.
                let _ = update_doc(
                    b.as_ref(),
                    "breaker",
                    &key,
                    Some(STATE_TTL),
                    local,
                    false,
                    |st: &mut BreakerState, now, _| st.renew(&owner, now, lease_ms),
                );
            },
        ));
    }
}

fn now_ms(ctx: &GuardCtx) -> i64 {
    ctx.timer.wall().timestamp_millis()
}

impl Guard for Breaker {
    fn name(&self) -> &'static str {
        "circuit_breaker"
    }

    fn before_operation(&mut self, ctx: &GuardCtx) -> Admission {
        match self.store.check(ctx.log) {
            Err(BackendError::Unavailable { .. }) if self.store.refusal().is_some() => {
                let m = self.store.refusal().unwrap_or_default();
                self.refuse_unavailable(m)
            }
            _ => Admission::Proceed,
        }
    }

    fn before_attempt(&mut self, ctx: &GuardCtx) -> Admission {
        if let Some(m) = self.store.refusal() {
            return self.refuse_unavailable(m);
        }
        let local = now_ms(ctx);
        // A look first: a closed breaker costs one read and no write.
        let seen = match self
            .store
            .read::<BreakerState>(ctx.log, "breaker", &self.key, local)
        {
            Ok((doc, found, now)) => {
                self.last_now = now;
                (doc, found)
            }
            Err(BackendError::Unavailable { .. }) if self.store.refusal().is_some() => {
                let m = self.store.refusal().unwrap_or_default();
                return self.refuse_unavailable(m);
            }
            Err(e) => {
                self.note_error(ctx, "reading", e);
                return Admission::Proceed;
            }
        };
        let now = self.last_now;
        let unreadable = matches!(seen.1, Found::Corrupt(_));
        if self.state_before.is_none() {
            self.state_before = Some(if unreadable {
                Phase::Open
            } else {
                seen.0.as_ref().map_or(Phase::Closed, |s| s.effective(now))
            });
        }
        if !unreadable && seen.0.as_ref().is_none_or(|s| s.state == Phase::Closed) {
            self.last = seen.0;
            return Admission::Proceed;
        }
        self.last = seen.0;
        let (settings, owner) = (self.settings.clone(), self.owner.clone());
        match self.update(ctx, |st, now| st.admit(&settings, now, &owner)) {
            Ok(Some(Admit::Yes { trial })) => {
                if trial {
                    self.holds_permit = true;
                    self.trial_calls += 1;
                    self.keep_permit();
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
            Ok(Some(Admit::No { message })) => {
                self.refused = Some(message.clone());
                Admission::Refuse {
                    class: ErrorClass::CircuitOpen,
                    message,
                }
            }
            Ok(None) => Admission::Proceed,
            Err(m) => self.refuse_unavailable(m),
        }
    }

    fn after_attempt(&mut self, ctx: &GuardCtx, attempt: &AttemptView) {
        // The renewals stop before the permit is given back or used.
        self.keeper = None;
        let owner = self.owner.clone();
        let settings = self.settings.clone();
        let counts = settings.counts(attempt.success, attempt.class);
        if ctx.cancel.signal().is_some() || counts == Counts::Nothing {
            // Stopped by us, or a failure that says nothing about the service: give the permit
            // back and record nothing.
            if self.holds_permit {
                let _ = self.update(ctx, |st, _| st.release(&owner));
                self.holds_permit = false;
            }
            return;
        }
        let failed = counts == Counts::Failure;
        let slow = settings
            .slow_call_ms
            .is_some_and(|limit| ms(attempt.duration) >= limit);
        let before = self.last.as_ref().map(|s| s.state);
        let _ = self.update(ctx, |st, now| {
            st.record(&settings, now, &owner, failed, slow)
        });
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

    fn before_retry(&mut self, _ctx: &GuardCtx, _class: ErrorClass) -> RetryVerdict {
        // If our own failures just opened the breaker, waiting out the backoff only to be
        // refused helps nobody: stop now, with the command's own exit code.
        match &self.last {
            Some(st) if matches!(st.state, Phase::Open | Phase::ForcedOpen) => {
                let now = self.last_now;
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
        self.keeper = None;
        if self.holds_permit {
            let owner = self.owner.clone();
            let _ = self.update(ctx, |st, _| st.release(&owner));
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
        v["backend"] = json!(self.store.describe());
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

/// `retryx breaker status|reset|open KEY` on any backend: reads (status, which creates
/// nothing) or changes the key's breaker atomically; returns the breaker's summary.
pub fn admin(
    backend: &dyn StateBackend,
    key: &str,
    action: AdminAction,
    local_now: i64,
) -> Result<Value, BackendError> {
    let (st, exists, now) = match action {
        AdminAction::Status => {
            let (st, found, now) =
                super::backend::read_doc::<BreakerState>(backend, "breaker", key, local_now)?;
            let exists = st.is_some() || matches!(found, Found::Corrupt(_));
            let mut st = st.unwrap_or_else(|| BreakerState {
                key: key.to_string(),
                ..Default::default()
            });
            if let Found::Corrupt(e) = &found {
                // Shown as the guards will take it: open.
                let s = st
                    .settings
                    .clone()
                    .unwrap_or_else(|| Settings::from_config(&Default::default()));
                st.key = key.to_string();
                st.open(
                    now,
                    s.open_ms,
                    format!("the breaker's state was unreadable ({e}); taken as open"),
                );
            }
            (st, exists, now)
        }
        AdminAction::Reset | AdminAction::Open(_) => {
            let (st, _, now) = update_doc(
                backend,
                "breaker",
                key,
                match action {
                    AdminAction::Open(None) => None,
                    _ => Some(STATE_TTL),
                },
                local_now,
                true,
                |st: &mut BreakerState, now, _| {
                    st.key = key.to_string();
                    match action {
                        AdminAction::Open(Some(d)) => {
                            st.open(now, ms(d), "opened by `retryx breaker open`".into())
                        }
                        AdminAction::Open(None) => {
                            st.force_open(now, "forced open by `retryx breaker open`".into())
                        }
                        _ => st.reset(now, "reset by `retryx breaker reset`".into()),
                    }
                    st.clone()
                },
            )?;
            (st, true, now)
        }
    };
    let mut v = st.summary(now);
    v["exists"] = json!(exists);
    v["backend"] = json!(backend.describe());
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

    const ME: &str = "host:1:aa";

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
        assert_eq!(b.tally().calls, 1);
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
        let me = "host:2:bb";
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
        let me = "host:2:bb";
        assert_eq!(b.admit(&s, 10_000, me), Admit::Yes { trial: true });
        b.record(&s, 10_500, me, true, false);
        assert_eq!(b.state, Phase::Open);
        assert_eq!(b.open_until_ms, Some(20_500));
        assert_eq!(b.times_opened, 2);
    }

    #[test]
    fn a_permit_lapses_after_its_lease_unless_renewed() {
        let s = settings(
            json!({"consecutive_failures": 1, "open_duration": "1s", "lease_duration": "5s"}),
        );
        let mut b = fresh();
        b.record(&s, 0, ME, true, false);
        assert_eq!(b.admit(&s, 1_000, "dead"), Admit::Yes { trial: true });
        assert!(
            matches!(b.admit(&s, 5_999, ME), Admit::No { .. }),
            "lease still runs"
        );
        assert!(
            b.renew("dead", 5_000, s.lease_ms),
            "renewed before it lapsed"
        );
        assert!(
            matches!(b.admit(&s, 9_999, ME), Admit::No { .. }),
            "renewed to 10s"
        );
        assert!(!b.renew("dead", 10_000, s.lease_ms), "lapsed: no renewal");
        assert_eq!(b.admit(&s, 10_000, ME), Admit::Yes { trial: true });
    }

    #[test]
    fn a_time_window_is_bounded_by_its_buckets_not_by_traffic() {
        let s = settings(
            json!({"window_type": "time", "window_duration": "1h", "minimum_calls": 100000, "failure_rate_threshold": 100}),
        );
        let mut b = fresh();
        for t in 0..10_000i64 {
            b.record(&s, t * 1_000, ME, false, false);
        }
        assert!(
            b.buckets.len() <= TIME_BUCKETS as usize + 1,
            "{}",
            b.buckets.len()
        );
        assert!(b.window.is_empty());
        let t = b.tally();
        // 10,000 calls 1s apart: the last hour (plus at most one bucket) is counted.
        assert!((3_600..=3_660).contains(&t.calls), "{t:?}");
        assert!(serde_json::to_vec(&b).unwrap().len() < 8 * 1024);
    }

    #[test]
    fn only_recorded_classes_count_as_failures() {
        let s = settings(json!({}));
        assert_eq!(
            s.counts(false, Some(ErrorClass::ConnectionError)),
            Counts::Failure
        );
        assert_eq!(
            s.counts(false, None),
            Counts::Failure,
            "unclassified is unknown_error"
        );
        assert_eq!(
            s.counts(false, Some(ErrorClass::SpawnError)),
            Counts::Nothing
        );
        assert_eq!(
            s.counts(false, Some(ErrorClass::ConfigurationError)),
            Counts::Nothing
        );
        assert_eq!(s.counts(true, None), Counts::Success);
        let s = settings(
            json!({"record_classes": ["authentication_error", "timeout"], "ignore_classes": ["timeout"]}),
        );
        assert_eq!(
            s.counts(false, Some(ErrorClass::AuthenticationError)),
            Counts::Failure
        );
        assert_eq!(
            s.counts(false, Some(ErrorClass::Timeout)),
            Counts::Nothing,
            "ignore wins"
        );
        assert_eq!(
            s.counts(false, Some(ErrorClass::ConnectionError)),
            Counts::Nothing
        );
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
