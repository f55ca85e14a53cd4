//! The stdout contract of `--result-json -` and `--events -`: stdout carries only retryx's own
//! machine-readable output. The real stdout is kept on a private close-on-exec descriptor (no
//! attempt inherits it) and descriptor 1 becomes a copy of stderr, so the command's output,
//! and anything else that would write to stdout during the run, lands on stderr. Call it once,
//! before anything is spawned; it decides nothing about what is written.

use std::os::fd::AsFd;

/// Takes stdout for the documents: returns it as a file, and points descriptor 1 at stderr.
pub fn take_stdout() -> std::io::Result<std::fs::File> {
    use std::io::Write;
    // Whatever std buffered so far belongs to the old stdout.
    std::io::stdout().flush()?;
    // F_DUPFD_CLOEXEC: the kept copy never reaches a child.
    let kept = std::io::stdout().as_fd().try_clone_to_owned()?;
    nix::unistd::dup2_stdout(std::io::stderr()).map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(kept))
}
