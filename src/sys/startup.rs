//! What std's start-up does before `main`, for a binary that skips it (`src/main.rs` is
//! `no_main`): standard descriptors made safe, SIGPIPE ignored, a panic turned into exit code
//! 101. Skipped on purpose: the main thread's stack-guard set-up, which reads /proc/self/maps
//! on every run (~0.15 ms, a tenth of retryx's whole overhead); a stack overflow is then a
//! plain SIGSEGV. Nothing else belongs here.

use std::panic::UnwindSafe;

/// Runs `body` (the front door) as std's `main` would, and exits with its code.
pub fn run(body: impl FnOnce() -> i32 + UnwindSafe) -> ! {
    sanitize_standard_fds();
    ignore_sigpipe();
    // The panic message is printed by the default hook, as under std's start-up.
    let code = std::panic::catch_unwind(body).unwrap_or(101);
    std::process::exit(code)
}

/// A closed stdin, stdout or stderr is reopened on /dev/null, so no pipe or record we open can
/// take its number and receive what was meant for it.
fn sanitize_standard_fds() {
    use nix::libc;
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a live array of three pollfd, its length passed alongside.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if polled < 0 {
        return;
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            // The lowest free number is this one: the open fills the hole. Not close-on-exec
            // (std's File would be): children inherit it as their stdin/stdout/stderr. Kept
            // open for the life of the process. Without it nothing is safe: abort, as std does.
            use nix::fcntl::{OFlag, open};
            use std::os::fd::IntoRawFd;
            match open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty()) {
                Ok(fd) => {
                    let _ = fd.into_raw_fd();
                }
                Err(_) => std::process::abort(),
            }
        }
    }
}

/// A reader that goes away makes our writes fail with EPIPE (handled) instead of killing us
/// before the records are written. Children get the default back (std's spawn resets it).
fn ignore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installs SIG_IGN, no handler code runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}
