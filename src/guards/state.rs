//! Guard state files under `state_dir` (the file backend): one JSON document per guard and key
//! (`<kind>_<key>.json`, 0600 in a private 0700 dir, never reached through a symlink: opened
//! through `safe_fs`). A change is a read-modify-write under an exclusive flock on a lock file
//! beside the document (`<kind>_<key>.lock`); the new document replaces the old one atomically
//! (temp file + rename), so a write cut by a full disk or a SIGKILL leaves the old document
//! whole, and a reader (no lock needed) sees the old or the new one, never half of either. The
//! kernel drops the locks of a holder that dies.
//!
//! The rename is not fsynced on the run path (each fsync waits for the disk, 0.3-4 ms, ten
//! times the guards' budget per run): after a power cut a document may be the previous one,
//! which is the advisory state's price. Hand-made changes (`update_durable`, used by
//! `retryx breaker reset|open` and `retryx budget reset`) are fsynced. This file must not
//! decide guard behaviour, only keep the documents safe.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::record::sanitize_name;
use crate::sys::safe_fs::{self, FsError, LockGuard};

/// Documents larger than this are refused (a count window of 100000 calls fits easily).
const MAX_STATE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("guard state: {0}")]
    Fs(#[from] FsError),
    #[error("guard state {path}: cannot encode: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The file stem for a guard kind and a user-given key: `<kind>_<sanitised key>`, with a short
/// hash of the raw key when sanitising changed it (so `a/b` and `a_b` never share a file).
pub fn stem(kind: &str, key: &str) -> String {
    let clean = sanitize_name(key);
    if clean == key {
        format!("{kind}_{clean}")
    } else {
        let digest = Sha256::digest(key.as_bytes());
        format!("{kind}_{clean}-{}", hex::encode(&digest[..4]))
    }
}

/// One guard's document for one key.
pub struct StateFile {
    dir: PathBuf,
    stem: String,
    dir_ready: Cell<bool>,
}

/// What `update` found on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// No document yet: started from the default.
    Missing,
    Read,
    /// The document could not be parsed: started from the default (the text is overwritten).
    Corrupt(String),
}

impl StateFile {
    pub fn new(dir: &Path, kind: &str, key: &str) -> Self {
        StateFile {
            dir: dir.to_path_buf(),
            stem: stem(kind, key),
            dir_ready: Cell::new(false),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stem))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// Makes sure the state directory is a private one of ours (once per file object).
    pub fn ensure_dir(&self) -> Result<(), StateError> {
        if !self.dir_ready.get() {
            safe_fs::ensure_private_dir(&self.dir)?;
            self.dir_ready.set(true);
        }
        Ok(())
    }

    /// A lock file beside the document, for bulkhead slots: `<stem>.<suffix>.lock`.
    pub fn lock_path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}.lock", self.stem))
    }

    /// The raw document: `None` when there is none (or the directory does not exist yet).
    pub fn read_bytes(&self) -> Result<Option<Vec<u8>>, StateError> {
        // Trust nothing in a directory that is not a private one of ours (a planted document
        // could force a breaker open); a missing directory is simply no state, and stays missing.
        if !self.dir_ready.get() {
            match std::fs::symlink_metadata(&self.dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                _ => self.ensure_dir()?,
            }
        }
        match safe_fs::read_private(&self.path(), MAX_STATE_BYTES) {
            Ok(b) => Ok(Some(b)),
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and parses the document (no lock: documents are replaced whole).
    pub fn read<T: DeserializeOwned>(&self) -> Result<(Option<T>, Found), StateError> {
        Ok(parse_doc(self.read_bytes()?.as_deref()))
    }

    /// Read-modify-write of the raw document under the exclusive lock: `f` gets the current
    /// bytes (`None` when missing) and returns the new ones, which replace the document.
    pub fn update_bytes(
        &self,
        durable: bool,
        f: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), StateError> {
        self.ensure_dir()?;
        let _lock = LockGuard::exclusive(&self.dir.join(format!("{}.lock", self.stem)))?;
        let old = match safe_fs::read_private(&self.path(), MAX_STATE_BYTES) {
            Ok(b) => Some(b),
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e.into()),
        };
        let new = f(old.as_deref());
        safe_fs::write_renamed(&self.dir, &format!("{}.json", self.stem), &new, durable)?;
        Ok(())
    }

    /// Typed read-modify-write: `f` changes the document (the default when there is none or
    /// it is unreadable). Returns `f`'s answer and what was found.
    pub fn update<T, R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<(R, Found), StateError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        self.update_typed(false, f)
    }

    /// As `update`, with the new document fsynced before returning.
    pub fn update_durable<T, R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<(R, Found), StateError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        self.update_typed(true, f)
    }

    fn update_typed<T, R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<(R, Found), StateError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        let mut out = None;
        let mut encode_error = None;
        self.update_bytes(durable, |old| {
            let (doc, found) = parse_doc::<T>(old);
            let mut doc = doc.unwrap_or_default();
            let r = f(&mut doc);
            let bytes = match serde_json::to_vec(&doc) {
                Ok(b) => b,
                Err(e) => {
                    encode_error = Some(e);
                    old.map(<[u8]>::to_vec).unwrap_or_default()
                }
            };
            out = Some((r, found));
            bytes
        })?;
        if let Some(source) = encode_error {
            return Err(StateError::Encode {
                path: self.path(),
                source,
            });
        }
        out.ok_or_else(|| StateError::Encode {
            path: self.path(),
            source: serde::ser::Error::custom("no document was produced"),
        })
    }
}

