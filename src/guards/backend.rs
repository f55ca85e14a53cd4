//! Where guard state lives: the `StateBackend` trait (raw documents read and replaced
//! atomically, bulkhead slots held as leases or locks), the `Store` the guards share, which
//! picks the backend (`state_backend`: `file` or a Redis URL) and applies
//! `state_backend_failure` when Redis cannot be reached (`open`: warn once, naming the backend
//! without its password, and go on with the local file guards for the rest of the run;
//! `closed`: every later use fails, and the guards refuse with `backend_unavailable`), and the
//! lease keeper that renews a slot or a trial permit while its command runs. Guard semantics
//! live in the guards; this file must not decide what a breaker or a bucket does.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::file_backend::FileBackend;
use super::redis_backend::RedisBackend;
use super::resp::{RedisUrl, Target};
use super::state::{Found, StateError, parse_doc};
use crate::config::guards::BackendFailure;
use crate::log::Logger;
use crate::sys::safe_fs::LockGuard;

/// Key prefix on Redis: keys are `<prefix>:<kind>:<key>`.
pub const DEFAULT_PREFIX: &str = "retryx";
/// Connect and read timeouts together stay within this (half each) unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Documents nobody touched for this long expire on Redis (an abandoned key costs nothing).
pub const STATE_TTL: Duration = Duration::from_secs(24 * 3600);
/// A bulkhead slot or a half-open permit lasts this long unless renewed (every third of it)
/// while its command runs; a holder that dies frees it after at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The shared backend cannot be used (never holds a password: `backend` is redacted).
    #[error("state backend {backend} unavailable: {message}")]
    Unavailable { backend: String, message: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// What to build a backend from (plain data, so a lease keeper thread can open its own).
#[derive(Debug, Clone)]
pub enum BackendSpec {
    File(PathBuf),
    Redis { target: Target, prefix: String },
}

impl BackendSpec {
    /// `file` or a `redis://` / `rediss://` URL; errors never quote the password.
    pub fn parse(
        text: &str,
        state_dir: PathBuf,
        prefix: &str,
        timeout: Duration,
        ca_file: Option<String>,
    ) -> Result<BackendSpec, String> {
        if text == "file" {
            return Ok(BackendSpec::File(state_dir));
        }
        let url = RedisUrl::parse(text)?;
        Ok(BackendSpec::Redis {
            target: Target {
                url,
                connect_timeout: timeout / 2,
                read_timeout: timeout / 2,
                ca_file,
            },
            prefix: prefix.to_string(),
        })
    }

    pub fn open(&self) -> Box<dyn StateBackend> {
        match self {
            BackendSpec::File(dir) => Box::new(FileBackend::new(dir.clone())),
            BackendSpec::Redis { target, prefix } => {
                Box::new(RedisBackend::new(target.clone(), prefix.clone()))
            }
        }
    }

    /// What may be shown of it.
    pub fn describe(&self) -> String {
        match self {
            BackendSpec::File(dir) => format!("file {}", dir.display()),
            BackendSpec::Redis { target, .. } => target.url.redacted(),
        }
    }
}

/// A bulkhead slot while held; dropping it gives the slot back.
pub enum Slot {
    /// Lock file number `.1`, held with flock (see the file backend for when it is freed).
    Lock(#[allow(dead_code)] LockGuard, u32),
    /// A lease renewed by a thread; dropping stops the renewals and releases it.
    Lease(LeaseKeeper),
}

/// Turns a document's old bytes (`None`: missing) and the backend's time into its new bytes.
pub type Rewrite<'a> = dyn FnMut(Option<&[u8]>, i64) -> Vec<u8> + 'a;

/// The operations guards need from wherever their state lives. Times are epoch milliseconds:
/// the backend's clock (the Redis server's `TIME`, so hosts whose clocks disagree agree), or
/// `local_now` for the file backend.
pub trait StateBackend: Send {
    fn describe(&self) -> String;
    /// Makes sure the backend can be used (connects, for Redis).
    fn check(&self) -> Result<(), BackendError>;
    /// The raw document of `kind`/`key` and the backend's time.
    fn read(
        &self,
        kind: &str,
        key: &str,
        local_now: i64,
    ) -> Result<(Option<Vec<u8>>, i64), BackendError>;
    /// Replaces the document with `f(old, now)`, atomically against every other writer (`f`
    /// may be called again when someone else wrote in between). `ttl: None` keeps it forever.
    /// Returns the time `f` last saw.
    fn update(
        &self,
        kind: &str,
        key: &str,
        ttl: Option<Duration>,
        local_now: i64,
        durable: bool,
        f: &mut Rewrite<'_>,
    ) -> Result<i64, BackendError>;
    /// Takes one of `max` slots of `key` for `owner`, when one is free.
    fn take_slot(
        &self,
        key: &str,
        max: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Slot>, BackendError>;
    /// How many slots are taken (for status).
    fn slots_taken(&self, key: &str, max: u32) -> Result<u32, BackendError>;
}

/// A typed look at a document.
pub fn read_doc<T: DeserializeOwned>(
    b: &dyn StateBackend,
    kind: &str,
    key: &str,
    local_now: i64,
) -> Result<(Option<T>, Found, i64), BackendError> {
    let (bytes, now) = b.read(kind, key, local_now)?;
    let (doc, found) = parse_doc(bytes.as_deref());
    Ok((doc, found, now))
}

/// A typed read-modify-write: `f` gets the document (the default when missing or unreadable,
/// with `Found` saying which), the backend's time, and returns an answer.
pub fn update_doc<T, R>(
    b: &dyn StateBackend,
    kind: &str,
    key: &str,
    ttl: Option<Duration>,
    local_now: i64,
    durable: bool,
    mut f: impl FnMut(&mut T, i64, &Found) -> R,
) -> Result<(R, Found, i64), BackendError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut out = None;
    let now = b.update(kind, key, ttl, local_now, durable, &mut |old, now| {
        let (doc, found) = parse_doc::<T>(old);
        let mut doc = doc.unwrap_or_default();
        let r = f(&mut doc, now, &found);
        out = Some((r, found));
        // Our documents are plain structs: encoding cannot fail; if it ever did, the old
        // document is kept rather than replaced by nothing.
        serde_json::to_vec(&doc).unwrap_or_else(|_| old.map(<[u8]>::to_vec).unwrap_or_default())
    })?;
    let (r, found) = out.ok_or_else(|| BackendError::Unavailable {
        backend: b.describe(),
        message: "the update produced no document".into(),
    })?;
    Ok((r, found, now))
}

/// The backend one operation's guards share, with the failure policy applied.
pub struct Store {
    shared: Option<Box<dyn StateBackend>>,
    spec: BackendSpec,
    file: FileBackend,
    failure: BackendFailure,
    /// Why the shared backend was given up on, once it was.
    down: RefCell<Option<String>>,
    warned: Cell<bool>,
    /// Backend time minus local time, from the last answer (server clocks rule on Redis).
    skew_ms: Cell<i64>,
}

impl Store {
    pub fn new(spec: BackendSpec, state_dir: PathBuf, failure: BackendFailure) -> Store {
        let shared = match &spec {
            BackendSpec::File(_) => None,
            redis => Some(redis.open()),
        };
        Store {
            shared,
            spec,
            file: FileBackend::new(state_dir),
            failure,
            down: RefCell::new(None),
            warned: Cell::new(false),
            skew_ms: Cell::new(0),
        }
    }

    pub fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    /// The spec of the backend in use now (the file one once Redis was given up under `open`).
    pub fn active_spec(&self) -> BackendSpec {
        match (&self.spec, self.down.borrow().is_some()) {
            (BackendSpec::Redis { .. }, true) => BackendSpec::File(self.file.dir().to_path_buf()),
            (s, _) => s.clone(),
        }
    }

    /// What the report says about the backend.
    pub fn describe(&self) -> String {
        match &*self.down.borrow() {
            Some(_) if self.failure == BackendFailure::Open => {
                format!(
                    "{} (unavailable; used {})",
                    self.spec.describe(),
                    self.file.describe()
                )
            }
            Some(_) => format!("{} (unavailable)", self.spec.describe()),
            None => self.spec.describe(),
        }
    }

    /// Runs `op` on the shared backend, or on the file one when there is none or it was given
    /// up under `open`.
    fn with<R>(
        &self,
        log: &Logger,
        op: impl Fn(&dyn StateBackend) -> Result<R, BackendError>,
    ) -> Result<R, BackendError> {
        if let Some(shared) = &self.shared {
            let down = self.down.borrow().clone();
            match down {
                None => match op(shared.as_ref()) {
                    Err(BackendError::Unavailable { backend, message }) => {
                        *self.down.borrow_mut() = Some(message.clone());
                        if self.failure == BackendFailure::Closed {
                            return Err(BackendError::Unavailable { backend, message });
                        }
                        if !self.warned.replace(true) {
                            log.warn(
                                "state backend unavailable, using the local file guards (state_backend_failure: open)",
                                &[
                                    ("backend", backend),
                                    ("error", message),
                                    ("state_dir", self.file.dir().display().to_string()),
                                ],
                            );
                        }
                    }
                    other => return other,
                },
                Some(message) if self.failure == BackendFailure::Closed => {
                    return Err(BackendError::Unavailable {
                        backend: self.spec.describe(),
                        message,
                    });
                }
                Some(_) => {}
            }
        }
        op(&self.file)
    }

    /// Whether the shared backend failed under `closed` (the guards then refuse).
    pub fn refusal(&self) -> Option<String> {
        if self.failure != BackendFailure::Closed {
            return None;
        }
        self.down.borrow().as_ref().map(|m| {
            format!(
                "state backend {} unavailable ({m}) and state_backend_failure is closed; the command was not run",
                self.spec.describe()
            )
        })
    }

    /// Connects now (before the first attempt), so `closed` refuses before anything runs.
    pub fn check(&self, log: &Logger) -> Result<(), BackendError> {
        self.with(log, |b| b.check())
    }

    /// The backend's notion of now for a local `local_now`.
    pub fn now(&self, local_now: i64) -> i64 {
        local_now.saturating_add(self.skew_ms.get())
    }

    fn note_time(&self, local_now: i64, backend_now: i64) {
        self.skew_ms.set(backend_now.saturating_sub(local_now));
    }

    pub fn read<T: DeserializeOwned>(
        &self,
        log: &Logger,
        kind: &str,
        key: &str,
        local_now: i64,
    ) -> Result<(Option<T>, Found, i64), BackendError> {
        let r = self.with(log, |b| read_doc(b, kind, key, local_now))?;
        self.note_time(local_now, r.2);
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn update<T, R>(
        &self,
        log: &Logger,
        kind: &str,
        key: &str,
        ttl: Option<Duration>,
        local_now: i64,
        f: impl Fn(&mut T, i64, &Found) -> R,
    ) -> Result<(R, Found, i64), BackendError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        let r = self.with(log, |b| update_doc(b, kind, key, ttl, local_now, false, &f))?;
        self.note_time(local_now, r.2);
        Ok(r)
    }

    pub fn take_slot(
        &self,
        log: &Logger,
        key: &str,
        max: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Slot>, BackendError> {
        self.with(log, |b| b.take_slot(key, max, owner, lease))
    }
}

impl Slot {
    /// The slot's number on the file backend (leases have none).
    pub fn index(&self) -> Option<u32> {
        match self {
            Slot::Lock(_, i) => Some(*i),
            Slot::Lease(_) => None,
        }
    }
}

/// Who holds a lease: unique per process and run, readable by people (`host:pid:random`).
pub fn lease_owner() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    let salt = crate::sys::entropy::random_u64() as u32;
    format!("{host}:{}:{salt:08x}", std::process::id())
}

/// Renews a lease every third of its length on a thread of its own until dropped; the last
/// call (`true`) releases it. The thread opens its own connection, so a slow renewal never
/// holds up the command's output.
pub struct LeaseKeeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    pub fn start(lease: Duration, mut renew: impl FnMut(bool) + Send + 'static) -> LeaseKeeper {
        let (tx, rx) = mpsc::channel::<()>();
        let period = (lease / 3).max(Duration::from_millis(10));
        let thread = std::thread::Builder::new()
            .name("retryx-lease".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period) {
                    renew(false);
                }
                renew(true);
            });
        match thread {
            Ok(t) => LeaseKeeper {
                stop: Some(tx),
                thread: Some(t),
            },
            // No thread: the lease is not renewed and lapses on its own after `lease`.
            Err(_) => LeaseKeeper {
                stop: None,
                thread: None,
            },
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis URL on a loopback port nobody listens on.
    fn dead_redis(dir: &std::path::Path) -> BackendSpec {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        BackendSpec::parse(
            &format!("redis://:pw-secret@127.0.0.1:{port}/0"),
            dir.to_path_buf(),
            DEFAULT_PREFIX,
            DEFAULT_TIMEOUT,
            None,
        )
        .unwrap()
    }

    #[test]
    fn open_falls_back_to_the_file_backend_once_and_says_so_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::memory(0);
        let store = Store::new(
            dead_redis(dir.path()),
            dir.path().to_path_buf(),
            BackendFailure::Open,
        );
        assert!(store.check(&log).is_ok());
        let ((), _, _) = store
            .update(&log, "budget", "k", None, 5, |v: &mut Vec<u32>, _, _| {
                v.push(1)
            })
            .unwrap();
        let (doc, _, _) = store.read::<Vec<u32>>(&log, "budget", "k", 6).unwrap();
        assert_eq!(doc, Some(vec![1]), "written to the file backend");
        assert!(dir.path().join("budget_k.json").exists());
        let lines = log.lines();
        assert_eq!(lines.len(), 1, "one warning: {lines:?}");
        assert!(lines[0].contains("backend=redis://127.0.0.1:"), "{lines:?}");
        assert!(!lines.join("\n").contains("pw-secret"));
        assert!(store.refusal().is_none());
        assert!(store.describe().contains("unavailable; used file"));
    }

    #[test]
    fn closed_refuses_from_the_first_failure_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = Logger::memory(0);
        let store = Store::new(
            dead_redis(dir.path()),
            dir.path().to_path_buf(),
            BackendFailure::Closed,
        );
        assert!(matches!(
            store.check(&log),
            Err(BackendError::Unavailable { .. })
        ));
        let why = store.refusal().unwrap();
        assert!(
            why.contains("state_backend_failure is closed") && !why.contains("pw-secret"),
            "{why}"
        );
        assert!(store.read::<Vec<u32>>(&log, "budget", "k", 0).is_err());
        assert!(
            !dir.path().join("budget_k.json").exists(),
            "nothing falls back under closed"
        );
    }
}
