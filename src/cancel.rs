//! Stop requests (SIGINT/SIGTERM/SIGHUP reaching retryx) fanned out to whoever is waiting: an
//! attempt in progress forwards the signal to its process group, a wait between attempts ends
//! early. Channels, not flags, so a wake-up is never lost.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// What woke a waiter.
#[derive(Debug)]
pub enum Wake {
    /// retryx was asked to stop by this signal.
    Signal(i32),
    /// The attempt's process exited (its raw wait status, or the wait error text).
    Exited(Result<std::process::ExitStatus, String>),
}

/// Shared stop state. Cheap to clone (an `Arc` inside).
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    signal: AtomicI32,
    subscribers: Mutex<Vec<Sender<Wake>>>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a stop request and wakes every waiter.
    pub fn trigger(&self, signal: i32) {
        self.inner.signal.store(signal, Ordering::SeqCst);
        if let Ok(mut subs) = self.inner.subscribers.lock() {
            subs.retain(|s| s.send(Wake::Signal(signal)).is_ok());
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
    /// came); the sender may be cloned to post other wake-ups into the same channel.
    pub fn subscribe(&self) -> (Sender<Wake>, Receiver<Wake>) {
        let (tx, rx) = channel();
        if let Ok(mut subs) = self.inner.subscribers.lock() {
            subs.push(tx.clone());
        }
        if let Some(sig) = self.signal() {
            let _ = tx.send(Wake::Signal(sig));
        }
        (tx, rx)
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
        let (_tx, early) = c.subscribe();
        c.trigger(15);
        assert!(matches!(early.try_recv(), Ok(Wake::Signal(15))));
        let (_tx2, late) = c.subscribe();
        assert!(matches!(late.try_recv(), Ok(Wake::Signal(15))));
        assert_eq!(c.signal(), Some(15));
    }
}
