//! Integration tests of notifications through the real `retryx` binary, against a tiny scripted
//! HTTP receiver in this process (127.0.0.1 only). They run under plain `cargo test`; the tests
//! against the real receivers and the validating Slack/Datadog mocks are in tests/receivers/
//! (`bash tests/receivers/run.sh`). Nothing here may reach beyond 127.0.0.1.

mod common;

use std::io::Write;
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
    let (line, headers, body) = common::http::read_request(stream)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
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

/// Five operations in one session through the CLI: (attempts used, last attempt succeeds?).
/// Retries: 0 + 1 + 2 + 1 + 0 = 4; retried operations 3; failed 1.
const SESSION_OPS: [(&str, u32, bool); 5] = [
    ("op_a", 1, true),
    ("op_b", 2, true),
    ("op_c", 3, true),
    ("op_d", 2, false),
    ("op_e", 1, true),
];

/// Runs `SESSION_OPS` through the binary into one session in `art`, finalizes it with
/// `retryx session finalize`, and returns (session id, the finalized record).
fn finalized_session(dir: &Path, art: &Path) -> (String, Value) {
    let mut session = String::new();
    for (i, (name, attempts, ok)) in SESSION_OPS.iter().enumerate() {
        let count = dir.join(format!("{name}.n"));
        // Fails until its attempt number reaches `attempts` (then succeeds if `ok`).
        let script = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
             [ $n -ge {attempts} ] && [ {ok} = true ] && exit 0; echo 'service unavailable' >&2; exit 3",
            c = count.display()
        );
        let result = dir.join(format!("{name}.json"));
        let mut cmd = retryx();
        cmd.args(["-n", &attempts.to_string(), "-d", "10ms", "-j", "none"])
            .args(["--operation", name, "--artifacts-dir"])
            .arg(art)
            .arg("--result-json")
            .arg(&result);
        if i == 0 {
            cmd.arg("--keep-open");
        } else {
            cmd.args(["--session-id", &session]);
        }
        let o = cmd.args(["--", "sh", "-c", &script]).output().expect("run");
        assert_eq!(
            o.status.success(),
            *ok,
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(&result).expect("result")).expect("json");
        assert_eq!(r["retry"]["attempt_count"], *attempts, "{name}: {r}");
        if i == 0 {
            session = r["retry"]["session_id"]
                .as_str()
                .expect("session id")
                .to_string();
        }
    }
    let o = retryx()
        .args(["session", "finalize", &session, "--artifacts-dir"])
        .arg(art)
        .output()
        .expect("finalize");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = art.join(format!("retry_session_{session}.json"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("record"))
        .expect("session json");
    (session, doc)
}

/// The module's `action: notify` (the role's metrics handler), as Ansible runs it.
fn module_notify(dir: &Path, args: Value) -> Value {
    let p = dir.join("notify_args.json");
    std::fs::write(&p, args.to_string()).expect("args");
    let o = retryx().arg(&p).output().expect("module");
    serde_json::from_slice(&o.stdout).expect("module prints one JSON object")
}

/// `name{labels} value` lines of a text exposition whose labels hold `operation="session"`.
fn session_samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains("operation=\"session\""))
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            let value = rest.rsplit_once(' ')?.1.parse().ok()?;
            Some((name.to_string(), value))
        })
        .collect()
}

/// The Prometheus family of each statistic (src/sinks/metrics.rs's table).
const PROM_OF: [(&str, &str); 13] = [
    ("total_operations", "retryx_session_operations"),
    (
        "successful_operations",
        "retryx_session_successful_operations",
    ),
    ("failed_operations", "retryx_session_failed_operations"),
    ("retried_operations", "retryx_session_retried_operations"),
    ("total_retry_attempts", "retryx_session_retry_attempts"),
    ("average_retry_count", "retryx_session_average_retry_count"),
    ("max_retry_count", "retryx_session_max_retry_count"),
    (
        "total_execution_time",
        "retryx_session_execution_time_seconds",
    ),
    (
        "average_execution_time",
        "retryx_session_average_execution_time_seconds",
    ),
    ("success_rate", "retryx_session_success_rate_percent"),
    ("failure_rate", "retryx_session_failure_rate_percent"),
    ("retry_rate", "retryx_session_retry_rate_percent"),
    (
        "operations_per_minute",
        "retryx_session_operations_per_minute",
    ),
];

