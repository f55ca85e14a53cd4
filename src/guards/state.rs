//! Guard state files under `state_dir`: one JSON document per guard and key, changed only under
//! an exclusive flock on a sibling `.lock` file and replaced atomically (so a lock-free reader
//! sees the old document or the new one, never a torn one). All file access goes through
//! `fsx`; this file must not decide guard behaviour, only keep the documents safe.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::fsx::{self, FsError, LockGuard};
use crate::record::sanitize_name;

/// Documents larger than this are refused (a breaker window of 100000 calls fits easily).
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
            fsx::ensure_private_dir(&self.dir)?;
            self.dir_ready.set(true);
        }
        Ok(())
    }

    /// A lock file beside the document, e.g. for bulkhead slots: `<stem>.<suffix>.lock`.
    pub fn lock_path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}.lock", self.stem))
    }

    /// Reads the document without the lock (safe: writers rename whole files into place).
    /// A missing file gives `Ok(None)`; a corrupt one is reported as `Found::Corrupt`.
    pub fn read<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
        match self.read_raw()? {
            (Some(t), _) => Ok(Some(t)),
            (None, _) => Ok(None),
        }
    }

    fn read_raw<T: DeserializeOwned>(&self) -> Result<(Option<T>, Found), StateError> {
        let path = self.path();
        match fsx::read_private(&path, MAX_STATE_BYTES) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(t) => Ok((Some(t), Found::Read)),
                Err(e) => Ok((None, Found::Corrupt(e.to_string()))),
            },
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok((None, Found::Missing))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Read-modify-write under the exclusive lock: `f` changes the document (the default when
    /// there is none or it is corrupt), which is then written back atomically. Returns `f`'s
    /// answer and what was found on disk.
    pub fn update<T, R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<(R, Found), StateError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        self.ensure_dir()?;
        let _lock = LockGuard::exclusive(&self.lock_path("state"))?;
        let (doc, found) = self.read_raw::<T>()?;
        let mut doc = doc.unwrap_or_default();
        let answer = f(&mut doc);
        let bytes = serde_json::to_vec(&doc).map_err(|source| StateError::Encode {
            path: self.path(),
            source,
        })?;
        fsx::write_atomic(&self.dir, &format!("{}.json", self.stem), &bytes)?;
        Ok((answer, found))
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
        assert_eq!(f.read::<Vec<u32>>().unwrap(), Some(vec![1, 2]));
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(f.path(), "{not json").unwrap();
        let (_, found) = f.update(|v: &mut Vec<u32>| v.push(3)).unwrap();
        assert!(matches!(found, Found::Corrupt(_)));
        assert_eq!(f.read::<Vec<u32>>().unwrap(), Some(vec![3]));
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
