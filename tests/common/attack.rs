//! Helpers of the hardening tests: the binary, an unprivileged user for attacks on paths,
//! bounded waits on child processes, and looks into /proc. No test logic here.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The binary under test; `RETRYX_TEST_BIN` points the tests at another build (to measure
/// the attacks against an older release).
pub fn retryx_bin() -> String {
    std::env::var("RETRYX_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_retryx").to_string())
}

pub fn retryx() -> Command {
    Command::new(retryx_bin())
}

/// Name of the unprivileged user the hardening tests create to plant links.
pub const PLANTER: &str = "retryx-planter";

/// The uid and gid of `PLANTER`, made with `useradd` when missing. `None` when we are not root
/// (no user can be made); under `RETRYX_REQUIRE_ROOT=1` (set by `make test`) that is a failure.
pub fn planting_user() -> Option<(u32, u32)> {
    static ONCE: std::sync::Mutex<Option<Option<(u32, u32)>>> = std::sync::Mutex::new(None);
    let mut done = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ids) = *done {
        return ids;
    }
    let ids = make_user();
    if ids.is_none() && std::env::var("RETRYX_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!(
            "cannot create the user {PLANTER} (not root, or no useradd) and RETRYX_REQUIRE_ROOT=1"
        );
    }
    *done = Some(ids);
    ids
}

fn make_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, PLANTER]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let ok = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PLANTER,
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
    }
    Some((id("-u")?, id("-g")?))
}

/// `sh -c script` run as the planting user; panics when it fails.
pub fn as_planter(ids: (u32, u32), script: &str) {
    use std::os::unix::process::CommandExt;
    let st = Command::new("sh")
        .args(["-c", script])
        .uid(ids.0)
        .gid(ids.1)
        .status()
        .unwrap();
    assert!(st.success(), "planter script failed: {script}");
}

/// Waits for `child` up to `bound`; kills it (by its pid) and panics past that.
pub fn wait_bounded(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    let until = Instant::now() + bound;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every few ms up to `bound` (a wait for a state, not a timing assertion).
pub fn wait_until(bound: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + bound;
    while !cond() {
        assert!(
            Instant::now() < until,
            "{what}: not reached within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The kernel function process `pid` sleeps in (`/proc/PID/wchan`), e.g. `wait_for_partner`
/// for an open of a FIFO.
pub fn wchan(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// The pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if ppid_of(p) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// The parent of `pid` and whether it is a zombie, from `/proc/PID/stat`.
pub fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Sends `sig` to `pid` (the `kill` command: no libc in the tests).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// The names in `dir` (empty when it is missing).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// How a process ended, as a shell reports it: the code, or 128+N for a signal.
pub fn shell_code(st: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}
