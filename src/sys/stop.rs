//! Stop requests (SIGINT/SIGTERM/SIGHUP reaching retryx, or `trigger` in-process) made visible
//! to whoever waits: an attempt in progress forwards the signal to its process group, a wait
//! between attempts ends early. A latch, not a queue: once a stop is requested the signal stays
//! set and the wake pipe stays readable, so no wake-up is lost and nobody drains anything.
//! No thread: the signal handler only stores the number and writes one byte to the pipe (both
//! async-signal-safe); a waiter polls the pipe.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a waiter looks at the flag when no wake pipe could be made (out of descriptors).
const FLAG_POLL: Duration = Duration::from_millis(10);

/// Shared stop state. Cheap to clone (an `Arc` inside).
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set by `trigger`.
    triggered: AtomicI32,
    /// Set by the signal handler (signal-hook's flag action stores a `usize`).
    caught: Arc<AtomicUsize>,
    /// (read, write), both non-blocking; `None` when the pipe could not be made.
    wake: Option<(OwnedFd, OwnedFd)>,
}

impl Default for Inner {
    fn default() -> Self {
        use nix::fcntl::OFlag;
        Inner {
            triggered: AtomicI32::new(0),
            caught: Arc::new(AtomicUsize::new(0)),
            wake: nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok(),
        }
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a stop request and wakes every waiter.
    pub fn trigger(&self, signal: i32) {
        self.inner.triggered.store(signal, Ordering::SeqCst);
        if let Some((_, write)) = &self.inner.wake {
            // Non-blocking: a full pipe already says "wake up".
            let _ = nix::unistd::write(write, &[1]);
        }
    }

    /// The signal that asked us to stop, if any: a caught one before a `trigger`ed one, the
    /// latest of its kind when several came.
    pub fn signal(&self) -> Option<i32> {
        let caught = self.inner.caught.load(Ordering::SeqCst);
        if caught != 0 {
            return i32::try_from(caught).ok();
        }
        match self.inner.triggered.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// A descriptor for a `poll` loop that becomes readable on a stop request and stays so
    /// (readable at once if one already came). A loop that has acted on the request stops
    /// polling it. `None` when the pipe could not be made: look at `signal()` now and then.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.wake.as_ref().map(|(read, _)| read.as_fd())
    }

    /// Waits up to `d` for a stop request: its signal, or `None` when the time ran out.
    pub fn wait_timeout(&self, d: Duration) -> Option<i32> {
        use nix::poll::{PollFd, PollFlags, ppoll};
        let until = Instant::now() + d;
        loop {
            if let Some(sig) = self.signal() {
                return Some(sig);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.wake_fd() {
                Some(fd) => {
                    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                    // EINTR (a signal) or readiness: the loop looks at the flag again.
                    let _ = ppoll(&mut fds, Some(left.into()), None);
                }
                None => std::thread::sleep(left.min(FLAG_POLL)),
            }
        }
    }

    /// Catches SIGINT, SIGTERM and SIGHUP for this `Cancel`: the handler stores the signal and
    /// writes to the wake pipe. Once per process (the front door's `Cancel`): handlers stay
    /// registered for good. Returns an error text when they cannot be installed.
    pub fn install_signal_handlers(&self) -> Result<(), String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let err = |e: std::io::Error| format!("installing signal handlers: {e}");
        // The handlers' own copy of the write end, kept open for the life of the process (the
        // handlers are never removed), so it can never name a descriptor reused for a file.
        let handler_fd = match &self.inner.wake {
            Some((_, write)) => Some(write.try_clone().map_err(err)?.into_raw_fd()),
            None => None,
        };
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let value = usize::try_from(sig).unwrap_or_default();
            // The flag first: a waiter woken by the byte finds the signal already stored.
            signal_hook::flag::register_usize(sig, Arc::clone(&self.inner.caught), value)
                .map_err(err)?;
            if let Some(fd) = handler_fd {
                signal_hook::low_level::pipe::register_raw(sig, fd).map_err(err)?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("signal", &self.signal())
            .field("wake_fd", &self.wake_fd().map(|fd| fd.as_raw_fd()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    fn readable(c: &Cancel) -> bool {
        let mut fds = [PollFd::new(c.wake_fd().unwrap(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn a_trigger_is_a_latch_every_waiter_sees() {
        let c = Cancel::new();
        assert!(!readable(&c));
        assert_eq!(c.signal(), None);
        assert_eq!(c.wait_timeout(Duration::ZERO), None);
        c.trigger(15);
        // Readable for every poller, now and later, without anyone draining it.
        assert!(readable(&c) && readable(&c.clone()));
        assert_eq!(c.signal(), Some(15));
        assert_eq!(c.wait_timeout(Duration::from_secs(3600)), Some(15));
        c.trigger(2);
        assert_eq!(c.clone().signal(), Some(2));
    }

    #[test]
    fn a_trigger_from_another_thread_ends_a_wait() {
        let c = Cancel::new();
        let other = c.clone();
        // Whether the trigger lands before the wait or during its poll, the wait ends with it.
        let t = std::thread::spawn(move || other.trigger(1));
        assert_eq!(c.wait_timeout(Duration::from_secs(3600)), Some(1));
        t.join().unwrap();
    }
}
