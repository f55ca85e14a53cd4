//! Idempotency check (seed 003's idempotency_checker) and `creates` / `removes` with
//! `ansible.builtin.command`'s meaning:
//!
//! - `creates: PATH` (a path or glob, relative to `chdir`): when it matches, the command is not
//!   run at all (status `skipped`, `changed: false`, exit 0);
//! - `removes: PATH`: when it matches nothing, the command is not run;
//! - `check_command`: run by `/bin/sh -c` with the attempt's env and chdir (and RETRYX_ATTEMPT,
//!   the attempt just run, 0 before the first) before each retry
//!   (and before the first attempt with `check_before_first: true`); exit 0 means the work is
//!   already done: stop with success, `changed: false`. Any other exit, or a check that cannot
//!   run, means "not done": the retry goes ahead.
//!
//! This is the one guard that spawns: the check is a user command like the attempt itself, but
//! it is not an attempt (it is not classified, counted or retried), so it runs here rather than
//! through `exec`. It is bounded by the plan's per-attempt timeout (60 s when none), its whole
//! process group is killed on timeout or when retryx is asked to stop, and its output is
//! discarded. This file writes no state and no records.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Admission, Guard, GuardCtx, RetryVerdict};
use crate::classify::ErrorClass;
use crate::config::format_duration;

pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
const LONGEST_PAUSE: Duration = Duration::from_millis(20);

pub struct Idempotency {
    pub creates: Option<String>,
    pub removes: Option<String>,
    pub check_command: Option<String>,
    pub check_before_first: bool,
    pub chdir: Option<String>,
    pub env: Vec<(String, String)>,
    pub check_timeout: Duration,
    checks: Vec<Value>,
    skipped: Option<String>,
}

