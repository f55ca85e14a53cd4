//! Safe files for records and guard state: private directories (0700, ours, not reached through
//! a symlink), files 0600 written atomically (temp + fsync + rename), lock files opened without
//! following links. Every write to the artifacts or state directory goes through here. Batches
//! of many files (compress, cleanup) are read and removed on a few scoped threads, which never
//! outlive the call; when the system refuses a thread, the calling thread does the work.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: is a symlink; refusing to use it (someone may have planted it)")]
    Symlink { path: PathBuf },
    #[error("{path}: owned by uid {owner}, not by us (uid {me}) or root; refusing to use it")]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: not a regular file (a FIFO, device or socket is never opened)")]
    NotRegular { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: gave up waiting for the lock after {}s (another retryx holds it)", waited.as_secs())]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error("{path}: stopped by signal {signal} while waiting for the lock")]
    Interrupted { path: PathBuf, signal: i32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn errno(path: &Path) -> impl FnOnce(Errno) -> FsError + '_ {
    move |e| FsError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from(e),
    }
}

/// A lock wait longer than this is an error, not a hang: writers hold a session or state lock
/// for one read-modify-write (milliseconds; a finalize of a huge session, seconds).
const LOCK_WAIT_MAX: Duration = Duration::from_secs(120);
/// Symlinks followed in one walk (as the kernel's own limit).
const MAX_LINK_HOPS: u32 = 40;

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Who may own a directory on the way: root or us. Anyone else could swap what lies below.
fn trusted_owner(st: &FileStat) -> bool {
    st.st_uid == 0 || st.st_uid == me()
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// What the last directory of a walk must be.
#[derive(Clone, Copy, PartialEq)]
enum Leaf {
    /// Owned by root or us, reached through links of root or ours (a place to put one file,
    /// such as `--result-json`'s directory).
    Trusted,
    /// Ours, and not itself a symlink: a records or state directory.
    Private,
}

/// Opens `dir` by walking it one component at a time with `openat(O_NOFOLLOW|O_DIRECTORY)`:
/// nothing can be swapped between a check and a use, since every step starts from the
/// descriptor the previous one checked. A symlink on the way is followed only when root or we
/// own it (`/var/run`), never one planted by someone else; every directory is owned by root or
/// us. With `create`, missing directories are made 0700 whatever the umask.
fn walk(dir: &Path, create: bool, leaf: Leaf) -> Result<OwnedFd, FsError> {
    let (parent, name) = match dir.file_name() {
        Some(name) if leaf == Leaf::Private => (dir.parent().unwrap_or(Path::new("")), Some(name)),
        _ => (dir, None),
    };
    let mut hops = 0;
    let start = start_of(parent, dir)?;
    let fd = walk_from(start, parent, create, &mut hops, dir)?;
    let Some(name) = name else {
        return Ok(fd);
    };
    // The private directory itself: never a link, ours, 0700.
    let (fd, created) = open_step(&fd, name, create, dir)?;
    let st = nix::sys::stat::fstat(&fd).map_err(errno(dir))?;
    if st.st_uid != me() {
        return Err(FsError::NotOurs {
            path: dir.to_path_buf(),
            owner: st.st_uid,
            me: me(),
        });
    }
    if created || st.st_mode & 0o077 != 0 {
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(errno(dir))?;
    }
    Ok(fd)
}

fn start_of(path: &Path, whole: &Path) -> Result<OwnedFd, FsError> {
    let from = if path.is_absolute() { "/" } else { "." };
    let fd = nix::fcntl::open(from, DIR_FLAGS, Mode::empty()).map_err(errno(whole))?;
    Ok(fd)
}

fn walk_from(
    mut cur: OwnedFd,
    path: &Path,
    create: bool,
    hops: &mut u32,
    whole: &Path,
) -> Result<OwnedFd, FsError> {
    for comp in path.components() {
        let name: &OsStr = match comp {
            Component::RootDir => {
                cur = start_of(Path::new("/"), whole)?;
                continue;
            }
            Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => OsStr::new(".."),
            Component::Normal(n) => n,
        };
        cur = match open_step(&cur, name, create, whole) {
            Ok((fd, _)) => fd,
            Err(FsError::Symlink { .. }) => follow(&cur, name, hops, whole)?,
            Err(e) => return Err(e),
        };
        let st = nix::sys::stat::fstat(&cur).map_err(errno(whole))?;
        if !trusted_owner(&st) {
            return Err(FsError::NotOurs {
                path: whole.to_path_buf(),
                owner: st.st_uid,
                me: me(),
            });
        }
    }
    Ok(cur)
}

/// Opens one directory below `cur`, making it (0700) when missing and `create`. A symlink
/// comes back as `FsError::Symlink`, for the caller to refuse or follow.
fn open_step(
    cur: &OwnedFd,
    name: &OsStr,
    create: bool,
    whole: &Path,
) -> Result<(OwnedFd, bool), FsError> {
    let mut created = false;
    loop {
        match nix::fcntl::openat(cur, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => {
                if created {
                    // mkdir's mode passed through the umask (0277 would leave 0500).
                    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o700))
                        .map_err(errno(whole))?;
                }
                return Ok((fd, created));
            }
            Err(Errno::ENOENT) if create && !created => {
                match nix::sys::stat::mkdirat(cur, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) => created = true,
                    // Another process made it between our look and our mkdir: check theirs.
                    Err(Errno::EEXIST) => created = false,
                    Err(e) => return Err(errno(whole)(e)),
                }
                if !created {
                    return nix::fcntl::openat(cur, name, DIR_FLAGS, Mode::empty())
                        .map(|fd| (fd, false))
                        .map_err(|e| step_error(cur, name, e, whole));
                }
            }
            Err(e) => return Err(step_error(cur, name, e, whole)),
        }
    }
}

