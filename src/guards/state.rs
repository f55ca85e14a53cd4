//! Guard state files under `state_dir`: one JSON document per guard and key
//! (`<kind>_<key>.json`, 0600 in a private 0700 dir, never reached through a symlink: opened
//! through `fsx`). The document is its own lock: a change is a read-modify-write under an
//! exclusive flock on it; a look is a read under a shared flock, so nobody sees a half-written
//! document. The kernel drops the locks of a holder that dies.
//!
//! The new document is written in place (write at offset 0, then cut to length) rather than as
//! temp file + rename + fsync (`safe_fs::write_atomic`): on ext4 each rename over a file starts a
//! flush (auto_da_alloc) and each fsync waits for the disk, 0.3-4 ms apiece, ten times the
//! guards' whole budget per run. Guard state is advisory: a document torn by a power cut is
//! reported and started afresh. Hand-made changes (`update_durable`, used by
//! `retryx breaker reset|open`) are fsynced. This file must not decide guard behaviour, only
//! keep the documents safe.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::record::sanitize_name;
use crate::sys::safe_fs::{self, FsError, LockGuard};

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
            safe_fs::ensure_private_dir(&self.dir)?;
            self.dir_ready.set(true);
        }
        Ok(())
    }

    /// A lock file beside the document, for bulkhead slots: `<stem>.<suffix>.lock`.
    pub fn lock_path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}.lock", self.stem))
    }

    /// Reads the document under a shared lock. A missing file gives `Ok(None)`; a corrupt one
    /// reads as `None` too (the next update starts afresh and says so).
    pub fn read<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
        // Trust nothing in a directory that is not a private one of ours (a planted document
        // could force a breaker open); a missing directory is simply no state, and stays missing.
        if !self.dir_ready.get() {
            match std::fs::symlink_metadata(&self.dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                _ => self.ensure_dir()?,
            }
        }
        let path = self.path();
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(FsError::Symlink { path }.into());
            }
            Err(source) => return Err(FsError::Io { path, source }.into()),
        };
        fs4::fs_std::FileExt::lock_shared(&file).map_err(|source| FsError::Io {
            path: path.clone(),
            source,
        })?;
        let (doc, _) = read_doc::<T>(&file, &path)?;
        Ok(doc)
    }

    /// Read-modify-write under the exclusive lock: `f` changes the document (the default when
    /// there is none or it is corrupt), which is then written back. Returns `f`'s answer and
    /// what was found on disk.
    pub fn update<T, R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<(R, Found), StateError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        self.update_inner(f, false)
    }

    /// As `update`, with the new document fsynced before returning.
    pub fn update_durable<T, R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<(R, Found), StateError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        self.update_inner(f, true)
    }

    fn update_inner<T, R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
        durable: bool,
    ) -> Result<(R, Found), StateError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        self.ensure_dir()?;
        let path = self.path();
        let lock = LockGuard::exclusive(&path)?;
        let file = lock.file();
        let (doc, found) = read_doc::<T>(file, &path)?;
        let mut doc = doc.unwrap_or_default();
        let answer = f(&mut doc);
        let bytes = serde_json::to_vec(&doc).map_err(|source| StateError::Encode {
            path: path.clone(),
            source,
        })?;
        let io = |source: std::io::Error| FsError::Io {
            path: path.clone(),
            source,
        };
        file.write_all_at(&bytes, 0).map_err(io)?;
        file.set_len(bytes.len() as u64).map_err(io)?;
        if durable {
            file.sync_all().map_err(io)?;
        }
        Ok((answer, found))
    }
}

/// Reads and parses a locked document; an empty file is a missing document.
fn read_doc<T: DeserializeOwned>(file: &File, path: &Path) -> Result<(Option<T>, Found), FsError> {
    let io = |source: std::io::Error| FsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    if len > MAX_STATE_BYTES {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_STATE_BYTES,
        });
    }
    if len == 0 {
        return Ok((None, Found::Missing));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).map_err(io)?;
    Ok(match serde_json::from_slice(&buf) {
        Ok(t) => (Some(t), Found::Read),
        Err(e) => (None, Found::Corrupt(e.to_string())),
    })
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
    fn reading_creates_nothing_and_refuses_an_open_dir_of_someone_else() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        let f = StateFile::new(&dir, "breaker", "k");
        assert_eq!(f.read::<Vec<u32>>().unwrap(), None);
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
