//! Stop requests (SIGINT/SIGTERM/SIGHUP reaching retryx) fanned out to whoever is waiting: an
//! attempt in progress forwards the signal to its process group, a wait between attempts ends
//! early. Channels and pipes, not flags alone, so a wake-up is never lost.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};

/// What woke a waiter.
#[derive(Debug)]
pub enum Wake {
    /// retryx was asked to stop by this signal.
    Signal(i32),
}

/// Shared stop state. Cheap to clone (an `Arc` inside).
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    signal: AtomicI32,
    subscribers: Mutex<Vec<(u64, Sender<Wake>)>>,
    next_subscriber: AtomicU64,
    /// Write ends of the pipes handed out by `subscribe_fd`.
    wake_pipes: Mutex<Vec<OwnedFd>>,
}

/// A waiter's end of a stop-request channel; see `Cancel::subscribe`.
pub struct Subscription {
    rx: Receiver<Wake>,
    id: u64,
    owner: Cancel,
}

impl Subscription {
    pub fn recv_timeout(&self, d: std::time::Duration) -> Result<Wake, RecvTimeoutError> {
        self.rx.recv_timeout(d)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.owner.inner.subscribers.lock() {
            subs.retain(|(id, _)| *id != self.id);
        }
    }
}

/// The read end of a pipe that becomes readable on a stop request, for a `poll` loop. Dropping
/// it unsubscribes.
pub struct WakeFd {
    read: OwnedFd,
    write_raw: RawFd,
    owner: Cancel,
}

impl WakeFd {
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Empties the pipe so the next poll waits again.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.read, &mut buf), Ok(n) if n > 0) {}
    }
}

impl Drop for WakeFd {
    fn drop(&mut self) {
        if let Ok(mut pipes) = self.owner.inner.wake_pipes.lock() {
            pipes.retain(|w| w.as_raw_fd() != self.write_raw);
        }
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a stop request and wakes every waiter.
    pub fn trigger(&self, signal: i32) {
        self.inner.signal.store(signal, Ordering::SeqCst);
        if let Ok(mut subs) = self.inner.subscribers.lock() {
            subs.retain(|(_, s)| s.send(Wake::Signal(signal)).is_ok());
        }
        if let Ok(pipes) = self.inner.wake_pipes.lock() {
            for w in pipes.iter() {
                // Non-blocking: a full pipe already says "wake up".
                let _ = nix::unistd::write(w, &[1]);
            }
        }
    }

    /// The signal that asked us to stop, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// A channel that receives `Wake::Signal` on every stop request (at once if one already
    /// came). Dropping it unsubscribes, so a run of many waits holds no stale channels.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = channel();
        let id = self.inner.next_subscriber.fetch_add(1, Ordering::Relaxed);
        // Listed first, then the flag checked: a request racing with us is heard either way.
        if let Ok(mut subs) = self.inner.subscribers.lock() {
            subs.push((id, tx.clone()));
        }
        if let Some(sig) = self.signal() {
            let _ = tx.send(Wake::Signal(sig));
        }
        Subscription {
            rx,
            id,
            owner: self.clone(),
        }
    }

    /// A pipe that becomes readable on every stop request (at once if one already came).
    pub fn subscribe_fd(&self) -> std::io::Result<WakeFd> {
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let write_raw = write.as_raw_fd();
        // Listed first, then the flag checked: a request racing with us is heard either way.
        let mut pipes = self
            .inner
            .wake_pipes
            .lock()
            .map_err(|_| std::io::Error::other("stop state poisoned"))?;
        if self.signal().is_some() {
            let _ = nix::unistd::write(&write, &[1]);
        }
        pipes.push(write);
        drop(pipes);
        Ok(WakeFd {
            read,
            write_raw,
            owner: self.clone(),
        })
    }

    /// Routes SIGINT, SIGTERM and SIGHUP to `trigger` from a background thread. Returns an error
    /// text when the handlers cannot be installed.
    pub fn install_signal_handlers(&self) -> Result<(), String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| format!("installing signal handlers: {e}"))?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("retryx-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    me.trigger(sig);
                }
            })
            .map(|_| ())
            .map_err(|e| format!("starting the signal thread: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_reaches_earlier_and_later_subscribers() {
        let c = Cancel::new();
        let early = c.subscribe();
        c.trigger(15);
        assert!(matches!(early.rx.try_recv(), Ok(Wake::Signal(15))));
        let late = c.subscribe();
        assert!(matches!(late.rx.try_recv(), Ok(Wake::Signal(15))));
        assert_eq!(c.signal(), Some(15));
        assert_eq!(c.inner.subscribers.lock().unwrap().len(), 2);
        drop(early);
        drop(late);
        assert!(c.inner.subscribers.lock().unwrap().is_empty());
    }

    #[test]
    fn a_wake_pipe_becomes_readable_on_a_trigger_and_unsubscribes_on_drop() {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let c = Cancel::new();
        let w = c.subscribe_fd().unwrap();
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
        c.trigger(2);
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 1);
        w.drain();
        drop(w);
        assert!(c.inner.wake_pipes.lock().unwrap().is_empty());
        // A late subscriber hears of the earlier request at once.
        let late = c.subscribe_fd().unwrap();
        let mut fds = [PollFd::new(late.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 1);
    }
}
