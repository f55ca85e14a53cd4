//! The CLI's output contracts through the built binary: `--result-json -` (stdout holds only the
//! document), `-q` never hiding why a run failed, the `--` hint, `-o`'s deprecation, the event
//! stream (a 3-attempt run, a run stopped by SIGTERM), sessions a run closes, `session list`,
//! completions that `bash -n` accepts, the man page under `man -l`, and the live progress line
//! on a pseudo-terminal (absent on a pipe).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn retryx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retryx"));
    c.env_remove("RETRYX_ARTIFACTS_DIR").env_remove("NO_COLOR");
    c
}

fn run(args: &[&str]) -> Output {
    retryx()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("retryx runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

/// Every line of the stream validates against `schemas/retry_events.schema.json`.
fn assert_schema(events: &[Value]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/retry_events.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    for e in events {
        assert!(v.is_valid(e), "{e} does not match the events schema");
    }
}

#[test]
fn result_json_dash_leaves_stdout_to_the_document_alone() {
    let out = run(&[
        "--result-json",
        "-",
        "-n",
        "2",
        "-d",
        "10ms",
        "--",
        "sh",
        "-c",
        "echo from-the-command; echo on-stderr >&2; exit 3",
    ]);
    let doc: Value =
        serde_json::from_slice(&out.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(doc["rc"], 3);
    assert_eq!(doc["retry"]["attempt_count"], 2);
    let err = text(&out.stderr);
    assert_eq!(err.matches("from-the-command").count(), 2, "{err}");
    assert!(err.contains("on-stderr"));
    assert_eq!(out.status.code(), Some(3));
    // Both cannot have stdout.
    let out = run(&["--result-json", "-", "--events", "-", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("cannot both have stdout"));
}

#[test]
fn quiet_still_says_why_a_command_could_not_start() {
    let out = run(&["-q", "--", "./no-such-command-here"]);
    assert_eq!(out.status.code(), Some(127));
    let err = text(&out.stderr);
    assert!(err.contains("command not found"), "{err}");
    assert!(err.contains("error_type=spawn_error"), "{err}");
    // -q drops the chatter of a run that succeeds, -qq everything.
    let ok = run(&["-q", "-n", "2", "-d", "1ms", "--", "sh", "-c", "exit 0"]);
    assert_eq!(text(&ok.stderr), "");
    let silent = run(&["-qq", "--", "./no-such-command-here"]);
    assert_eq!(
        (silent.status.code(), text(&silent.stderr)),
        (Some(127), String::new())
    );
}

#[test]
fn a_command_without_dashes_gets_the_hint() {
    let out = run(&["-n", "2", "ls", "-l"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("put the command after --: retryx -n 2 -- ls -l"),
        "{err}"
    );
    let typo = run(&["sesion", "list"]);
    assert!(text(&typo.stderr).contains("did you mean 'session'?"));
}

#[test]
fn dash_o_is_deprecated_for_the_operation_and_refused_when_it_looks_like_a_file() {
    let out = run(&["-o", "result.json", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("ambiguous"));
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("r.json");
    let out = run(&[
        "-o",
        "api",
        "--result-json",
        result.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("-o for --operation is deprecated"));
    let doc: Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert_eq!(doc["retry"]["operation"], "api");
}

#[test]
fn the_event_stream_of_a_three_attempt_run() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let out = run(&[
        "--events",
        events.to_str().unwrap(),
        "-v",
        "-n",
        "3",
        "-d",
        "10ms",
        "-j",
        "none",
        "--",
        "sh",
        "-c",
        "echo 'connection refused' >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    let ev = lines(&events);
    let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "start",
            "attempt_start",
            "attempt_end",
            "wait",
            "attempt_start",
            "attempt_end",
            "wait",
            "attempt_start",
            "attempt_end",
            "end"
        ]
    );
    let ends: Vec<&Value> = ev.iter().filter(|e| e["type"] == "attempt_end").collect();
    assert_eq!(ends.len(), 3);
    assert_eq!(ends[2]["data"]["exit_code"], 7);
    assert_eq!(ends[0]["data"]["class"], "connection_error");
    assert_eq!(ev[3]["data"]["delay"], 0.01);
    let end = &ev[ev.len() - 1]["data"];
    assert_eq!(
        (end["status"].as_str(), end["exit_code"].as_i64()),
        (Some("failed"), Some(7))
    );
    assert_schema(&ev);
    // -v: each attempt's exit and class as a log line.
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("DEBUG: attempt ended | attempt=").count(),
        3,
        "{err}"
    );
    assert!(err.contains("exit_code=7") && err.contains("matched=connection refused"));
}

#[test]
fn the_event_stream_ends_with_end_when_sigterm_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let mut child = retryx()
        .args([
            "--events",
            events.to_str().unwrap(),
            "-n",
            "5",
            "-d",
            "30s",
            "-j",
            "none",
        ])
        .args(["--", "sh", "-c", "exit 1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the wait has begun (flushed as it happens), then stop retryx.
    let until = Instant::now() + Duration::from_secs(20);
    while !lines(&events).iter().any(|e| e["type"] == "wait") {
        assert!(
            Instant::now() < until,
            "no wait event: {:?}",
            lines(&events)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let ev = lines(&events);
    let end = ev.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["data"]["status"], "aborted");
    assert_eq!(end["data"]["signal"], 15);
    assert_eq!(ev.iter().filter(|e| e["type"] == "end").count(), 1);
    assert_schema(&ev);
}

#[test]
fn a_run_that_cannot_start_still_ends_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.jsonl");
    let out = run(&[
        "--events",
        events.to_str().unwrap(),
        "--session-id",
        "x",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("--session-id needs an artifacts directory"));
    let ev = lines(&events);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["data"]["status"], "error");
}

fn sessions(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["session", "list", "--format", "json"];
    args.extend_from_slice(extra);
    let out = retryx()
        .args(&args)
        .env("RETRYX_ARTIFACTS_DIR", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_cli_session_is_closed_at_the_end_unless_kept_open() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let d = records.to_str().unwrap();
    // RETRYX_ARTIFACTS_DIR is the one default: the run keeps records there.
    let out = retryx()
        .env("RETRYX_ARTIFACTS_DIR", d)
        .args(["--operation", "first", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = sessions(&records, &[]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["session_status"], "completed");
    // --keep-open leaves it open; a later run joins it and it stays open for more.
    let out = run(&[
        "--artifacts-dir",
        d,
        "--keep-open",
        "--operation",
        "second",
        "--",
        "false",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let open = sessions(&records, &["--status", "open"]);
    assert_eq!(open.len(), 1, "{open:?}");
    let sid = open[0]["session_id"].as_str().unwrap().to_string();
    let out = run(&[
        "--artifacts-dir",
        d,
        "--session-id",
        &sid,
        "--operation",
        "third",
        "--",
        "true",
    ]);
    assert!(out.status.success());
    let all = sessions(&records, &[]);
    assert_eq!(all.len(), 2);
    // Newest first, filters.
    assert_eq!(all[0]["session_id"], sid.as_str());
    assert_eq!(sessions(&records, &["--status", "completed"]).len(), 1);
    assert_eq!(sessions(&records, &["--operation", "third"]).len(), 1);
    assert_eq!(sessions(&records, &["--operation", "nothing"]).len(), 0);
    assert_eq!(sessions(&records, &["--since", "1h"]).len(), 2);
    assert_eq!(sessions(&records, &["--since", "2999-01-01"]).len(), 0);
    // The text listing has a header; svg is not a listing format.
    let out = run(&["session", "list", "--artifacts-dir", d]);
    let listing = text(&out.stdout);
    assert!(listing.starts_with("SESSION "), "{listing}");
    assert_eq!(listing.lines().count(), 3);
    let out = run(&["session", "list", "--artifacts-dir", d, "--format", "svg"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn completions_pass_bash_n_and_the_man_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("retryx.bash");
    let out = run(&["completions", "bash"]);
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    for shell in ["zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success() && text(&out.stdout).contains("max-attempts"));
    }
    let page = dir.path().join("retryx.1");
    let out = run(&["man"]);
    assert!(out.status.success());
    std::fs::write(&page, &out.stdout).unwrap();
    let man = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output();
    let man = match man {
        Ok(m) => m,
        Err(e) => {
            assert!(
                std::env::var_os("RETRYX_REQUIRE_MAN").is_none(),
                "man is needed (apt man-db): {e}"
            );
            eprintln!("skipped: no man ({e})");
            return;
        }
    };
    let shown = text(&man.stdout);
    assert!(man.status.success(), "{}", text(&man.stderr));
    assert!(
        shown.contains("--max-attempts") && shown.contains("retryx"),
        "{shown}"
    );
}

/// Runs retryx with stderr on a fresh pseudo-terminal; returns what the terminal received.
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave: OwnedFd = pty.slave;
    let mut cmd = retryx();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the slave: the master reads EOF (EIO) once retryx is gone
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    (child.wait().unwrap().code(), text(&seen))
}

#[test]
fn the_countdown_shows_on_a_terminal_and_not_on_a_pipe() {
    let args = [
        "-n",
        "2",
        "-d",
        "400ms",
        "-j",
        "none",
        "--",
        "sh",
        "-c",
        "echo 'connection refused' >&2; exit 1",
    ];
    let (code, tty) = on_a_terminal(&args, &[]);
    assert_eq!(code, Some(1));
    assert!(
        tty.contains("attempt 1/2 \x1b[31mfailed\x1b[0m (\x1b[33mconnection_error\x1b[0m)"),
        "{tty:?}"
    );
    assert!(tty.contains("retrying in"), "{tty:?}");
    // Updated in place, then cleared before the next attempt's first line.
    assert!(
        tty.contains("\r\x1b[K[") && tty.matches("retrying in").count() >= 2,
        "{tty:?}"
    );
    // NO_COLOR: the same line without colour.
    let (_, plain) = on_a_terminal(&args, &[("NO_COLOR", "1")]);
    assert!(
        plain.contains("attempt 1/2 failed (connection_error) · retrying in"),
        "{plain:?}"
    );
    assert!(!plain.contains("\x1b[3"), "{plain:?}");
    // --progress never, or -q: nothing drawn on the terminal either.
    let mut never = vec!["--progress", "never"];
    never.extend_from_slice(&args);
    assert!(!on_a_terminal(&never, &[]).1.contains("retrying in"));
    // A pipe gets the log lines only.
    let out = run(&args);
    let err = text(&out.stderr);
    assert!(
        err.contains("operation failed, retrying") && !err.contains("retrying in"),
        "{err}"
    );
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
}

#[test]
fn the_timeline_tells_timeouts_aborts_and_every_alert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("r");
    let ds = d.to_str().unwrap();
    let cfg = dir.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"monitoring": {"alerts": {"max_average_retries": 0.4, "min_success_rate": 99}}, "jitter": "none"}"#,
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let common = [
        "-q",
        "-c",
        c,
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_pic",
    ];
    // An attempt cut by its timeout, then one that succeeds.
    let mut args = common.to_vec();
    args.extend([
        "--operation",
        "slow",
        "-n",
        "2",
        "-d",
        "10ms",
        "-t",
        "200ms",
        "--kill-grace",
        "100ms",
    ]);
    args.extend(["--", "sh", "-c", "[ \"$RETRYX_ATTEMPT\" = 2 ] || sleep 5"]);
    assert!(run(&args).status.success());
    // An operation stopped by SIGTERM during its 30 s wait.
    let events = dir.path().join("e.jsonl");
    let mut child = retryx()
        .args(common)
        .args([
            "--operation",
            "stopped",
            "-n",
            "3",
            "-d",
            "30s",
            "--events",
            events.to_str().unwrap(),
        ])
        .args(["--", "sh", "-c", "echo 'connection refused' >&2; exit 1"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !lines(&events).iter().any(|e| e["type"] == "wait") {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let out = run(&["session", "finalize", "retry_pic", "--artifacts-dir", ds]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&[
        "session",
        "show",
        "retry_pic",
        "--artifacts-dir",
        ds,
        "--format",
        "svg",
    ]);
    let svg = text(&out.stdout);
    // The timeout has its own colour and its class on the bar; the abort is not "retried".
    assert!(
        svg.contains("#7b3fb0") && svg.contains(">timeout</text>"),
        "{svg}"
    );
    assert!(svg.contains("stopped · aborted"), "{svg}");
    assert!(
        svg.contains("cut after") && svg.contains("retryx was stopped"),
        "{svg}"
    );
    assert!(
        svg.contains("attempt 1: failed, final connection_error"),
        "{svg}"
    );
    // Both alerts written out, not only the first.
    assert!(svg.matches("⚠ [").count() >= 2, "{svg}");
    let out = run(&[
        "session",
        "show",
        "retry_pic",
        "--artifacts-dir",
        ds,
        "--format",
        "text",
    ]);
    let t = text(&out.stdout);
    assert!(t.contains("✗timeout ✓") && t.contains("~wait cut"), "{t}");
    assert!(t.matches("ALERT [").count() >= 2, "{t}");
}

#[test]
fn a_guard_decision_is_an_event_and_a_v_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"retry_budget": {"max_tokens": 4, "token_ratio": 0.5}, "jitter": "none"}"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let events = dir.path().join("e.jsonl");
    let out = run(&[
        "-v",
        "-c",
        cfg.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--operation",
        "ctl",
        "--events",
        events.to_str().unwrap(),
        "-n",
        "10",
        "-d",
        "1ms",
        "--",
        "false",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let ev = lines(&events);
    let guard = ev
        .iter()
        .find(|e| e["type"] == "guard")
        .expect("a guard event");
    assert_eq!(guard["data"]["guard"], "retry_budget");
    assert_eq!(guard["data"]["decision"], "deny_retry");
    assert!(
        guard["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("exhausted")
    );
    assert_eq!(ev.last().unwrap()["type"], "end");
    assert_schema(&ev);
    let err = text(&out.stderr);
    assert!(
        err.contains("DEBUG: guard decision | guard=retry_budget"),
        "{err}"
    );
}