/// Whether `pattern` (a path, or a glob with `*`, `?` or `[`) names at least one existing path.
pub fn path_matches(pattern: &Path) -> bool {
    let text = pattern.to_string_lossy();
    if !text.contains(['*', '?', '[']) {
        return pattern.exists();
    }
    let Ok(c) = CString::new(text.as_bytes()) else {
        return false;
    };
    // SAFETY: glob_t is plain data that glob() fills in; globfree() releases what it allocated;
    // `c` outlives the call.
    unsafe {
        let mut g: nix::libc::glob_t = std::mem::zeroed();
        let rc = nix::libc::glob(c.as_ptr(), 0, None, &mut g);
        let found = rc == 0 && g.gl_pathc > 0;
        nix::libc::globfree(&mut g);
        found
    }
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckEnd {
    Exit(i32),
    Signal(i32),
    TimedOut,
    Stopped(i32),
    CannotRun(String),
}

impl Idempotency {
    pub fn new(
        creates: Option<String>,
        removes: Option<String>,
        check_command: Option<String>,
        check_before_first: bool,
        chdir: Option<String>,
        env: Vec<(String, String)>,
        check_timeout: Duration,
    ) -> Self {
        Idempotency {
            creates,
            removes,
            check_command,
            check_before_first,
            chdir,
            env,
            check_timeout,
            checks: Vec::new(),
            skipped: None,
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match &self.chdir {
            Some(dir) if p.is_relative() => Path::new(dir).join(p),
            _ => p.to_path_buf(),
        }
    }

    /// Runs the check command; cut short by its timeout and by stop signals.
    pub fn run_check(&self, cmd: &str, ctx: &GuardCtx) -> CheckEnd {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        // As the attempts see it: the attempt just run (0 before the first).
        c.env("RETRYX_ATTEMPT", ctx.attempt.to_string());
        if let Some(dir) = &self.chdir {
            c.current_dir(dir);
        }
        let mut child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => return CheckEnd::CannotRun(e.to_string()),
        };
        let until = Instant::now() + self.check_timeout;
        let mut pause = Duration::from_millis(1);
        let kill = |child: &mut std::process::Child| {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait();
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    return match (status.code(), status.signal()) {
                        (Some(code), _) => CheckEnd::Exit(code),
                        (None, Some(sig)) => CheckEnd::Signal(sig),
                        _ => CheckEnd::CannotRun("no exit status".into()),
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    kill(&mut child);
                    return CheckEnd::CannotRun(e.to_string());
                }
            }
            if let Some(sig) = ctx.cancel.signal() {
                kill(&mut child);
                return CheckEnd::Stopped(sig);
            }
            if Instant::now() >= until {
                kill(&mut child);
                return CheckEnd::TimedOut;
            }
            // Real sleeps in short slices: the child runs in real time whatever timer we have.
            std::thread::sleep(pause);
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// Runs the check and says whether the work is done (exit 0).
    fn check(&mut self, ctx: &GuardCtx, when: &str) -> Option<String> {
        let cmd = self.check_command.clone()?;
        let started = Instant::now();
        let end = self.run_check(&cmd, ctx);
        let took = started.elapsed();
        let (done, text) = match &end {
            CheckEnd::Exit(0) => (true, "exit 0".to_string()),
            CheckEnd::Exit(c) => (false, format!("exit {c}")),
            CheckEnd::Signal(s) => (false, format!("killed by signal {s}")),
            CheckEnd::TimedOut => (
                false,
                format!("timed out after {}", format_duration(self.check_timeout)),
            ),
            CheckEnd::Stopped(s) => (false, format!("stopped by signal {s}")),
            CheckEnd::CannotRun(e) => (false, format!("could not run: {e}")),
        };
        self.checks.push(json!({
            "when": when,
            "after_attempt": ctx.attempt,
            "result": text,
            "done": done,
            "duration": took.as_secs_f64(),
        }));
        let level_fields = [
            ("operation", ctx.operation.to_string()),
            ("when", when.to_string()),
            ("result", text.clone()),
        ];
        if done {
            ctx.log
                .info("idempotency check: already done", &level_fields);
            Some(format!(
                "check_command exited 0 ({when}): the work is already done"
            ))
        } else {
            if matches!(end, CheckEnd::CannotRun(_) | CheckEnd::TimedOut) {
                ctx.log
                    .warn("idempotency check did not answer", &level_fields);
            } else {
                ctx.log
                    .debug("idempotency check: not done yet", &level_fields);
            }
            None
        }
    }
}

impl Guard for Idempotency {
    fn name(&self) -> &'static str {
        "idempotency"
    }

    fn before_operation(&mut self, ctx: &GuardCtx) -> Admission {
        if let Some(c) = &self.creates
            && path_matches(&self.resolve(c))
        {
            let message = format!("Did not run command since '{c}' exists (creates)");
            self.skipped = Some(message.clone());
            return Admission::Skip { message };
        }
        if let Some(r) = &self.removes
            && !path_matches(&self.resolve(r))
        {
            let message = format!("Did not run command since '{r}' does not exist (removes)");
            self.skipped = Some(message.clone());
            return Admission::Skip { message };
        }
        if self.check_before_first
            && let Some(message) = self.check(ctx, "before_first")
        {
            self.skipped = Some(message.clone());
            return Admission::Skip { message };
        }
        Admission::Proceed
    }

    fn before_retry(&mut self, ctx: &GuardCtx, _class: ErrorClass) -> RetryVerdict {
        match self.check(ctx, "before_retry") {
            Some(reason) => {
                self.skipped = Some(reason.clone());
                RetryVerdict::Done { reason }
            }
            None => RetryVerdict::Allow,
        }
    }

    fn report(&self) -> Value {
        json!({
            "creates": self.creates,
            "removes": self.removes,
            "check_command": self.check_command.is_some(),
            "check_before_first": self.check_before_first,
            "checks": self.checks,
            "skipped": self.skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Logger;
    use crate::sys::clock::FakeTimer;
    use crate::sys::stop::Cancel;

    fn ctx<'a>(t: &'a FakeTimer, c: &'a Cancel, l: &'a Logger) -> GuardCtx<'a> {
        GuardCtx {
            timer: t,
            cancel: c,
            log: l,
            operation: "op",
            attempt: 1,
            elapsed: Duration::ZERO,
        }
    }

    fn guard(check: &str, env: Vec<(String, String)>) -> Idempotency {
        Idempotency::new(
            None,
            None,
            Some(check.into()),
            false,
            None,
            env,
            Duration::from_secs(5),
        )
    }

    #[test]
    fn globs_and_plain_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("done.flag"), "").unwrap();
        assert!(path_matches(&d.path().join("done.flag")));
        assert!(path_matches(&d.path().join("*.flag")));
        assert!(!path_matches(&d.path().join("*.nope")));
        assert!(!path_matches(&d.path().join("missing")));
    }

    #[test]
    fn creates_and_removes_relative_to_chdir() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("out.txt"), "").unwrap();
        let (t, c, l) = (FakeTimer::new(), Cancel::new(), Logger::memory(-2));
        let dir = Some(d.path().to_string_lossy().into_owned());
        let mut g = Idempotency::new(
            Some("out.txt".into()),
            None,
            None,
            false,
            dir.clone(),
            vec![],
            DEFAULT_CHECK_TIMEOUT,
        );
        assert!(
            matches!(g.before_operation(&ctx(&t, &c, &l)), Admission::Skip { message } if message.contains("exists"))
        );
        let mut g = Idempotency::new(
            None,
            Some("in.txt".into()),
            None,
            false,
            dir.clone(),
            vec![],
            DEFAULT_CHECK_TIMEOUT,
        );
        assert!(matches!(
            g.before_operation(&ctx(&t, &c, &l)),
            Admission::Skip { .. }
        ));
        let mut g = Idempotency::new(
            None,
            Some("out.txt".into()),
            None,
            false,
            dir,
            vec![],
            DEFAULT_CHECK_TIMEOUT,
        );
        assert_eq!(g.before_operation(&ctx(&t, &c, &l)), Admission::Proceed);
    }

    #[test]
    fn the_check_sees_the_attempt_env_and_decides() {
        let (t, c, l) = (FakeTimer::new(), Cancel::new(), Logger::memory(-2));
        let env = vec![("WANT".to_string(), "yes".to_string())];
        let mut g = guard(
            "test \"$WANT\" = yes && test \"$RETRYX_ATTEMPT\" = 1",
            env.clone(),
        );
        assert!(matches!(
            g.before_retry(&ctx(&t, &c, &l), ErrorClass::Timeout),
            RetryVerdict::Done { .. }
        ));
        let mut g = guard("test \"$WANT\" = no", env);
        assert_eq!(
            g.before_retry(&ctx(&t, &c, &l), ErrorClass::Timeout),
            RetryVerdict::Allow
        );
        assert_eq!(g.report()["checks"][0]["result"], "exit 1");
    }

    #[test]
    fn a_hanging_check_is_killed_at_its_timeout() {
        let (t, c, l) = (FakeTimer::new(), Cancel::new(), Logger::memory(-2));
        let mut g = guard("sleep 30", vec![]);
        g.check_timeout = Duration::from_millis(200);
        let started = Instant::now();
        assert_eq!(
            g.before_retry(&ctx(&t, &c, &l), ErrorClass::Timeout),
            RetryVerdict::Allow
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            g.report()["checks"][0]["result"]
                .as_str()
                .unwrap()
                .starts_with("timed out")
        );
    }
}