/// Parses a document; empty or missing is `Missing`, unparsable is `Corrupt` (with `None`).
pub fn parse_doc<T: DeserializeOwned>(bytes: Option<&[u8]>) -> (Option<T>, Found) {
    match bytes {
        None | Some([]) => (None, Found::Missing),
        Some(b) => match serde_json::from_slice(b) {
            Ok(t) => (Some(t), Found::Read),
            Err(e) => (None, Found::Corrupt(e.to_string())),
        },
    }
}

/// Whether process `pid` is alive on this host (a holder that died leaves its claims behind).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stems_are_safe_and_distinct() {
        assert_eq!(stem("breaker", "api_call"), "breaker_api_call");
        let a = stem("breaker", "a/b");
        let b = stem("breaker", "a_b");
        assert_ne!(a, b);
        assert!(!a.contains('/'));
        assert!(!stem("breaker", "../../x").contains('/'));
    }

    #[test]
    fn update_reads_modifies_and_writes_private_files() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        let f = StateFile::new(&dir, "budget", "k");
        let (n, found) = f
            .update(|v: &mut Vec<u32>| {
                v.push(1);
                v.len()
            })
            .unwrap();
        assert_eq!((n, found), (1, Found::Missing));
        let (n, found) = f
            .update(|v: &mut Vec<u32>| {
                v.push(2);
                v.len()
            })
            .unwrap();
        assert_eq!((n, found), (2, Found::Read));
        assert_eq!(f.read::<Vec<u32>>().unwrap().0, Some(vec![1, 2]));
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(f.path(), "{not json").unwrap();
        let (_, found) = f.update(|v: &mut Vec<u32>| v.push(3)).unwrap();
        assert!(matches!(found, Found::Corrupt(_)));
        assert_eq!(f.read::<Vec<u32>>().unwrap().0, Some(vec![3]));
    }

    #[test]
    fn reading_creates_nothing_and_refuses_an_open_dir_of_someone_else() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        let f = StateFile::new(&dir, "breaker", "k");
        assert_eq!(f.read::<Vec<u32>>().unwrap().0, None);
        assert!(!dir.exists());
        let link = base.path().join("link");
        std::os::unix::fs::symlink(base.path(), &link).unwrap();
        assert!(
            StateFile::new(&link, "breaker", "k")
                .read::<Vec<u32>>()
                .is_err()
        );
    }

    #[test]
    fn a_planted_symlink_state_dir_is_an_error_not_a_crash() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let f = StateFile::new(&link, "breaker", "k");
        assert!(f.update(|v: &mut Vec<u32>| v.push(1)).is_err());
    }

    #[test]
    fn our_pid_is_alive_and_a_reaped_child_is_not() {
        assert!(pid_alive(std::process::id()));
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
