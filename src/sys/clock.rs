//! Time as the engine sees it: a monotonic `now`, a wall clock for records, and a sleep that a
//! stop request cuts short. The real one reads the system; the fake one only moves when slept
//! on, so tests drive time without waiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::sys::stop::Cancel;

pub trait Timer {
    /// Monotonic time since the timer was made.
    fn now(&self) -> Duration;
    /// Wall-clock time, for records.
    fn wall(&self) -> DateTime<Utc>;
    /// Sleeps `d` unless a stop request comes first; returns its signal then.
    fn sleep(&self, d: Duration, cancel: &Cancel) -> Option<i32>;
}

pub struct RealTimer {
    start: Instant,
}

impl RealTimer {
    pub fn new() -> Self {
        RealTimer {
            start: Instant::now(),
        }
    }
}

impl Default for RealTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer for RealTimer {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep(&self, d: Duration, cancel: &Cancel) -> Option<i32> {
        if let Some(sig) = cancel.signal() {
            return Some(sig);
        }
        if d.is_zero() {
            return None;
        }
        cancel.wait_timeout(d)
    }
}

/// A timer for tests: time moves only when slept on or advanced; every sleep is recorded.
pub struct FakeTimer {
    state: Mutex<(Duration, Vec<Duration>)>,
    wall0: DateTime<Utc>,
    /// A stop request to deliver when the total slept time reaches this point.
    pub interrupt_at: Option<(Duration, i32)>,
}

impl FakeTimer {
    pub fn new() -> Self {
        FakeTimer {
            state: Mutex::new((Duration::ZERO, Vec::new())),
            wall0: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
            interrupt_at: None,
        }
    }
    /// Moves time on without a sleep (an attempt that took this long).
    pub fn advance(&self, d: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.0 += d;
        }
    }
    /// Every sleep asked for, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state.lock().map(|s| s.1.clone()).unwrap_or_default()
    }
}

impl Default for FakeTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer for FakeTimer {
    fn now(&self) -> Duration {
        self.state.lock().map(|s| s.0).unwrap_or_default()
    }
    fn wall(&self) -> DateTime<Utc> {
        self.wall0 + chrono::Duration::from_std(self.now()).unwrap_or_default()
    }
    fn sleep(&self, d: Duration, cancel: &Cancel) -> Option<i32> {
        if let Some(sig) = cancel.signal() {
            return Some(sig);
        }
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        s.1.push(d);
        if let Some((at, sig)) = self.interrupt_at
            && s.0 + d >= at
        {
            s.0 = s.0.max(at);
            drop(s);
            cancel.trigger(sig);
            return Some(sig);
        }
        s.0 += d;
        None
    }
}