fn step_error(cur: &OwnedFd, name: &OsStr, e: Errno, whole: &Path) -> FsError {
    if matches!(e, Errno::ELOOP | Errno::ENOTDIR) {
        return match nix::sys::stat::fstatat(cur, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_kind(&st, SFlag::S_IFLNK) => FsError::Symlink {
                path: whole.to_path_buf(),
            },
            _ => FsError::NotADirectory {
                path: whole.to_path_buf(),
            },
        };
    }
    errno(whole)(e)
}

/// Follows the symlink `name` below `cur` when root or we own it, by walking its target.
fn follow(cur: &OwnedFd, name: &OsStr, hops: &mut u32, whole: &Path) -> Result<OwnedFd, FsError> {
    let st =
        nix::sys::stat::fstatat(cur, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno(whole))?;
    *hops += 1;
    if !trusted_owner(&st) || *hops > MAX_LINK_HOPS {
        return Err(FsError::Symlink {
            path: whole.to_path_buf(),
        });
    }
    let target = nix::fcntl::readlinkat(cur, name).map_err(errno(whole))?;
    let target = PathBuf::from(target);
    let start = if target.is_absolute() {
        start_of(&target, whole)?
    } else {
        cur.try_clone().map_err(io(whole))?
    };
    walk_from(start, &target, false, hops, whole)
}

/// `path` as (its directory, its plain file name).
fn split(path: &Path) -> Result<(&Path, &OsStr), FsError> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(FsError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        }),
    }
}

