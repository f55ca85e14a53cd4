//! Guard state on the file backend through the CLI: what the fleet relies on. A bulkhead slot
//! follows its command when retryx is SIGKILLed; an unreadable breaker document never closes
//! an open breaker; failures that say nothing about the service (spawn errors) do not open
//! it; thresholds that cannot work are refused by `retryx validate`. Bounds are generous;
//! nothing sleeps to test timing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_retryx")
}

fn run(dir: &Path, config: &Value, args: &[&str]) -> (i32, Value, String) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tag = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let cfg = dir.join(format!("cfg-{tag}.json"));
    std::fs::write(&cfg, config.to_string()).unwrap();
    let res = dir.join(format!("res-{tag}.json"));
    let out = Command::new(bin())
        .arg("-c")
        .arg(&cfg)
        .arg("--result-json")
        .arg(&res)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .env_remove("RETRYX_STATE_BACKEND")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let doc = std::fs::read_to_string(&res)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for_line(path: &Path) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && t.ends_with('\n')
        {
            return t;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_slot_is_not_freed_while_the_command_of_a_killed_holder_runs() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("pid");
    let cfg = json!({"bulkhead": {"key": "one", "max_concurrent": 1}});
    let cfg_path = d.path().join("holder.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let mut holder = Command::new(bin())
        .arg("-c")
        .arg(&cfg_path)
        .arg("--state-dir")
        .arg(d.path().join("state"))
        .args([
            "--",
            "sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cmd_pid: i32 = wait_for_line(&pidfile).trim().parse().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    // retryx is gone, its command is not: the slot stays taken.
    let (code, doc, err) = run(
        d.path(),
        &json!({"bulkhead": {"key": "one", "max_concurrent": 1, "max_wait": "300ms"}}),
        &["--", "true"],
    );
    assert_eq!(code, 75, "{err}");
    assert_eq!(doc["retry"]["final_error_type"], "bulkhead_full", "{doc}");
    // Once the command ends, the slot is free.
    Command::new("kill")
        .args(["-KILL", &cmd_pid.to_string()])
        .status()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let (code, _, err) = run(d.path(), &cfg, &["--", "true"]);
        if code == 0 {
            break;
        }
        assert_eq!(code, 75, "{err}");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the slot never came back"
        );
    }
    // A slot given back normally is free at once, even with a background child left behind.
    let (code, _, err) = run(
        d.path(),
        &cfg,
        &["--shell", "--", "sleep 5 >/dev/null 2>&1 &"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(d.path(), &cfg, &["--", "true"]);
    assert_eq!(code, 0, "a background child kept the slot: {err}");
}

#[test]
fn an_unreadable_breaker_document_is_taken_as_open_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let cfg = json!({"circuit_breaker": {"key": "k", "open_duration": "1h"}});
    let (code, _, err) = run(d.path(), &cfg, &["--", "true"]);
    assert_eq!(code, 0, "{err}");
    // A document cut short (as a full disk once left it) must not read as closed.
    std::fs::write(
        d.path().join("state/breaker_k.json"),
        r#"{"key":"k","state":"op"#,
    )
    .unwrap();
    let marker = d.path().join("ran");
    let (code, doc, err) = run(d.path(), &cfg, &["--", "touch", marker.to_str().unwrap()]);
    assert_eq!(code, 75, "{err}");
    assert!(!marker.exists());
    assert!(
        err.contains("circuit breaker state unreadable, opened to be safe"),
        "{err}"
    );
    assert_eq!(doc["retry"]["final_error_type"], "circuit_open");
    let out = Command::new(bin())
        .args(["breaker", "status", "k", "--state-dir"])
        .arg(d.path().join("state"))
        .output()
        .unwrap();
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["state"], "open", "{st}");
}

#[test]
fn spawn_errors_do_not_open_the_breaker_unless_recorded() {
    let d = tempfile::tempdir().unwrap();
    let cfg = json!({"circuit_breaker": {"key": "k", "consecutive_failures": 2}});
    for _ in 0..5 {
        let (code, _, err) = run(d.path(), &cfg, &["--", "/nonexistent/command"]);
        assert_eq!(code, 127, "{err}");
    }
    let (code, doc, err) = run(d.path(), &cfg, &["--", "true"]);
    assert_eq!(code, 0, "5 missing commands opened the breaker: {err}");
    assert_eq!(doc["retry"]["guards"]["circuit_breaker"]["state"], "closed");
    let cfg = json!({"circuit_breaker": {"key": "k", "consecutive_failures": 2, "record_classes": ["spawn_error"]}});
    for _ in 0..2 {
        run(d.path(), &cfg, &["--", "/nonexistent/command"]);
    }
    let (code, _, err) = run(d.path(), &cfg, &["--", "true"]);
    assert_eq!(code, 75, "recorded spawn errors should open it: {err}");
}

#[test]
fn validate_refuses_thresholds_that_cannot_work() {
    let d = tempfile::tempdir().unwrap();
    for (cfg, key) in [
        (
            json!({"circuit_breaker": {"failure_rate_threshold": 0}}),
            "circuit_breaker.failure_rate_threshold",
        ),
        (
            json!({"retry_budget": {"token_ratio": 0}}),
            "retry_budget.token_ratio",
        ),
        (
            json!({"state_backend": "redis://u:topsecret@h:99999/0"}),
            "state_backend",
        ),
        (
            json!({"state_backend": "redis://h/0", "state_backend_failure": "maybe"}),
            "state_backend_failure",
        ),
    ] {
        let path = d.path().join("c.json");
        std::fs::write(&path, cfg.to_string()).unwrap();
        let out = Command::new(bin())
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{cfg}: {err}");
        assert!(err.contains(&format!("'{key}'")), "{cfg}: {err}");
        assert!(!err.contains("topsecret"), "{err}");
    }
}
