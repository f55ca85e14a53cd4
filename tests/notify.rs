//! Integration tests of notifications through the real `retryx` binary, against a tiny scripted
//! HTTP receiver in this process (127.0.0.1 only). They run under plain `cargo test`; the tests
//! against the real receivers and the validating Slack/Datadog mocks are in tests/receivers/
//! (`bash tests/receivers/run.sh`). Nothing here may reach beyond 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const HOOK: &str = "/services/T0TEST/B0TEST/hUnTeR2s3cr3tT0k3n";

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

/// One scripted answer: status, headers, body.
type ReplySpec = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// Answers requests with the scripted (status, headers, body) replies in order, then with the
/// last one; records every request.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

impl Receiver {
    fn start(replies: Vec<ReplySpec>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut n = 0usize;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().expect("lock").push(req);
                let (status, headers, body) = &replies[n.min(replies.len() - 1)];
                n += 1;
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(body);
                let _ = stream.write_all(out.as_bytes());
            }
        });
        Receiver { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn write_config(dir: &Path, systems: Value) -> std::path::PathBuf {
    let p = dir.join("cfg.json");
    std::fs::write(&p, json!({"external_systems": systems}).to_string()).expect("write config");
    p
}

fn retryx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retryx"));
    c.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    c
}

/// Runs a command that fails twice through retryx with `cfg`; returns (exit code, result).
fn run_failing(dir: &Path, cfg: &Path) -> (i32, Value, String) {
    let out = dir.join("result.json");
    let o = retryx()
        .args([
            "-n",
            "2",
            "-d",
            "10ms",
            "-j",
            "none",
            "-o",
            "deploy_app",
            "-c",
        ])
        .arg(cfg)
        .arg("--result-json")
        .arg(&out)
        .args(["--", "sh", "-c", "echo connection refused >&2; exit 3"])
        .output()
        .expect("run retryx");
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("result")).expect("json");
    (
        o.status.code().unwrap_or(-1),
        result,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn notify_test_sends_slack_blocks_and_redacts_the_hook() {
    let rx = Receiver::start(vec![(200, vec![], "ok")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        json!([{"name": "slack_alerts", "url": rx.url(HOOK)}]),
    );
    let o = retryx()
        .args(["notify", "test", "--json", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("hUnTeR2"), "{stdout}");
    let outcomes: Value = serde_json::from_str(&stdout).expect("json");
    let n = &outcomes[0];
    assert_eq!(n["status"], "sent");
    assert_eq!(n["kind"], "slack");
    assert_eq!(n["inferred"], true);
    assert_eq!(n["http_status"], 200);
    assert_eq!(n["response"], "ok");
    // Scheme, host and port only: a hook's path is its secret.
    assert_eq!(n["target"], format!("POST {}", rx.url("")));
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", HOOK)
    );
    let body: Value = serde_json::from_slice(&seen[0].body).expect("slack json");
    assert!(body["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(body["blocks"][0]["type"], "header");
}

#[test]
fn a_dead_receiver_leaves_the_operation_result_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}{HOOK}", closed_port());
    let cfg = write_config(
        dir.path(),
        json!([{"name": "slack_alerts", "url": url, "retry_count": 1, "retry_delay": "50ms",
                "auth_header": "Bearer t0pS3cretBearer"}]),
    );
    let (code, result, stderr) = run_failing(dir.path(), &cfg);
    assert_eq!(code, 3);
    assert_eq!(result["rc"], 3);
    assert_eq!(result["failed"], true);
    assert_eq!(result["retry"]["status"], "failed");
    assert_eq!(result["retry"]["attempt_count"], 2);
    let n = &result["retry"]["notifications"][0];
    assert_eq!(n["status"], "failed");
    assert_eq!(n["attempts"], 2);
    assert_eq!(n["http_status"], Value::Null);
    let all = format!("{result}{stderr}");
    assert!(
        !all.contains("hUnTeR2") && !all.contains("t0pS3cret"),
        "{all}"
    );
    assert!(stderr.contains("notification failed"), "{stderr}");
}

#[test]
fn a_hanging_receiver_costs_at_most_the_default_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Accepts connections and never answers: every try runs into its timeout.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for c in listener.incoming().take(8).flatten() {
            kept.push(c);
        }
        kept.len()
    });
    let cfg = write_config(
        dir.path(),
        json!([{"name": "slack_alerts", "url": format!("http://127.0.0.1:{port}{HOOK}")}]),
    );
    let started = std::time::Instant::now();
    let (code, result, stderr) = run_failing(dir.path(), &cfg);
    let took = started.elapsed();
    assert_eq!(code, 3, "{stderr}");
    let n = &result["retry"]["notifications"][0];
    assert_eq!(n["status"], "failed", "{n}");
    // Default settings: 10 s over all tries (it was 3 x 10 s); generous bounds on a real clock.
    assert!(took.as_secs_f64() < 20.0, "{took:?}");
    assert!(took.as_secs_f64() > 8.0, "{took:?}");
}

#[test]
fn retry_after_is_waited_for_and_client_errors_are_not_retried() {
    let rx = Receiver::start(vec![
        (429, vec![("Retry-After", "1")], "rate_limited"),
        (200, vec![], "ok"),
    ]);
    let bad = Receiver::start(vec![(400, vec![], "invalid_payload")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        json!([
            {"name": "limited", "type": "slack", "url": rx.url(HOOK), "retry_count": 2,
             "retry_delay": "10ms"},
            {"name": "rejected", "type": "slack", "url": bad.url(HOOK), "retry_count": 2},
        ]),
    );
    let (code, result, _) = run_failing(dir.path(), &cfg);
    assert_eq!(code, 3);
    let by_name = |name: &str| {
        result["retry"]["notifications"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["system"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let limited = by_name("limited");
    assert_eq!(limited["status"], "sent", "{limited}");
    assert_eq!(limited["attempts"], 2);
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(gap >= Duration::from_millis(900), "waited only {gap:?}");
    let rejected = by_name("rejected");
    assert_eq!(rejected["status"], "failed");
    assert_eq!(rejected["attempts"], 1);
    assert_eq!(rejected["http_status"], 400);
    assert_eq!(rejected["response"], "invalid_payload");
    assert_eq!(bad.seen().len(), 1);
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
}