/// Opens `name` below `dir` never through a symlink and without blocking (a FIFO planted
/// there cannot hold us in `open`), then checks it is a regular file.
fn open_file_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlag,
    path: &Path,
) -> Result<(File, FileStat), FsError> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(0o600)).map_err(
        |e| match e {
            Errno::ELOOP => FsError::Symlink {
                path: path.to_path_buf(),
            },
            // O_WRONLY|O_NONBLOCK on a FIFO nobody reads.
            Errno::ENXIO => FsError::NotRegular {
                path: path.to_path_buf(),
            },
            e => errno(path)(e),
        },
    )?;
    let st = nix::sys::stat::fstat(&fd).map_err(errno(path))?;
    if !is_kind(&st, SFlag::S_IFREG) {
        return Err(FsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok((File::from(fd), st))
}

/// Makes sure `dir` exists as a private directory of ours: created 0700 (with any missing
/// parent) whatever the umask; refused when it or a directory on the way is a symlink someone
/// else planted or belongs to someone else; tightened to 0700 when it is ours but open.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    walk(dir, true, Leaf::Private).map(drop)
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
    let fd = walk(dir, false, Leaf::Private)?;
    write_in(fd.as_fd(), dir, OsStr::new(name), bytes, durable)
}

/// Writes the file `path` atomically, 0600, for `--result-json`: its directory reached without
/// a planted symlink (root's or ours are followed), the file itself replaced by rename (a
/// symlink or FIFO at `path` is replaced, never written through).
pub fn write_file_private(path: &Path, bytes: &[u8]) -> Result<PathBuf, FsError> {
    let (parent, name) = split(path)?;
    let fd = walk(parent, false, Leaf::Trusted)?;
    write_in(fd.as_fd(), parent, name, bytes, true)
}

/// Names of temp files made by `write_in`; cleanup removes old ones left by a killed writer.
pub const TEMP_PREFIX: &str = ".retryx-tmp-";

