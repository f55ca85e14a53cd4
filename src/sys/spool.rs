//! `--stdin-replay`'s spool: stdin copied once, up to `--stdin-max` bytes, into an unnamed
//! temp file (O_TMPFILE, or unlinked at once), so no exit path (a signal, SIGKILL) can leave a
//! spool behind; a stop request ends the copy at once. It reads stdin and holds the copy;
//! it never runs anything or decides an exit code.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::sys::stop::Cancel;

/// `--stdin-max`'s default: 64 MiB.
pub const DEFAULT_STDIN_MAX: u64 = 64 * 1024 * 1024;

/// How often the copy looks at the stop flag when no wake pipe could be made.
const FLAG_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "--stdin-replay: stdin is longer than --stdin-max ({max} bytes); raise --stdin-max (e.g. --stdin-max 256MiB) or feed less"
    )]
    TooLarge { max: u64 },
    #[error("--stdin-replay: {0}")]
    Io(String),
    #[error("stopped by signal {0} while reading stdin")]
    Stopped(i32),
}

/// The captured stdin. Each attempt opens `path()` afresh, with its own offset at 0.
pub struct Spool {
    file: File,
}

impl Spool {
    /// A path that opens the spool from its start: the descriptor's `/proc` link (the file has
    /// no name).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

/// Copies all of stdin into a spool, refusing more than `max` bytes, ended by a stop request
/// (`Stopped`, the spool gone with it).
pub fn capture(max: u64, cancel: &Cancel) -> Result<Spool, SpoolError> {
    let io = |what: &str, e: std::io::Error| SpoolError::Io(format!("{what}: {e}"));
    let mut file = tempfile::tempfile().map_err(|e| io("cannot make a temp file", e))?;
    // O_TMPFILE's mode went through the umask; nobody but us may read what stdin held.
    nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| io("cannot make a temp file", e.into()))?;
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        if let Some(sig) = cancel.signal() {
            return Err(SpoolError::Stopped(sig));
        }
        if !readable(&stdin, cancel)? {
            continue;
        }
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("reading stdin", e)),
        };
        total += n as u64;
        if total > max {
            return Err(SpoolError::TooLarge { max });
        }
        file.write_all(&buf[..n])
            .map_err(|e| io("writing the spool", e))?;
    }
    file.rewind().map_err(|e| io("rewinding the spool", e))?;
    let spool = Spool { file };
    // Make sure the /proc link reopens it (no /proc: fail now, clearly, not at the attempt).
    File::open(spool.path()).map_err(|e| io("cannot reopen the spool through /proc", e))?;
    Ok(spool)
}

/// Waits until stdin has something (data or its end) or a stop request came; `false` when
/// woken for the stop (the caller looks at the flag).
fn readable(stdin: &impl AsFd, cancel: &Cancel) -> Result<bool, SpoolError> {
    let wake = cancel.wake_fd();
    let mut fds = vec![PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    if let Some(w) = wake {
        fds.push(PollFd::new(w, PollFlags::POLLIN));
    }
    let timeout = match wake {
        Some(_) => PollTimeout::NONE,
        None => PollTimeout::try_from(FLAG_POLL).unwrap_or(PollTimeout::NONE),
    };
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(false),
        Err(e) => return Err(SpoolError::Io(format!("waiting for stdin: {e}"))),
    }
    let woken = fds
        .get(1)
        .and_then(PollFd::revents)
        .is_some_and(|r| !r.is_empty());
    let data = fds[0].revents().is_some_and(|r| !r.is_empty());
    Ok(data && !woken)
}

/// A size such as `64MiB`, `512k`, `2G` or `1048576` (bytes). Units are binary (k = 1024)
/// whether written `k`, `KB` or `KiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(size_error(text)),
    };
    let n: f64 = num.parse().map_err(|_| size_error(text))?;
    let bytes = n * f64::from(1u32 << shift);
    if !bytes.is_finite() || !(1.0..=(1u64 << 50) as f64).contains(&bytes) {
        return Err(format!(
            "--stdin-max: expected a size from 1 byte to 1PiB, got {text:?}"
        ));
    }
    Ok(bytes as u64)
}

fn size_error(text: &str) -> String {
    format!("--stdin-max: expected a size such as 64MiB, 512k or 1048576, got {text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_bad_ones_name_the_flag() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        for bad in ["", "x", "10 parsecs", "0", "-1", "1e400", "9999999P"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.starts_with("--stdin-max: expected"), "{bad:?}: {e}");
        }
    }
}
