//! Safe files for records and guard state: private directories (0700, ours, not reached through
//! a symlink), files 0600 written atomically (temp + fsync + rename), lock files opened without
//! following links. Every write to the artifacts or state directory goes through here. Batches
//! of many files (compress, cleanup) are read and removed on a few scoped threads, which never
//! outlive the call; when the system refuses a thread, the calling thread does the work.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: is a symlink; refusing to use it (someone may have planted it)")]
    Symlink { path: PathBuf },
    #[error("{path}: owned by uid {owner}, not by us (uid {me}); refusing to use it")]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes sure `dir` exists as a private directory of ours: created 0700 when missing; refused
/// when it is a symlink or owned by someone else; tightened to 0700 when it is ours but open.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => check_private_dir(dir, &meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                // Another process made it between our look and our mkdir: check theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(dir)(e)),
            }
            let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
            check_private_dir(dir, &meta)
        }
        Err(e) => Err(io(dir)(e)),
    }
}

fn check_private_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), FsError> {
    if meta.file_type().is_symlink() {
        return Err(FsError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(FsError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(FsError::NotOurs {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` atomically: a 0600 temp file in the same directory, fsync,
/// rename over the target, fsync of the directory. A reader sees the old file or the new one,
/// never a torn one, even if we are killed half-way. `name` must be a plain file name.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, FsError> {
    write_renamed(dir, name, bytes, true)
}

/// As `write_atomic`, but without the fsyncs when `durable` is false: for batches that make
/// themselves durable once at the end (syncfs), such as compressing many files.
pub fn write_renamed(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> Result<PathBuf, FsError> {
    let target = dir.join(name);
    if name.contains('/') || name == "." || name == ".." || name.is_empty() {
        return Err(FsError::Io {
            path: target,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a plain file name"),
        });
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".retryx-tmp-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(&target))?;
    if durable {
        tmp.as_file().sync_all().map_err(io(&target))?;
    }
    tmp.persist(&target).map_err(|e| io(&target)(e.error))?;
    if durable && let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}

/// Opens (creating 0600) a file for locking or read-modify-write, never through a symlink.
pub fn open_private(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                FsError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                io(path)(e)
            }
        })
}

/// Reads a file of ours, never through a symlink, refusing files above `max` bytes.
pub fn read_private(path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                FsError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                io(path)(e)
            }
        })?;
    let len = f.metadata().map_err(io(path))?.len();
    if len > max {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(max + 1).read_to_end(&mut buf).map_err(io(path))?;
    Ok(buf)
}

/// Holds an exclusive lock on a lock file until dropped (the kernel releases it if we die).
pub struct LockGuard {
    file: File,
}

impl LockGuard {
    /// Blocks until the exclusive lock on `path` is ours.
    pub fn exclusive(path: &Path) -> Result<LockGuard, FsError> {
        let file = open_private(path)?;
        fs4::fs_std::FileExt::lock_exclusive(&file).map_err(io(path))?;
        Ok(LockGuard { file })
    }

    /// Takes the lock when free; `None` when someone else holds it.
    pub fn try_exclusive(path: &Path) -> Result<Option<LockGuard>, FsError> {
        let file = open_private(path)?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(Some(LockGuard { file })),
            Ok(false) => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = fs4::fs_std::FileExt::unlock(&self.file);
    }
}

/// How many threads work through `n` files: per-file system calls (open, read, unlink) mostly
/// wait on the filesystem, so a few threads overlap them even on two cores; small batches stay
/// on the calling thread.
fn file_workers(n: usize) -> usize {
    const PER_WORKER: usize = 256;
    const MAX_WORKERS: usize = 16;
    n.div_ceil(PER_WORKER).clamp(1, MAX_WORKERS)
}

/// Removes `paths` (the links themselves: a symlink is never followed), on several threads when
/// there are many; returns how many were removed. Unlinking 10,000 files one after the other
/// takes ~1.5 s on an ext4 VM disk, on 16 threads ~0.4 s: most of an unlink's time is the
/// inode's release, which runs outside the directory lock and so overlaps.
pub fn remove_files(paths: &[PathBuf]) -> u64 {
    let workers = file_workers(paths.len());
    if workers == 1 {
        return paths
            .iter()
            .map(|p| u64::from(std::fs::remove_file(p).is_ok()))
            .sum();
    }
    let remove = |part: &[PathBuf]| -> u64 {
        part.iter()
            .map(|p| u64::from(std::fs::remove_file(p).is_ok()))
            .sum()
    };
    let chunk = paths.len().div_ceil(workers);
    std::thread::scope(|s| {
        let mut here = 0;
        let mut handles = Vec::new();
        for part in paths.chunks(chunk) {
            match std::thread::Builder::new().spawn_scoped(s, move || remove(part)) {
                Ok(h) => handles.push(h),
                // No thread to be had (a pids limit): this part is removed here.
                Err(_) => here += remove(part),
            }
        }
        here + handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum::<u64>()
    })
}

/// Runs `load` on every path on several threads when there are many, and hands each result to
/// `take` on the calling thread in the order they finish (not the order of `paths`). The first
/// error, from either, stops the work and is returned.
pub fn for_each_loaded<T: Send, E: Send>(
    paths: &[&Path],
    load: impl Fn(&Path) -> Result<T, E> + Sync,
    mut take: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let workers = file_workers(paths.len());
    if workers == 1 {
        for p in paths {
            take(load(p)?)?;
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Bounded: at most two files per worker are in memory, however many there are.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<T, E>>(workers);
        let mut started = 0;
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, stop, load) = (&next, &stop, &load);
            let worker = move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(p) = paths.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if tx.send(load(p)).is_err() {
                        break;
                    }
                }
            };
            // A refused thread (a pids limit) leaves the work to those that started.
            started += usize::from(std::thread::Builder::new().spawn_scoped(s, worker).is_ok());
        }
        drop(tx);
        if started == 0 {
            // Not one thread: the paths are loaded here, one after the other.
            drop(rx);
            for p in paths {
                take(load(p)?)?;
            }
            return Ok(());
        }
        let outcome = rx.iter().try_for_each(|r| r.and_then(&mut take));
        // After an error, workers still running see the flag, and one blocked on a full
        // channel sees it closed: the scope's join cannot hang.
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_and_files() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let f = write_atomic(&dir, "x.json", b"{}").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read_private(&f, 10).unwrap(), b"{}");
        assert!(matches!(read_private(&f, 1), Err(FsError::TooLarge { .. })));
        assert!(write_atomic(&dir, "../escape", b"x").is_err());
    }

    #[test]
    fn planted_symlinks_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            ensure_private_dir(&link),
            Err(FsError::Symlink { .. })
        ));
        let target = base.path().join("target");
        std::fs::write(&target, "secret").unwrap();
        let flink = real.join("state.lock");
        std::os::unix::fs::symlink(&target, &flink).unwrap();
        assert!(matches!(open_private(&flink), Err(FsError::Symlink { .. })));
        assert!(matches!(
            read_private(&flink, 100),
            Err(FsError::Symlink { .. })
        ));
    }

    #[test]
    fn open_dirs_of_ours_are_tightened() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }
    #[test]
    fn remove_files_on_many_threads_removes_links_not_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let mut paths: Vec<PathBuf> = (0..1000)
            .map(|i| {
                let p = tmp.path().join(format!("f{i}"));
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        paths.push(link.clone());
        paths.push(tmp.path().join("never-existed"));
        assert!(file_workers(paths.len()) > 1);
        assert_eq!(remove_files(&paths), 1001);
        assert!(!link.exists() && std::fs::read(&target).unwrap() == b"keep");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn for_each_loaded_hands_over_every_file_once() {
        let tmp = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..2000)
            .map(|i| {
                let p = tmp.path().join(format!("f{i}"));
                std::fs::write(&p, i.to_string()).unwrap();
                p
            })
            .collect();
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let mut seen = Vec::new();
        for_each_loaded(
            &refs,
            |p| read_private(p, 16),
            |b| {
                seen.push(String::from_utf8(b).unwrap().parse::<u32>().unwrap());
                Ok::<(), FsError>(())
            },
        )
        .unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..2000).collect::<Vec<_>>());
    }

    #[test]
    fn for_each_loaded_stops_at_the_first_error_without_hanging() {
        // Run on a thread and waited for with a bound: a deadlock fails the test, not CI's clock.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let tmp = tempfile::tempdir().unwrap();
            let paths: Vec<PathBuf> = (0..3000)
                .map(|i| tmp.path().join(format!("f{i}")))
                .collect();
            for p in &paths[..1500] {
                std::fs::write(p, b"x").unwrap();
            }
            let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            // Loads fail past the first half, and the consumer also fails on its 10th file:
            // either way the error comes back and the workers (blocked on a full channel) are
            // released.
            let mut taken = 0;
            let r = for_each_loaded(
                &refs,
                |p| read_private(p, 16),
                |_| {
                    taken += 1;
                    if taken == 10 {
                        Err(FsError::NotADirectory {
                            path: "consumer".into(),
                        })
                    } else {
                        Ok(())
                    }
                },
            );
            let consumer_error = r.is_err() && taken <= 10;
            let only_missing: Vec<&Path> = refs[1500..].to_vec();
            let r = for_each_loaded(&only_missing, |p| read_private(p, 16), |_| Ok(()));
            let _ = done.send((consumer_error, matches!(r, Err(FsError::Io { .. }))));
        });
        let (consumer_error, load_error) = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("for_each_loaded hung after an error");
        assert!(consumer_error && load_error);
    }
}