fn write_in(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &OsStr,
    bytes: &[u8],
    durable: bool,
) -> Result<PathBuf, FsError> {
    let target = dir_path.join(name);
    let plain = !name.is_empty() && name != "." && name != ".." && !name.as_bytes().contains(&b'/');
    if !plain {
        return Err(FsError::Io {
            path: target,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a plain file name"),
        });
    }
    let (tmp_name, mut tmp) = loop {
        let r = crate::sys::entropy::random_bytes();
        let tmp_name = format!("{TEMP_PREFIX}{}", hex::encode(&r[..8]));
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
        match open_file_at(dir, OsStr::new(&tmp_name), flags, &target) {
            Ok((f, _)) => break (tmp_name, f),
            Err(FsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        // O_CREAT's 0600 went through the umask; the mode is 0600 whatever it was.
        nix::sys::stat::fchmod(&tmp, Mode::from_bits_truncate(0o600)).map_err(errno(&target))?;
        tmp.write_all(bytes).map_err(io(&target))?;
        if durable {
            tmp.sync_all().map_err(io(&target))?;
        }
        nix::fcntl::renameat(dir, tmp_name.as_str(), dir, name).map_err(errno(&target))
    })();
    if let Err(e) = written {
        let _ = nix::unistd::unlinkat(
            dir,
            tmp_name.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        return Err(e);
    }
    if durable {
        let _ = nix::unistd::fsync(dir);
    }
    Ok(target)
}

/// Opens (creating 0600) a file of ours for locking or read-modify-write, never through a
/// symlink, never a FIFO or device.
pub fn open_private(path: &Path) -> Result<File, FsError> {
    let (parent, name) = split(path)?;
    let dir = walk(parent, false, Leaf::Private)?;
    let flags = OFlag::O_RDWR | OFlag::O_CREAT;
    let (file, st) = open_file_at(dir.as_fd(), name, flags, path)?;
    if st.st_uid != me() {
        return Err(FsError::NotOurs {
            path: path.to_path_buf(),
            owner: st.st_uid,
            me: me(),
        });
    }
    if st.st_mode & 0o7777 != 0o600 {
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(0o600)).map_err(errno(path))?;
    }
    Ok(file)
}

/// Opens an existing regular file for reading: its directory walked as `ensure_private_dir`
/// would check it, the file never through a symlink, never a FIFO or device.
pub fn open_read(path: &Path) -> Result<File, FsError> {
    let (parent, name) = split(path)?;
    let dir = walk(parent, false, Leaf::Trusted)?;
    open_file_at(dir.as_fd(), name, OFlag::O_RDONLY, path).map(|(f, _)| f)
}

/// Reads a file of ours, never through a symlink, refusing files above `max` bytes.
pub fn read_private(path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    read_capped(open_read(path)?, path, max)
}

/// Reads all of `f`, refusing more than `max` bytes (whatever its size said: it may grow).
fn read_capped(f: File, path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    let len = f.metadata().map_err(io(path))?.len();
    if len > max {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(max + 1).read_to_end(&mut buf).map_err(io(path))?;
    if buf.len() as u64 > max {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(buf)
}

/// The cap on a config file and on the module's args file (nothing legitimate comes near it).
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Reads an input file the user named (a config, the module's args) up to `max` bytes. Unlike
/// records, it may be anything readable, `/dev/stdin` or a pipe included, so it is opened as
/// usual; a stream without end is refused at `max` instead of read forever.
pub fn read_input(path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    let f = File::open(path).map_err(io(path))?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf).map_err(io(path))?;
    if buf.len() as u64 > max {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(buf)
}

/// Waits for a lock with `try_lock`, never in a blocking `flock` (which a signal handler
/// installed with SA_RESTART cannot interrupt): gives up when retryx is asked to stop (the
/// signal stays latched for the exit code) or after `LOCK_WAIT_MAX`.
fn wait_lock(file: &File, path: &Path) -> Result<(), FsError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if fs4::fs_std::FileExt::try_lock_exclusive(file).map_err(io(path))? {
            return Ok(());
        }
        if let Some(signal) = crate::sys::stop::stop_requested() {
            return Err(FsError::Interrupted {
                path: path.to_path_buf(),
                signal,
            });
        }
        let waited = started.elapsed();
        if waited >= LOCK_WAIT_MAX {
            return Err(FsError::LockTimeout {
                path: path.to_path_buf(),
                waited,
            });
        }
        // Woken at once by a stop request; otherwise a short, growing pause between tries.
        crate::sys::stop::wait_for_stop(pause.min(LOCK_WAIT_MAX - waited));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Holds an exclusive lock on a lock file until dropped (the kernel releases it if we die).
pub struct LockGuard {
    file: File,
}

impl LockGuard {
    /// Waits until the exclusive lock on `path` is ours: bounded, and ended by a stop request.
    pub fn exclusive(path: &Path) -> Result<LockGuard, FsError> {
        let file = open_private(path)?;
        wait_lock(&file, path)?;
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
        return remove_part(paths);
    }
    let chunk = paths.len().div_ceil(workers);
    std::thread::scope(|s| {
        let mut here = 0;
        let mut handles = Vec::new();
        for part in paths.chunks(chunk) {
            match std::thread::Builder::new().spawn_scoped(s, move || remove_part(part)) {
                Ok(h) => handles.push(h),
                // No thread to be had (a pids limit): this part is removed here.
                Err(_) => here += remove_part(part),
            }
        }
        here + handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum::<u64>()
    })
}

/// Unlinks each path below its directory's walked descriptor (one walk per directory in a
/// row), so a directory swapped for a symlink on the way removes nothing elsewhere.
fn remove_part(paths: &[PathBuf]) -> u64 {
    let mut dir: Option<(&Path, Option<OwnedFd>)> = None;
    let mut n = 0;
    for p in paths {
        let Ok((parent, name)) = split(p) else {
            continue;
        };
        if dir.as_ref().is_none_or(|(d, _)| *d != parent) {
            dir = Some((parent, walk(parent, false, Leaf::Trusted).ok()));
        }
        if let Some((_, Some(fd))) = &dir {
            n += u64::from(
                nix::unistd::unlinkat(fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok(),
            );
        }
    }
    n
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
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
