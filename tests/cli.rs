//! The CLI through its front door: the built `retryx` binary on real commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn retryx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_retryx"))
}

fn run(args: &[&str]) -> Output {
    retryx()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("retryx runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A script that fails `fails` times (printing `message` to stderr) and then succeeds.
fn flaky(dir: &Path, fails: u32, message: &str) -> PathBuf {
    let script = dir.join("flaky.sh");
    let counter = dir.join("count");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'\nif [ $n -le {fails} ]; then echo \"{message}\" >&2; exit 3; fi\necho \"done on attempt $n (RETRYX_ATTEMPT=$RETRYX_ATTEMPT of $RETRYX_MAX_ATTEMPTS)\"\n",
            c = counter.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

fn result_json(dir: &Path, args: &[&str]) -> (Output, Value) {
    let path = dir.join("result.json");
    let mut all = vec!["--result-json", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run(&all);
    let doc: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("result written")).expect("valid JSON");
    (out, doc)
}

#[test]
fn flaky_command_succeeds_on_the_third_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let script = flaky(dir.path(), 2, "connect: connection refused");
    let (out, doc) = result_json(
        dir.path(),
        &["-n", "5", "-d", "10ms", "--", script.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("done on attempt 3 (RETRYX_ATTEMPT=3 of 5)"),
        "{stdout}"
    );
    let log = stderr(&out);
    assert_eq!(
        log.matches("WARN: operation failed, retrying | operation=command, attempt=")
            .count(),
        2,
        "{log}"
    );
    assert!(log.contains("error_type=connection_error"), "{log}");
    assert!(
        log.contains(
            "INFO: operation succeeded after retry | operation=command, attempt=3, max_attempts=5"
        ),
        "{log}"
    );
    // the result document: command-like keys and the seed's per-attempt shape
    assert_eq!(doc["rc"], 0);
    assert_eq!(doc["failed"], false);
    assert_eq!(doc["changed"], true);
    assert_eq!(doc["retry"]["attempt_count"], 3);
    assert_eq!(doc["retry"]["status"], "completed");
    let attempts = doc["retry"]["attempts"].as_array().unwrap();
    for key in [
        "attempt_number",
        "start_time",
        "end_time",
        "status",
        "error_type",
        "error_message",
        "should_retry",
        "delay_before_retry",
        "execution_time",
    ] {
        assert!(attempts[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(attempts[0]["status"], "failed");
    assert_eq!(attempts[0]["error_type"], "connection_error");
    assert_eq!(attempts[0]["should_retry"], true);
    assert_eq!(attempts[2]["status"], "success");
    assert!(
        doc["stdout"]
            .as_str()
            .unwrap()
            .starts_with("done on attempt 3")
    );
    for key in [
        "cmd",
        "stdout_lines",
        "stderr_lines",
        "start",
        "end",
        "delta",
        "msg",
    ] {
        assert!(doc.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn non_retryable_failure_makes_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let script = flaky(dir.path(), 5, "open /etc/secret: permission denied");
    let (out, doc) = result_json(
        dir.path(),
        &["-n", "5", "-d", "10ms", "--", script.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(doc["retry"]["attempt_count"], 1);
    assert_eq!(
        doc["retry"]["attempts"][0]["error_type"],
        "permission_error"
    );
    assert!(stderr(&out).contains("WARN: operation failed with non-retryable error"));
}

#[test]
fn max_attempts_exhausted_returns_the_last_exit_code() {
    let out = run(&[
        "-n",
        "3",
        "-d",
        "1ms",
        "-j",
        "none",
        "--",
        "sh",
        "-c",
        "echo 'HTTP/1.1 503 Service Unavailable' >&2; exit 22",
    ]);
    assert_eq!(out.status.code(), Some(22));
    let log = stderr(&out);
    assert!(
        log.contains("ERROR: operation failed after max attempts | operation=command, attempts=3"),
        "{log}"
    );
    assert!(log.contains("error_type=service_unavailable"), "{log}");
}

fn pid_alive(pid: i32) -> bool {
    // Zombies count as dead: look at the state in /proc.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

#[test]
fn timeout_kills_the_whole_group_grandchildren_included() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let cmd = format!(
        "sleep 60 & echo $! >> '{p}'; echo $$ >> '{p}'; wait",
        p = pids.display()
    );
    let started = Instant::now();
    let out = run(&[
        "-n",
        "2",
        "-d",
        "10ms",
        "-t",
        "300ms",
        "--kill-grace",
        "300ms",
        "--shell",
        "--",
        &cmd,
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        4,
        "two attempts, each a shell and a sleeping grandchild"
    );
    std::thread::sleep(Duration::from_millis(100));
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} survived the timeout");
    }
    assert!(stderr(&out).contains("error_type=timeout"));
}

#[test]
fn a_shell_timeout_ends_at_the_timeout_not_after_the_grace() {
    // The killed sleep is a grandchild whose parent shell died with it: retryx reaps it itself
    // instead of waiting out the 2 s grace on a zombie.
    let started = Instant::now();
    let out = run(&[
        "-n",
        "1",
        "-t",
        "1s",
        "--shell",
        "--",
        "sleep 30; echo never",
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn timeout_escalates_to_kill_when_term_is_ignored() {
    let started = Instant::now();
    let out = run(&[
        "-n",
        "1",
        "-t",
        "200ms",
        "--kill-grace",
        "300ms",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 30",
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn deadline_bounds_the_whole_operation() {
    let started = Instant::now();
    let out = run(&[
        "-n",
        "100",
        "-d",
        "200ms",
        "-j",
        "none",
        "-p",
        "fixed",
        "--deadline",
        "1s",
        "--",
        "false",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(took < Duration::from_millis(1900), "took {took:?}");
    assert!(
        stderr(&out).contains("deadline reached"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn command_not_found_is_127_and_not_retried() {
    let out = run(&[
        "-n",
        "5",
        "-d",
        "10ms",
        "--",
        "/nonexistent/retryx-no-such-command",
    ]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        stderr(&out).matches("operation failed").count(),
        1,
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("error_type=spawn_error"));
}

#[test]
fn not_executable_is_126() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("data.txt");
    std::fs::write(&f, "not a program").unwrap();
    let out = run(&["-n", "3", "--", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn sigterm_during_a_wait_stops_with_143_and_the_child_group_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let cmd = format!("sleep 60 & echo $! >> '{p}'; exit 1", p = pids.display());
    let mut child = retryx()
        .args(["-n", "5", "-d", "30s", "-j", "none", "--shell", "--", &cmd])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first attempt has failed and the 30s wait has begun.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait should end at once"
    );
    assert_eq!(status.code(), Some(143));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("operation aborted by signal"), "{err}");
    // the failed attempt's background child did not outlive it
    for pid in std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<i32>().unwrap())
    {
        assert!(!pid_alive(pid), "pid {pid} survived");
    }
}

#[test]
fn a_successful_attempt_keeps_its_background_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let cmd = format!(
        "sleep 5 >/dev/null 2>&1 & echo $! > '{p}'",
        p = pids.display()
    );
    let out = run(&["--shell", "--", &cmd]);
    assert_eq!(out.status.code(), Some(0));
    let pid: i32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        pid_alive(pid),
        "a daemon started by a successful attempt was killed"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn sigterm_during_an_attempt_is_forwarded_to_the_group() {
    signal_during_an_attempt_is_forwarded_to_the_group(nix::sys::signal::Signal::SIGTERM, 143);
}

#[test]
fn sigint_and_sighup_during_an_attempt_end_with_128_plus_n() {
    signal_during_an_attempt_is_forwarded_to_the_group(nix::sys::signal::Signal::SIGINT, 130);
    signal_during_an_attempt_is_forwarded_to_the_group(nix::sys::signal::Signal::SIGHUP, 129);
}

fn signal_during_an_attempt_is_forwarded_to_the_group(sig: nix::sys::signal::Signal, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let cmd = format!(
        "sleep 60 & echo $! >> '{p}'; echo $$ >> '{p}'; wait",
        p = pids.display()
    );
    let mut child = retryx()
        .args(["-n", "5", "--shell", "--", &cmd])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&pids)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code));
    std::thread::sleep(Duration::from_millis(100));
    for pid in std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<i32>().unwrap())
    {
        assert!(!pid_alive(pid), "pid {pid} survived");
    }
}

#[test]
fn exit_code_rules() {
    // 75 is in retry_on_exit: retried; 2 is not: one attempt.
    let out = run(&[
        "-n",
        "3",
        "-d",
        "1ms",
        "--retry-on-exit",
        "1,75,100-110",
        "--",
        "sh",
        "-c",
        "exit 75",
    ]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        2
    );
    let out = run(&[
        "-n",
        "3",
        "-d",
        "1ms",
        "--retry-on-exit",
        "1,75",
        "--",
        "sh",
        "-c",
        "exit 2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        0
    );
    // fail_on_exit wins even over retry_on_exit and a retryable message
    let out = run(&[
        "-n",
        "3",
        "-d",
        "1ms",
        "--retry-on-exit",
        "1-100",
        "--fail-on-exit",
        "9",
        "--",
        "sh",
        "-c",
        "echo connection refused >&2; exit 9",
    ]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        0
    );
    assert_eq!(out.status.code(), Some(9));
}

#[test]
fn output_pattern_rules_scan_the_whole_stream() {
    // The match is early in a long output: it must be seen though it is not in the tail.
    let noisy = "echo 'please try later: backend busy'; head -c 300000 /dev/zero | tr '\\0' 'x'; echo; echo 'permission denied' >&2; exit 1";
    let out = run(&[
        "-n",
        "2",
        "-d",
        "1ms",
        "--retry-if",
        "try later",
        "--shell",
        "--",
        noisy,
    ]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        1,
        "{}",
        stderr(&out)
    );
    // fail-if wins over retry-if
    let out = run(&[
        "-n",
        "3",
        "-d",
        "1ms",
        "--retry-if",
        "try later",
        "--fail-if",
        "permission",
        "--shell",
        "--",
        noisy,
    ]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        0
    );
    assert!(stderr(&out).contains("operation failed with non-retryable error"));
}

#[test]
fn retry_conditions_limit_the_classes_retried() {
    let out = run(&[
        "-n",
        "3",
        "-d",
        "1ms",
        "--retry-conditions",
        "timeout",
        "--",
        "sh",
        "-c",
        "echo connection refused >&2; exit 1",
    ]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        0
    );
    let out = run(&[
        "-n",
        "3",
        "-d",
        "1ms",
        "--retry-conditions",
        "connection_error,timeout",
        "--",
        "sh",
        "-c",
        "echo connection refused >&2; exit 1",
    ]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        2
    );
}

#[test]
fn jitter_seed_makes_waits_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let delays = |seed: &str| {
        let (_, doc) = result_json(
            dir.path(),
            &[
                "-n",
                "4",
                "-d",
                "1ms",
                "-M",
                "50ms",
                "-j",
                "full",
                "--jitter-seed",
                seed,
                "--",
                "false",
            ],
        );
        assert_eq!(
            doc["retry"]["jitter_seed"].as_u64().unwrap().to_string(),
            seed
        );
        doc["retry"]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["delay_before_retry"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(delays("42"), delays("42"));
    assert_ne!(delays("42"), delays("43"));
}

#[test]
fn stdin_replay_feeds_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("seen");
    let cmd = format!("cat >> '{}'; exit 1", log.display());
    let mut child = retryx()
        .args([
            "-n",
            "3",
            "-d",
            "1ms",
            "--stdin-replay",
            "--shell",
            "--",
            &cmd,
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"payload\n").unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "payload\npayload\npayload\n"
    );
}

#[test]
fn bad_usage_is_125_with_a_message_naming_the_key() {
    let out = run(&["-n", "lots", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let out = run(&["-p", "sometimes", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("--policy") && stderr(&out).contains("unknown retry policy"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--retry-on-exit", "1-x", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("retry_on_exit"));
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(125));
    let out = run(&["--retry-if", "(", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("'retry_if'"));
}

#[test]
fn config_file_with_operation_overrides_and_flags_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"max_attempts": 2, "base_delay": "1ms", "jitter_enabled": false,
            "operation_configs": {"api_call": {"max_attempts": 4, "command": "exit 1"}}}"#,
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let out = run(&["-c", c, "-o", "api_call"]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        3,
        "{}",
        stderr(&out)
    );
    let out = run(&["-c", c, "-o", "api_call", "-n", "2"]);
    assert_eq!(
        stderr(&out).matches("operation failed, retrying").count(),
        1
    );
    // unknown key in the file: 125 and the key named
    std::fs::write(&cfg, r#"{"max_attemps": 2}"#).unwrap();
    let out = run(&["-c", c, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("max_attemps"), "{}", stderr(&out));
    std::fs::write(&cfg, "{not json").unwrap();
    let out = run(&["-c", c, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("not valid JSON"));
}

#[test]
fn validate_and_schema_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"max_attempts": 5, "retry_policy": "linear_backoff", "base_delay": 10}"#,
    )
    .unwrap();
    let out = run(&["validate", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(&cfg, r#"{"max_attempts": "many"}"#).unwrap();
    let out = run(&["validate", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("'max_attempts': expected an integer"));
    let out = run(&["schema"]);
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "retry_manager");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/retry_manager.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(schema, committed);
}

#[test]
fn big_output_passes_through_and_the_tail_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (out, doc) = result_json(
        dir.path(),
        &[
            "-n",
            "1",
            "--shell",
            "--",
            "head -c 5000000 /dev/zero | tr '\\0' 'y'; echo END",
        ],
    );
    assert_eq!(out.stdout.len(), 5_000_004);
    let stdout = doc["stdout"].as_str().unwrap();
    assert!(stdout.len() <= 64 * 1024 && stdout.ends_with("END"));
    assert_eq!(doc["retry"]["attempts"][0]["stdout_bytes"], 5_000_004);
}

/// main.rs skips std's start-up, so retryx::sys::startup ignores SIGPIPE itself: a reader that goes
/// away is seen as EPIPE, and the run stops as a plain pipeline would (SIGPIPE to the child's
/// group, no retry, 128+13), records and log written rather than retryx killed mid-way.
#[test]
fn a_reader_that_goes_away_stops_the_run_like_sigpipe() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = retryx()
        .args(["-n", "3", "-d", "0", "--artifacts-dir"])
        .arg(dir.path())
        .args(["--", "sh", "-c", "while echo out; do :; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{:?}", out.status);
    assert!(
        stderr(&out).contains("operation aborted by signal") && stderr(&out).contains("signal=13"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("retrying"), "{}", stderr(&out));
    let ops: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("operation_")
        })
        .collect();
    assert_eq!(ops.len(), 1, "the operation is recorded");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn closed_standard_descriptors_are_reopened_on_dev_null() {
    // With fd 0, 1 and 2 closed, the next pipe retryx opened would take their numbers, and what
    // it writes as stdout or log would land in its own pipe. The child looks at its parent's fds.
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result.json");
    // The child also reads its own fd 0: inherited from retryx, so it must survive the exec.
    let script = r#"exec "$0" --result-json "$1" -- sh -c 'readlink /proc/$PPID/fd/1 /proc/$PPID/fd/2 /proc/$$/fd/0' <&- >&- 2>&-"#;
    let status = Command::new("sh")
        .args([
            "-c",
            script,
            env!("CARGO_BIN_EXE_retryx"),
            result.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(doc["rc"], 0);
    assert_eq!(doc["stdout"], "/dev/null\n/dev/null\n/dev/null", "{doc}");
}

#[test]
fn a_stalled_non_blocking_stdout_does_not_hold_the_timeout() {
    // A caller's non-blocking pipe that nobody reads: the copy waits for room only until the
    // attempt's kill deadline, so `-t` still ends the attempt (124) instead of hanging.
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    fcntl(&write_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let started = Instant::now();
    let mut child = retryx()
        .args(["-n", "1", "-t", "1s", "--kill-grace", "200ms", "--", "yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(read_end);
    let status = status.expect("retryx hung on a full non-blocking stdout");
    assert_eq!(status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Every config a run refuses with 125 before running anything, `retryx validate` refuses
/// with the same message (issue 13: validate runs the run's own resolution).
#[test]
fn validate_rejects_what_a_run_rejects_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let rejected = [
        r#"{"circuit_breaker": {"enabled": true, "slow_call_rate_threshold": 50}}"#,
        r#"{"circuit_breaker": {"enabled": true, "window_size": 5, "minimum_calls": 10}}"#,
        r#"{"wait_for_network": true, "required_interfaces": ["bad/name"]}"#,
        r#"{"wait_for_network": true, "network_probe": "no-port"}"#,
        r#"{"session_id": "../x"}"#,
        r#"{"session_id": ""}"#,
        r#"{"artifacts_dir": ""}"#,
        r#"{"state_dir": "  "}"#,
        r#"{"retry_budget": {"enabled": true, "max_tokens": 0}}"#,
        r#"{"check_before_first": true}"#,
        r#"{"action": "download", "url": "ftp://example.invalid/x", "dest": "/tmp/x"}"#,
        r#"{"max_delay": "40d"}"#,
        r#"{"base_delay": 10, "max_delay": 1}"#,
    ];
    for (i, text) in rejected.iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.json"));
        std::fs::write(&cfg, text).unwrap();
        let result = dir.path().join(format!("r{i}.json"));
        let touch = format!("touch {}", marker.display());
        let out = run(&[
            "-c",
            cfg.to_str().unwrap(),
            "--result-json",
            result.to_str().unwrap(),
            "--shell",
            "--",
            &touch,
        ]);
        assert_eq!(out.status.code(), Some(125), "{text}: {}", stderr(&out));
        assert!(!marker.exists(), "{text}: the command ran");
        // The run's message: from its result document, else (a config refused before any
        // document) from stderr.
        let msg = std::fs::read(&result)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|d| d["msg"].as_str().map(String::from))
            .unwrap_or_else(|| {
                stderr(&out)
                    .trim()
                    .trim_start_matches("retryx: ")
                    .to_string()
            });
        assert!(!msg.is_empty(), "{text}");
        let v = run(&["validate", cfg.to_str().unwrap()]);
        assert_eq!(
            v.status.code(),
            Some(125),
            "{text}: validate said {}",
            stderr(&v)
        );
        assert!(
            stderr(&v).contains(&msg),
            "{text}: run said {msg:?}, validate said {:?}",
            stderr(&v)
        );
    }
}