#[test]
fn a_finalized_session_says_the_same_numbers_everywhere() {
    let dd = Receiver::start(vec![(202, vec![], r#"{"errors":[]}"#)]);
    let hook = Receiver::start(vec![(200, vec![], "ok")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("records");
    let textfile = dir.path().join("textfile");
    std::fs::create_dir_all(&textfile).expect("mkdir");
    let (session, doc) = finalized_session(dir.path(), &art);
    let stats = &doc["final_statistics"];
    assert_eq!(stats["total_operations"], 5, "{doc}");
    assert_eq!(stats["total_retry_attempts"], 4, "{doc}");
    assert_eq!(stats["failed_operations"], 1, "{doc}");
    let systems = json!([
        {"name": "datadog", "type": "datadog", "url": dd.url(""), "compression": "none",
         "auth_header": "DD-API-KEY 0123456789abcdef0123456789abcdef"},
        {"name": "hook", "type": "webhook", "url": hook.url("/hook")},
        {"name": "node", "textfile_dir": textfile},
    ]);
    let started = chrono_now();
    let res = module_notify(
        dir.path(),
        json!({"action": "notify", "notify_kind": "metrics", "session_id": session,
               "artifacts_dir": art, "external_systems": systems}),
    );
    assert_eq!(res["failed"], false, "{res}");
    for n in res["retry"]["notifications"].as_array().expect("outcomes") {
        assert_eq!(n["status"], "sent", "{n}");
    }

    // Datadog: one series per statistic, retry.session.<name>, stamped now.
    let seen = dd.seen();
    assert_eq!(seen.len(), 1);
    let body: Value = serde_json::from_slice(&seen[0].body).expect("series json");
    let series = body["series"].as_array().expect("series");
    assert_eq!(series.len(), 13, "{body}");
    for (stat, _) in PROM_OF {
        let s = series
            .iter()
            .find(|s| s["metric"] == format!("retry.session.{stat}"))
            .unwrap_or_else(|| panic!("no retry.session.{stat} in {body}"));
        let point = &s["points"][0];
        assert_eq!(
            point["value"].as_f64(),
            stats[stat].as_f64(),
            "datadog {stat}"
        );
        let ts = point["timestamp"].as_i64().unwrap_or(0);
        assert!(
            (ts - started).abs() < 120,
            "{stat} stamped {ts}, now {started}"
        );
        let tags: Vec<&str> = s["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(!tags.iter().any(|t| t.starts_with("session:")), "{tags:?}");
    }
    // None of an operation's figures: no retry.retries (it said 7), no retry.success.
    assert!(
        !series
            .iter()
            .any(|s| s["metric"] == "retry.retries" || s["metric"] == "retry.success")
    );

    // The webhook: the session document and the same figures.
    let seen = hook.seen();
    assert_eq!(seen.len(), 1);
    let posted: Value = serde_json::from_slice(&seen[0].body).expect("webhook json");
    assert_eq!(posted["session_id"], session.as_str());
    for (stat, _) in PROM_OF {
        assert_eq!(
            posted["metrics"][format!("session.{stat}")].as_f64(),
            stats[stat].as_f64(),
            "webhook {stat}"
        );
        assert_eq!(posted["final_statistics"][stat], stats[stat]);
    }

    // The textfile: the session's gauges, and no operation counter bumped by the session.
    let text = std::fs::read_to_string(textfile.join("retryx.prom")).expect("retryx.prom");
    let samples = session_samples(&text);
    for (stat, prom) in PROM_OF {
        assert_eq!(
            samples.get(prom).copied(),
            stats[stat].as_f64(),
            "textfile {prom}\n{text}"
        );
    }
    assert!(!text.contains("retryx_operations_total"), "{text}");
    assert!(!text.contains("retryx_retries_total"), "{text}");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[test]
fn a_session_that_ended_hours_ago_is_sent_as_of_now() {
    let dd = Receiver::start(vec![(202, vec![], r#"{"errors":[]}"#)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("records");
    let (session, mut doc) = finalized_session(dir.path(), &art);
    // The same session, finalized three hours ago.
    let three_hours_ago = chrono_now() - 3 * 3600;
    let at = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    doc["session_start"] = json!(at(three_hours_ago - 60));
    doc["session_end"] = json!(at(three_hours_ago));
    std::fs::write(
        art.join(format!("retry_session_{session}.json")),
        doc.to_string(),
    )
    .expect("rewrite");
    let res = module_notify(
        dir.path(),
        json!({"action": "notify", "notify_kind": "metrics", "session_id": session,
               "artifacts_dir": art, "external_systems": [
                   {"name": "datadog", "type": "datadog", "url": dd.url(""), "compression": "none",
                    "auth_header": "DD-API-KEY 0123456789abcdef0123456789abcdef"}]}),
    );
    let n = &res["retry"]["notifications"][0];
    assert_eq!(n["status"], "sent", "{res}");
    let seen = dd.seen();
    let body: Value = serde_json::from_slice(&seen[0].body).expect("json");
    let now = chrono_now();
    for s in body["series"].as_array().expect("series") {
        let ts = s["points"][0]["timestamp"].as_i64().unwrap_or(0);
        // Datadog drops points more than an hour old: these are the statistics as of now.
        assert!(
            (now - ts).abs() < 120,
            "{} stamped {ts}, now {now}",
            s["metric"]
        );
    }
}

#[test]
fn every_documented_datadog_site_validates_and_others_are_refused_by_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let validate = |site: &str| {
        let cfg = write_config(
            dir.path(),
            json!([{"name": "dd", "type": "datadog", "site": site,
                    "auth_header": "DD-API-KEY 0123456789abcdef0123456789abcdef"}]),
        );
        let o = retryx()
            .arg("validate")
            .arg(&cfg)
            .output()
            .expect("validate");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Datadog's API reference, "Submit metrics": one API host per site.
    for site in [
        "datadoghq.com",
        "us3.datadoghq.com",
        "us5.datadoghq.com",
        "datadoghq.eu",
        "ap1.datadoghq.com",
        "ap2.datadoghq.com",
        "uk1.datadoghq.com",
        "ddog-gov.com",
        "us2.ddog-gov.com",
        "app.datadoghq.eu",
        "us1-fed",
    ] {
        let (code, err) = validate(site);
        assert_eq!(code, Some(0), "{site}: {err}");
    }
    for site in ["us9.datadoghq.com", "datadog.example.com"] {
        let (code, err) = validate(site);
        assert_eq!(code, Some(125), "{site}: {err}");
        assert!(err.contains("external_systems[0].site"), "{err}");
        assert!(err.contains("us2.ddog-gov.com"), "{err}");
    }
}
