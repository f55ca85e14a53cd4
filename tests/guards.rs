//! The guards through the CLI, as users run them: real retryx processes sharing a state dir.
//! Timing is asserted with generous bounds only; nothing here sleeps to test timing (the few
//! waits are for other processes to reach a point). Each test owns its temp directories.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_retryx")
}

struct Run {
    code: i32,
    result: Value,
    stderr: String,
}

/// Runs retryx with `config` (as a -c file) and `args`, collecting its result document.
fn retryx(dir: &Path, config: &Value, args: &[&str]) -> Run {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tag = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let cfg = dir.join(format!("cfg-{tag}.json"));
    std::fs::write(&cfg, config.to_string()).unwrap();
    let res = dir.join(format!("result-{tag}.json"));
    let out = Command::new(bin())
        .arg("-c")
        .arg(&cfg)
        .arg("--result-json")
        .arg(&res)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    finish(out, &res)
}

fn finish(out: Output, res: &Path) -> Run {
    let result = std::fs::read_to_string(res)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    Run {
        code: out.status.code().unwrap_or(-1),
        result,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn state_arg(d: &Path) -> String {
    d.join("state").to_string_lossy().into_owned()
}

fn breaker_cli(state: &str, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("breaker")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_open_breaker_fails_fast_with_75_without_running_the_command() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    let cfg = json!({"circuit_breaker": {"consecutive_failures": 2, "open_duration": "1h"}, "jitter": "none"});
    let r = retryx(
        d.path(),
        &cfg,
        &[
            "-n",
            "2",
            "-d",
            "10ms",
            "--state-dir",
            &state,
            "-o",
            "api",
            "--",
            "sh",
            "-c",
            "echo 'service unavailable' >&2; exit 1",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let b = &r.result["retry"]["guards"]["circuit_breaker"];
    assert_eq!(b["state_before"], "closed");
    assert_eq!(b["state"], "open", "{b}");

    // A new process (state survives the restart): refused, the command never runs.
    let marker = d.path().join("ran");
    let cmd = format!("touch {}", marker.display());
    let r = retryx(
        d.path(),
        &cfg,
        &["--state-dir", &state, "-o", "api", "--", "sh", "-c", &cmd],
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(!marker.exists(), "the command ran through an open breaker");
    assert_eq!(r.result["retry"]["status"], "refused");
    assert_eq!(r.result["retry"]["final_error_type"], "circuit_open");
    assert_eq!(r.result["retry"]["attempt_count"], 0);
    let msg = r.result["msg"].as_str().unwrap();
    assert!(msg.contains("open until 20"), "{msg}");

    let st = breaker_cli(&state, &["status", "api"]);
    assert_eq!(st["state"], "open");
    assert_eq!(st["total_refused"], 1);
    assert_eq!(st["total_calls"], 2);

    // reset closes it; open (forced) refuses again until reset.
    assert_eq!(breaker_cli(&state, &["reset", "api"])["state"], "closed");
    let r = retryx(
        d.path(),
        &cfg,
        &["--state-dir", &state, "-o", "api", "--", "sh", "-c", &cmd],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(marker.exists());
    assert_eq!(
        breaker_cli(&state, &["open", "api"])["state"],
        "forced_open"
    );
    let r = retryx(
        d.path(),
        &cfg,
        &["--state-dir", &state, "-o", "api", "--", "true"],
    );
    assert_eq!(r.code, 75);
    assert!(r.result["msg"].as_str().unwrap().contains("forced open"));
    // another key is not affected
    let r = retryx(
        d.path(),
        &cfg,
        &["--state-dir", &state, "-o", "other", "--", "true"],
    );
    assert_eq!(r.code, 0);
}

#[test]
fn half_open_lets_one_trial_through_and_a_success_closes_it() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    let cfg = json!({"circuit_breaker": {"consecutive_failures": 1}});
    assert_eq!(
        breaker_cli(&state, &["open", "svc", "--for", "1ms"])["state"],
        "open"
    );
    std::thread::sleep(Duration::from_millis(5)); // let the 1 ms pass (not a timing assertion)
    let r = retryx(
        d.path(),
        &cfg,
        &["--state-dir", &state, "-o", "svc", "--", "true"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = &r.result["retry"]["guards"]["circuit_breaker"];
    assert_eq!(b["state_before"], "half_open");
    assert_eq!(b["trial_calls"], 1);
    assert_eq!(b["state"], "closed");
}

#[test]
fn a_hundred_concurrent_processes_lose_no_breaker_update() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    // Thresholds it never reaches: every call is recorded, none refused.
    let cfg = json!({"circuit_breaker": {"window_size": 1000, "minimum_calls": 1000}});
    let cfg_path = d.path().join("cfg.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let children: Vec<_> = (0..100)
        .map(|i| {
            Command::new(bin())
                .arg("-c")
                .arg(&cfg_path)
                .args(["-q", "-n", "1", "--state-dir", &state, "-o", "shared", "--"])
                .arg(if i % 2 == 0 { "true" } else { "false" })
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut failed = 0;
    for mut c in children {
        if !c.wait().unwrap().success() {
            failed += 1;
        }
    }
    assert_eq!(failed, 50);
    let st = breaker_cli(&state, &["status", "shared"]);
    assert_eq!(st["total_calls"], 100, "{st}");
    assert_eq!(st["total_failures"], 50, "{st}");
    assert_eq!(st["window_calls"], 100, "{st}");
    assert_eq!(st["state"], "closed");
}

/// Largest number of runs between their "start" and "end" lines, in the log's order.
fn max_overlap(log: &str) -> (usize, usize) {
    let (mut now, mut max, mut runs) = (0usize, 0usize, 0usize);
    for line in log.lines() {
        if line.starts_with("start") {
            now += 1;
            runs += 1;
            max = max.max(now);
        } else if line.starts_with("end") {
            now -= 1;
        }
    }
    (max, runs)
}

#[test]
fn forty_concurrent_runs_with_a_bulkhead_of_three_never_overlap_more_than_three() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    let log = d.path().join("log");
    let cfg = json!({"bulkhead": {"max_concurrent": 3, "max_wait": "2m"}});
    let cfg_path = d.path().join("cfg.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let script = format!(
        "echo start $$ >> {l}; sleep 0.1; echo end $$ >> {l}",
        l = log.display()
    );
    let children: Vec<_> = (0..40)
        .map(|_| {
            Command::new(bin())
                .arg("-c")
                .arg(&cfg_path)
                .args([
                    "-q",
                    "-n",
                    "1",
                    "--state-dir",
                    &state,
                    "-o",
                    "db",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let (max, runs) = max_overlap(&text);
    assert_eq!(runs, 40);
    assert!(max <= 3, "{max} runs overlapped:\n{text}");
    assert!(
        max >= 2,
        "the runs never overlapped at all, the test proves nothing:\n{text}"
    );
}

#[test]
fn a_full_bulkhead_refuses_with_75_and_a_killed_holder_frees_its_slot() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    let pidfile = d.path().join("pid");
    let cfg = json!({"bulkhead": {"max_concurrent": 1}});
    let cfg_path = d.path().join("cfg.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let script = format!(
        "echo $$ > {}.tmp; mv {p}.tmp {p}; exec sleep 60",
        pidfile.display(),
        p = pidfile.display()
    );
    let mut holder = Command::new(bin())
        .arg("-c")
        .arg(&cfg_path)
        .args([
            "-q",
            "-n",
            "1",
            "--state-dir",
            &state,
            "-o",
            "k",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !pidfile.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "holder never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = retryx(
        d.path(),
        &cfg,
        &["--state-dir", &state, "-o", "k", "--", "true"],
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert_eq!(r.result["retry"]["final_error_type"], "bulkhead_full");

    // SIGKILL the holder: no chance to clean up; the kernel drops its lock.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    holder.wait().unwrap();
    let sleeper: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::Signal::SIGKILL,
    );

    // Were the slot still held, this would wait the whole 60 s and end with 75.
    let cfg = json!({"bulkhead": {"max_concurrent": 1, "max_wait": "60s"}});
    let started = Instant::now();
    let r = retryx(
        d.path(),
        &cfg,
        &["--state-dir", &state, "-o", "k", "--", "true"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(45));
}

#[test]
fn an_exhausted_retry_budget_stops_retries_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    let cfg = json!({"retry_budget": {"max_tokens": 4, "token_ratio": 0.5}, "jitter": "none"});
    let args = [
        "-n",
        "10",
        "-d",
        "1ms",
        "--state-dir",
        &state,
        "-o",
        "ctl",
        "--",
        "false",
    ];
    // 4 -> 3 (retry: 3 > 2) -> 2 (no retry: 2 is not more than half of 4).
    let r = retryx(d.path(), &cfg, &args);
    assert_eq!(r.code, 1);
    assert_eq!(r.result["retry"]["attempt_count"], 2, "{}", r.result);
    let why = r.result["retry"]["stop_reason"].as_str().unwrap();
    assert!(why.contains("retry budget 'ctl' exhausted"), "{why}");
    assert_eq!(r.result["retry"]["guards"]["retry_budget"]["tokens"], 2.0);
    // Another process: its first attempt runs, no retry.
    let r = retryx(d.path(), &cfg, &args);
    assert_eq!(r.result["retry"]["attempt_count"], 1);
    // Successes refill the bucket: 1 + 6 x 0.5 = 4, so a failure (4 -> 3) is retried again.
    for _ in 0..6 {
        assert_eq!(
            retryx(
                d.path(),
                &cfg,
                &["--state-dir", &state, "-o", "ctl", "--", "true"]
            )
            .code,
            0
        );
    }
    let r = retryx(d.path(), &cfg, &args);
    assert_eq!(r.result["retry"]["attempt_count"], 2);
}

#[test]
fn adaptive_retry_cuts_attempts_after_failures_and_restores_them() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    let cfg = json!({"adaptive": {"window": 5, "success_rate_floor": 50, "max_delay_factor": 4}, "jitter": "none"});
    let fail = [
        "-n",
        "3",
        "-d",
        "10ms",
        "--state-dir",
        &state,
        "-o",
        "flaky",
        "--",
        "false",
    ];
    for _ in 0..5 {
        let r = retryx(d.path(), &cfg, &fail);
        assert_eq!(
            r.result["retry"]["guards"]["adaptive"]["adjusted"], false,
            "{}",
            r.result
        );
    }
    let r = retryx(d.path(), &cfg, &fail);
    let a = &r.result["retry"]["guards"]["adaptive"];
    assert_eq!(a["adjusted"], true, "{a}");
    assert_eq!(a["success_rate"], 0.0);
    assert_eq!(a["max_attempts"], json!({"configured": 3, "used": 1}));
    assert_eq!(a["base_delay"]["used"], 0.04);
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("below the 50% floor")
    );
    assert_eq!(r.result["retry"]["attempt_count"], 1);
    assert_eq!(r.result["retry"]["max_attempts"], 1);
    assert!(
        r.result["retry"]["adjustments"][0]
            .as_str()
            .unwrap()
            .starts_with("adaptive:")
    );
    // Recovery: successes push the failures out of the window.
    let ok = [
        "-n",
        "3",
        "-d",
        "10ms",
        "--state-dir",
        &state,
        "-o",
        "flaky",
        "--",
        "true",
    ];
    for _ in 0..5 {
        retryx(d.path(), &cfg, &ok);
    }
    let r = retryx(d.path(), &cfg, &fail);
    let a = &r.result["retry"]["guards"]["adaptive"];
    assert_eq!(a["adjusted"], false, "{a}");
    assert_eq!(r.result["retry"]["attempt_count"], 3);
}

#[test]
fn the_idempotency_check_stops_retrying_when_the_work_is_done() {
    let d = tempfile::tempdir().unwrap();
    let done = d.path().join("done");
    let cfg = json!({"check_command": format!("test -f {}", done.display()), "jitter": "none"});
    // The command does the work but reports failure (as a timed-out API call might).
    let cmd = format!(
        "touch {}; echo 'connection reset' >&2; exit 1",
        done.display()
    );
    let r = retryx(
        d.path(),
        &cfg,
        &["-n", "5", "-d", "10ms", "--", "sh", "-c", &cmd],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.result["changed"], false);
    assert_eq!(r.result["failed"], false);
    assert_eq!(r.result["retry"]["status"], "skipped");
    assert_eq!(r.result["retry"]["attempt_count"], 1);
    let checks = &r.result["retry"]["guards"]["idempotency"]["checks"];
    assert_eq!(checks[0]["done"], true, "{checks}");

    // check_before_first: nothing runs at all.
    let marker = d.path().join("ran");
    let cfg =
        json!({"check_command": format!("test -f {}", done.display()), "check_before_first": true});
    let r = retryx(d.path(), &cfg, &["--", "touch", &marker.to_string_lossy()]);
    assert_eq!(r.code, 0);
    assert_eq!(r.result["retry"]["attempt_count"], 0);
    assert!(!marker.exists());

    // A check that says "not done" lets the retries go on.
    let cfg = json!({"check_command": "exit 3", "jitter": "none"});
    let r = retryx(d.path(), &cfg, &["-n", "3", "-d", "1ms", "--", "false"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.result["retry"]["attempt_count"], 3);
    assert_eq!(
        r.result["retry"]["guards"]["idempotency"]["checks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn creates_and_removes_skip_as_ansible_command_does() {
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("ran");
    let touch = ["--", "touch", marker.to_str().unwrap()];
    std::fs::write(d.path().join("exists.txt"), "").unwrap();
    let dir = d.path().to_string_lossy().into_owned();
    let r = retryx(d.path(), &json!({"creates": "*.txt", "chdir": dir}), &touch);
    assert_eq!((r.code, r.result["changed"].clone()), (0, json!(false)));
    assert!(
        r.result["msg"].as_str().unwrap().contains("exists"),
        "{}",
        r.result["msg"]
    );
    assert!(!marker.exists());
    let r = retryx(
        d.path(),
        &json!({"removes": format!("{dir}/missing")}),
        &touch,
    );
    assert_eq!(r.result["retry"]["status"], "skipped");
    assert!(!marker.exists());
    let r = retryx(
        d.path(),
        &json!({"removes": format!("{dir}/exists.txt")}),
        &touch,
    );
    assert_eq!((r.code, r.result["changed"].clone()), (0, json!(true)));
    assert!(marker.exists());
}

#[test]
fn delay_from_output_sets_the_wait_under_max_delay() {
    let d = tempfile::tempdir().unwrap();
    let count = d.path().join("count");
    // Fails twice asking for 1 s and then 100 s; the cap (1 s) wins over the 100.
    let cmd = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; \
         case $n in 0) echo 'HTTP 429 Retry-After: 1'; exit 1;; 1) echo 'Retry-After: 100'; exit 1;; esac",
        c = count.display()
    );
    let started = Instant::now();
    let r = retryx(
        d.path(),
        &json!({}),
        &[
            "-n",
            "3",
            "-d",
            "200ms",
            "-M",
            "1s",
            "-j",
            "none",
            "--delay-from-output",
            r"Retry-After: (\d+)",
            "--",
            "sh",
            "-c",
            &cmd,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = &r.result["retry"]["attempts"];
    assert_eq!(a[0]["delay_before_retry"], 1.0);
    assert_eq!(a[1]["delay_before_retry"], 1.0);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn network_wait_holds_the_retry_until_the_probe_answers() {
    let d = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ready = d.path().join("ready");
    let cfg = d.path().join("cfg.json");
    std::fs::write(
        &cfg,
        json!({"wait_for_network": true, "network_probe": format!("127.0.0.1:{port}"), "max_network_wait": "2m", "jitter": "none"}).to_string(),
    )
    .unwrap();
    let res = d.path().join("result.json");
    let err_path = d.path().join("stderr");
    let cmd = format!(
        "test -f {} || {{ echo 'connect: Connection refused' >&2; exit 1; }}",
        ready.display()
    );
    let started = Instant::now();
    // A 60 s backoff: were the network wait not to replace it, this would take a minute.
    let mut child = Command::new(bin())
        .arg("-c")
        .arg(&cfg)
        .arg("--result-json")
        .arg(&res)
        .args(["-n", "2", "-d", "60s", "-M", "60s", "--", "sh", "-c", &cmd])
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&err_path).unwrap_or_default();
    while !stderr().contains("network is down") {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The service comes back: the probe's port answers.
    std::fs::write(&ready, "").unwrap();
    let _listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let code = child.wait().unwrap().code();
    let r = finish_child(code, &res, stderr());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(50));
    // Seed 004 checks the network before connecting: the first attempt waited for it, and ran
    // once it was back.
    assert!(
        r.stderr.contains(
            "WARN: network is down, waiting for network to recover | operation=command, attempt=1"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("INFO: network recovered, retrying operation | operation=command, attempt=1"),
        "{}",
        r.stderr
    );
    let n = &r.result["retry"]["guards"]["network"];
    assert_eq!(n["waits"][0]["recovered"], true, "{n}");
    assert_eq!(r.result["retry"]["attempt_count"], 1);
}

#[test]
fn a_network_that_never_comes_back_refuses_the_first_attempt() {
    let d = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let marker = d.path().join("ran");
    let cfg = json!({"wait_for_network": true, "network_probe": format!("127.0.0.1:{port}"), "max_network_wait": "1s"});
    let r = retryx(
        d.path(),
        &cfg,
        &["-n", "3", "--", "touch", marker.to_str().unwrap()],
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(!marker.exists(), "the command never ran");
    assert_eq!(r.result["retry"]["attempt_count"], 0);
    assert!(
        r.result["msg"]
            .as_str()
            .unwrap()
            .contains("network did not recover within 1s"),
        "{}",
        r.result["msg"]
    );
}

#[test]
fn creates_is_checked_again_before_every_retry() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_string_lossy().into_owned();
    let count = d.path().join("count");
    // Makes the file, then fails: run again, it would have been skipped by `creates`.
    let script = format!(
        "echo x >> {}; touch made.txt; echo 'connect: connection refused' >&2; exit 1",
        count.display()
    );
    let r = retryx(
        d.path(),
        &json!({"creates": "made.txt", "chdir": dir, "jitter": "none"}),
        &["-n", "3", "-d", "1ms", "--", "sh", "-c", &script],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
    assert_eq!(r.result["retry"]["status"], "skipped");
    assert_eq!(r.result["retry"]["attempt_count"], 1);
    let reason = r.result["retry"]["attempts"][0]["retry_reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("'made.txt' exists (creates)"), "{reason}");
    // `removes` alike: the attempt removed the file, then failed.
    std::fs::write(d.path().join("old.txt"), "").unwrap();
    let r = retryx(
        d.path(),
        &json!({"removes": "old.txt", "chdir": dir, "jitter": "none"}),
        &[
            "-n",
            "3",
            "-d",
            "1ms",
            "--",
            "sh",
            "-c",
            "rm old.txt; exit 1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.result["retry"]["attempt_count"], 1);
}

fn finish_child(code: Option<i32>, res: &Path, stderr: String) -> Run {
    let result = std::fs::read_to_string(res)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    Run {
        code: code.unwrap_or(-1),
        result,
        stderr,
    }
}

#[test]
fn bad_guard_config_is_a_usage_error_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let r = retryx(
        d.path(),
        &json!({"wait_for_network": true, "network_probe": "no-port"}),
        &["--", "true"],
    );
    assert_eq!(r.code, 125);
    assert!(
        r.result["msg"]
            .as_str()
            .unwrap()
            .contains("key 'network_probe'"),
        "{}",
        r.result
    );
}

#[test]
fn an_unusable_state_dir_is_reported_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let r = retryx(
        d.path(),
        &json!({"circuit_breaker": {}, "retry_budget": {}}),
        &[
            "--state-dir",
            &file.to_string_lossy(),
            "-n",
            "1",
            "--",
            "true",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let g = &r.result["retry"]["guards"];
    assert!(
        g["retry_budget"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("not a directory"),
        "{g}"
    );
}

/// Runs retryx as the Ansible module does: one argument, the JSON args file.
fn module(dir: &Path, args: &Value) -> Value {
    let file = dir.join("args.json");
    std::fs::write(&file, args.to_string()).unwrap();
    let out = Command::new(bin())
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_module_reports_guard_config_errors_and_refusals() {
    let d = tempfile::tempdir().unwrap();
    let state = state_arg(d.path());
    let r = module(
        d.path(),
        &json!({"command": "true", "bulkhead": {"max_concurrent": 2}, "circuit_breaker": {"slow_call_rate_threshold": 10}}),
    );
    assert_eq!(r["failed"], true);
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("key 'circuit_breaker.slow_call_rate_threshold'"),
        "{r}"
    );
    breaker_cli(&state, &["open", "deploy"]);
    let r = module(
        d.path(),
        &json!({"command": "true", "operation": "deploy", "state_dir": state, "circuit_breaker": {}}),
    );
    assert_eq!(
        (r["failed"].clone(), r["changed"].clone(), r["rc"].clone()),
        (json!(true), json!(false), json!(75)),
        "{r}"
    );
    assert_eq!(r["retry"]["final_error_type"], "circuit_open");
    assert_eq!(
        r["retry"]["guards"]["circuit_breaker"]["state"],
        "forced_open"
    );
}
