//! The Redis state backend through the CLI, against a real redis-server started on 127.0.0.1
//! by the test (tests/common/redis.rs) and stopped by its pid: "hosts" are retryx processes with
//! different state dirs sharing one breaker, bulkhead or budget through Redis. The password
//! never appears in any output. Timing is asserted with generous bounds only.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::Redis;
use serde_json::{Value, json};

const PASSWORD: &str = "s3cret-Pa55";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_retryx")
}

struct Run {
    code: i32,
    result: Value,
    stderr: String,
    took: Duration,
}

/// Runs retryx as one "host" (its own state dir under `dir/host`) with `config` and `args`;
/// checks that the password is nowhere in what it printed or wrote.
fn host(dir: &Path, name: &str, config: &Value, args: &[&str], env: &[(&str, &str)]) -> Run {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tag = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let cfg = dir.join(format!("cfg-{tag}.json"));
    std::fs::write(&cfg, config.to_string()).unwrap();
    let res = dir.join(format!("result-{tag}.json"));
    let state = dir.join(name).join("state");
    let start = Instant::now();
    let out = Command::new(bin())
        .arg("-c")
        .arg(&cfg)
        .arg("--result-json")
        .arg(&res)
        .arg("--state-dir")
        .arg(&state)
        .args(args)
        .env_remove("RETRYX_STATE_BACKEND")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = start.elapsed();
    let text = std::fs::read_to_string(&res).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for (what, t) in [("result", &text), ("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!t.contains(PASSWORD), "the password is in the {what}: {t}");
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        result: serde_json::from_str(&text).unwrap_or(Value::Null),
        stderr,
        took,
    }
}

/// `retryx breaker|budget ...` with `--state-backend`; its JSON answer.
fn admin(args: &[&str], backend: &str, extra: &[&str]) -> Value {
    let out = Command::new(bin())
        .args(args)
        .arg("--state-backend")
        .arg(backend)
        .args(extra)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(PASSWORD), "the password is in: {all}");
    assert!(out.status.success(), "{args:?}: {all}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn breaker_cfg(url: &str) -> Value {
    json!({
        "state_backend": url,
        "jitter": "none",
        "circuit_breaker": {"key": "vcenter", "consecutive_failures": 2, "open_duration": "1h"},
    })
}

#[test]
fn two_hosts_with_their_own_state_dirs_share_one_breaker() {
    let Some(redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let url = redis.url(3);
    let cfg = breaker_cfg(&url);
    // Host A fails twice in a row: the shared breaker opens.
    let a = host(
        d.path(),
        "a",
        &cfg,
        &[
            "-n",
            "2",
            "-d",
            "10ms",
            "--",
            "sh",
            "-c",
            "echo 'connection refused' >&2; exit 1",
        ],
        &[],
    );
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert_eq!(
        a.result["retry"]["guards"]["circuit_breaker"]["state"], "open",
        "{}",
        a.result
    );
    // Host B, another state dir, told through RETRYX_STATE_BACKEND: refused, command not run.
    let marker = d.path().join("b-ran");
    let cfg_b = json!({"jitter": "none", "circuit_breaker": {"key": "vcenter", "consecutive_failures": 2, "open_duration": "1h"}});
    let b = host(
        d.path(),
        "b",
        &cfg_b,
        &["--", "touch", marker.to_str().unwrap()],
        &[("RETRYX_STATE_BACKEND", url.as_str())],
    );
    assert_eq!(b.code, 75, "{}", b.stderr);
    assert!(!marker.exists(), "the command ran on host B");
    assert_eq!(b.result["retry"]["final_error_type"], "circuit_open");
    assert_eq!(b.result["retry"]["attempt_count"], 0);
    let shown = b.result["retry"]["guards"]["circuit_breaker"]["backend"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(shown, format!("redis://127.0.0.1:{}", redis.port));
    // Keys are <prefix>:<kind>:<key>, in the URL's database, and expire.
    let keys = redis.cli(&["-n", "3", "KEYS", "retryx:*"]);
    assert!(keys.contains("retryx:breaker:vcenter"), "{keys}");
    let ttl: i64 = redis
        .cli(&["-n", "3", "TTL", "retryx:breaker:vcenter"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 3600, "ttl {ttl}");
    // The CLI sees and resets the same breaker; then host B runs.
    let st = admin(&["breaker", "status", "vcenter"], &url, &[]);
    assert_eq!(st["state"], "open");
    assert_eq!(st["total_failures"], 2);
    admin(&["breaker", "reset", "vcenter"], &url, &[]);
    let b = host(
        d.path(),
        "b",
        &cfg,
        &["--", "touch", marker.to_str().unwrap()],
        &[],
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert!(marker.exists());
    // Forced open by hand: refused, and the key does not expire (refusals keep it so).
    admin(&["breaker", "open", "vcenter"], &url, &[]);
    let b = host(d.path(), "b", &cfg, &["--", "true"], &[]);
    assert_eq!(b.code, 75, "{}", b.stderr);
    let ttl = redis.cli(&["-n", "3", "TTL", "retryx:breaker:vcenter"]);
    assert_eq!(ttl.trim(), "-1", "a forced-open breaker expired");
    // Nothing went to the local state dirs.
    assert!(!d.path().join("a/state/breaker_vcenter.json").exists());
}

#[test]
fn a_bulkhead_of_2_holds_across_8_processes_with_8_state_dirs() {
    let Some(redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let active = d.path().join("active");
    std::fs::create_dir(&active).unwrap();
    let peaks = d.path().join("peaks");
    let cfg = json!({
        "state_backend": redis.url(0),
        "bulkhead": {"key": "api", "max_concurrent": 2, "max_wait": "60s"},
    });
    // Each command marks itself active, counts the active ones, works a while, and leaves.
    let script = format!(
        "touch {a}/$$; ls {a} | wc -l >> {p}; sleep 0.3; rm {a}/$$",
        a = active.display(),
        p = peaks.display()
    );
    let start = Instant::now();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let cfg_path = d.path().join(format!("cfg{i}.json"));
            std::fs::write(&cfg_path, cfg.to_string()).unwrap();
            Command::new(bin())
                .arg("-c")
                .arg(&cfg_path)
                .arg("--state-dir")
                .arg(d.path().join(format!("host{i}")))
                .args(["--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains(PASSWORD));
        assert_eq!(out.status.code(), Some(0), "{err}");
    }
    let counts: Vec<u32> = std::fs::read_to_string(&peaks)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 8);
    assert!(counts.iter().all(|&n| (1..=2).contains(&n)), "{counts:?}");
    // 8 runs of 0.3 s two at a time take at least 1.2 s: the slots were really shared.
    assert!(
        start.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
    // Every lease was given back.
    assert_eq!(redis.cli(&["ZCARD", "retryx:bulkhead:api"]).trim(), "0");
}

#[test]
fn a_sigkilled_holders_slot_frees_after_its_lease() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let started = d.path().join("started");
    let cfg = json!({
        "state_backend": redis.url(0),
        "bulkhead": {"key": "one", "max_concurrent": 1, "max_wait": "30s", "lease_duration": "1500ms"},
    });
    let cfg_path = d.path().join("cfg.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let mut holder = Command::new(bin())
        .arg("-c")
        .arg(&cfg_path)
        .arg("--state-dir")
        .arg(d.path().join("h1"))
        .args([
            "--",
            "sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 20", started.display()),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(&started).map_or(true, |t| !t.ends_with('\n')) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the holder never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A lease renewed while its command runs outlives several lease periods.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        redis.cli(&["ZCARD", "retryx:bulkhead:one"]).trim(),
        "1",
        "renewed past its first lease"
    );
    holder.kill().unwrap();
    let killed = Instant::now();
    holder.wait().unwrap();
    let r = host(d.path(), "h2", &cfg, &["--", "true"], &[]);
    let waited = killed.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Freed by the lease's lapse: not at once (as a pid check would), and within the lease
    // plus generous slack.
    let w = r.result["retry"]["guards"]["bulkhead"]["waited"]
        .as_f64()
        .unwrap();
    assert!(w >= 0.3, "waited only {w}s: freed before the lease ran out");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // The orphaned command is still running: stop it by its pid.
    let pid: i32 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

#[test]
fn redis_killed_mid_run_open_goes_on_with_file_guards_and_keeps_the_exit_code() {
    let Some(mut redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let flag = d.path().join("first");
    let cfg = json!({
        "state_backend": redis.url(0),
        "state_backend_failure": "open",
        "jitter": "none",
        "circuit_breaker": {"key": "k", "consecutive_failures": 5},
        "retry_budget": {"key": "k"},
        "bulkhead": {"key": "k", "max_concurrent": 1},
    });
    // The first attempt kills Redis and fails; the second runs on the file guards.
    let script = format!(
        "if [ ! -e {f} ]; then touch {f}; kill -9 {pid}; exit 3; fi; exit 4",
        f = flag.display(),
        pid = redis.pid()
    );
    let r = host(
        d.path(),
        "a",
        &cfg,
        &["-n", "2", "-d", "10ms", "--", "sh", "-c", &script],
        &[],
    );
    redis.kill();
    assert_eq!(r.code, 4, "the command's own exit code: {}", r.stderr);
    assert!(
        r.stderr
            .contains("state backend unavailable, using the local file guards"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("redis://127.0.0.1:{}", redis.port))
            && !r.stderr.contains("@127.0.0.1"),
        "{}",
        r.stderr
    );
    assert_eq!(r.result["retry"]["attempt_count"], 2);
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);
    assert!(
        d.path().join("a/state/budget_k.json").exists(),
        "the file guards took over"
    );
}

#[test]
fn redis_killed_mid_run_closed_refuses_with_75() {
    let Some(mut redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let flag = d.path().join("first");
    let second = d.path().join("second");
    let cfg = json!({
        "state_backend": redis.url(0),
        "state_backend_failure": "closed",
        "jitter": "none",
        "retry_budget": {"key": "k"},
    });
    let script = format!(
        "if [ ! -e {f} ]; then touch {f}; kill -9 {pid}; exit 3; fi; touch {s}; exit 4",
        f = flag.display(),
        s = second.display(),
        pid = redis.pid()
    );
    let r = host(
        d.path(),
        "a",
        &cfg,
        &["-n", "3", "-d", "10ms", "--", "sh", "-c", &script],
        &[],
    );
    redis.kill();
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(!second.exists(), "an attempt ran without the shared state");
    assert_eq!(r.result["retry"]["attempt_count"], 1, "{}", r.result);
    assert_eq!(r.result["retry"]["final_error_type"], "backend_unavailable");
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);
}

#[test]
fn an_unreachable_backend_is_bounded_open_runs_closed_refuses_before_running() {
    let Some(_redis) = Redis::start(None) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    // A port nobody listens on (and a non-routable address would only be slower, not hang).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://ops:{PASSWORD}@127.0.0.1:{port}/0");
    let marker = d.path().join("ran");
    let mut cfg = json!({"state_backend": url, "circuit_breaker": {}});
    let r = host(
        d.path(),
        "a",
        &cfg,
        &[
            "--",
            "sh",
            "-c",
            &format!("touch {}; exit 7", marker.display()),
        ],
        &[],
    );
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(marker.exists());
    assert!(
        r.stderr.contains(&format!("redis://127.0.0.1:{port}")) && !r.stderr.contains("@127.0.0.1"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(&marker).unwrap();
    cfg["state_backend_failure"] = json!("closed");
    let r = host(
        d.path(),
        "a",
        &cfg,
        &["--", "touch", marker.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(!marker.exists(), "closed ran the command");
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
}

#[test]
fn budgets_are_shared_and_shown_and_reset_by_the_cli_on_both_backends() {
    let Some(redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let url = redis.url(1);
    let cfg = json!({"state_backend": url, "jitter": "none", "retry_budget": {"key": "svc", "max_tokens": 4, "token_ratio": 0.5}});
    // Host A's failures drain the bucket below half: host B's first failure is not retried.
    let a = host(
        d.path(),
        "a",
        &cfg,
        &["-n", "3", "-d", "1ms", "--", "false"],
        &[],
    );
    assert_eq!(a.result["retry"]["attempt_count"], 2, "{}", a.result);
    let b = host(
        d.path(),
        "b",
        &cfg,
        &["-n", "3", "-d", "1ms", "--", "false"],
        &[],
    );
    assert_eq!(b.result["retry"]["attempt_count"], 1, "{}", b.result);
    let st = admin(&["budget", "status", "svc"], &url, &[]);
    assert_eq!(
        (st["tokens"].as_f64(), st["max_tokens"].as_f64()),
        (Some(1.0), Some(4.0)),
        "{st}"
    );
    assert_eq!(st["retries_allowed"], false);
    let st = admin(&["budget", "reset", "svc"], &url, &[]);
    assert_eq!(st["tokens"].as_f64(), Some(4.0));
    // The same commands on the file backend.
    let state = d.path().join("a").join("state");
    let file_cfg = json!({"jitter": "none", "retry_budget": {"key": "svc", "max_tokens": 4}});
    host(
        d.path(),
        "a",
        &file_cfg,
        &["-n", "2", "-d", "1ms", "--", "false"],
        &[],
    );
    let st = admin(
        &["budget", "status", "svc"],
        "file",
        &["--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(st["tokens"].as_f64(), Some(2.0), "{st}");
    let st = admin(
        &["budget", "reset", "svc"],
        "file",
        &["--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(st["tokens"].as_f64(), Some(4.0), "{st}");
}

#[test]
fn rediss_with_a_private_ca_shares_the_breaker_and_an_untrusted_server_is_unavailable() {
    let Some(redis) = Redis::start_tls(Some(PASSWORD)) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let url = redis.tls_url(0);
    let ca = redis.ca.clone().unwrap();
    let mut cfg = breaker_cfg(&url);
    cfg["state_backend_ca"] = json!(ca);
    cfg["state_backend_failure"] = json!("closed");
    let a = host(
        d.path(),
        "a",
        &cfg,
        &["-n", "2", "-d", "1ms", "--", "false"],
        &[],
    );
    assert_eq!(a.code, 1, "{}", a.stderr);
    // Through TLS: the state is on the server (seen on its plain port).
    assert!(
        redis
            .cli(&["GET", "retryx:breaker:vcenter"])
            .contains("\"open\"")
    );
    let st = admin(
        &["breaker", "status", "vcenter"],
        &url,
        &["--state-backend-ca", ca.to_str().unwrap()],
    );
    assert_eq!(st["state"], "open");
    // Without the CA the certificate is not trusted: closed refuses.
    cfg.as_object_mut().unwrap().remove("state_backend_ca");
    let b = host(d.path(), "b", &cfg, &["--", "true"], &[]);
    assert_eq!(b.code, 75, "{}", b.stderr);
    assert_eq!(b.result["retry"]["final_error_type"], "backend_unavailable");
    assert_eq!(b.result["retry"]["attempt_count"], 0);
    let msg = b.result["msg"].as_str().unwrap();
    assert!(msg.contains("certificate"), "{msg}");
}
