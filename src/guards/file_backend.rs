//! The file backend (the default): documents under `state_dir` through `state::StateFile`
//! (flock'd read-modify-write, atomic replacement), bulkhead slots as flock'd lock files
//! (`bulkhead_<key>.slot<i>.lock`). A held slot's descriptor is inherited by the attempt's
//! command (close-on-exec cleared while held), so the slot follows the command: released with
//! an explicit unlock when the attempt ends, it stays locked while the command's processes
//! live when retryx itself is killed (a plain flock would be dropped with retryx, and a second
//! command let in beside the first). Times are the local clock. This file must not decide
//! guard behaviour.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::{BackendError, Rewrite, Slot, StateBackend};
use super::state::StateFile;
use crate::sys::safe_fs::LockGuard;

pub struct FileBackend {
    dir: PathBuf,
}

impl FileBackend {
    pub fn new(dir: PathBuf) -> FileBackend {
        FileBackend { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, kind: &str, key: &str) -> StateFile {
        StateFile::new(&self.dir, kind, key)
    }
}

impl StateBackend for FileBackend {
    fn describe(&self) -> String {
        format!("file {}", self.dir.display())
    }

    fn check(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn read(
        &self,
        kind: &str,
        key: &str,
        local_now: i64,
    ) -> Result<(Option<Vec<u8>>, i64), BackendError> {
        Ok((self.file(kind, key).read_bytes()?, local_now))
    }

    fn update(
        &self,
        kind: &str,
        key: &str,
        _ttl: Option<Duration>,
        local_now: i64,
        durable: bool,
        f: &mut Rewrite<'_>,
    ) -> Result<i64, BackendError> {
        self.file(kind, key)
            .update_bytes(durable, |old| f(old, local_now))?;
        Ok(local_now)
    }

    fn take_slot(
        &self,
        key: &str,
        max: u32,
        _owner: &str,
        _lease: Duration,
    ) -> Result<Option<Slot>, BackendError> {
        let file = self.file("bulkhead", key);
        file.ensure_dir()?;
        let n = max.max(1);
        // Start at a pid-dependent slot to spread contention.
        let first = std::process::id() % n;
        for k in 0..n {
            let i = (first + k) % n;
            if let Some(lock) = LockGuard::try_exclusive(&file.lock_path(&format!("slot{i}")))
                .map_err(super::state::StateError::from)?
            {
                // Inherited by the command spawned next; LockGuard's drop unlocks it (flock's
                // unlock acts on the shared open file, so the command's copy is freed too).
                let _ = nix::fcntl::fcntl(
                    lock.file(),
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                );
                return Ok(Some(Slot::Lock(lock, i)));
            }
        }
        Ok(None)
    }

    fn slots_taken(&self, key: &str, max: u32) -> Result<u32, BackendError> {
        let file = self.file("bulkhead", key);
        if !self.dir.exists() {
            return Ok(0);
        }
        let mut taken = 0;
        for i in 0..max.max(1) {
            let path = file.lock_path(&format!("slot{i}"));
            if !path.exists() {
                continue;
            }
            match LockGuard::try_exclusive(&path).map_err(super::state::StateError::from)? {
                Some(_) => {}
                None => taken += 1,
            }
        }
        Ok(taken)
    }
}
