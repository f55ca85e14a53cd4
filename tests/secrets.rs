//! The secret property test (issue 17, item 8): random secrets in every secret-bearing field
//! (a Slack hook behind a relay, webhook URLs with a token in the path or the query, `auth_header`,
//! custom headers, a Datadog API key, a Pushgateway URL's password, a Redis `state_backend`
//! password, `env` under `no_log`) against receivers on 127.0.0.1 that echo every request back
//! and fail (500, 429 with Retry-After), and a Redis stand-in that echoes the commands it gets.
//! Each case is a real run of the binary (the CLI at `-vv` with records, the result file and the
//! event stream; the module under `no_log`); none of the secrets may appear anywhere it wrote
//! (stdout, stderr, the result, the events, every file in the artifacts directory), neither
//! plain, nor base64 (standard, url-safe, padded or not), nor percent-encoded (either hex case).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Value, json};

/// What a receiver saw: every request as text (request line, headers, body).
type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTP receiver that answers every request with the request itself on the first line of
/// its body (path, the secret-bearing headers first, then the body), failing by turns with 500
/// and with 429 plus `Retry-After: 0`.
struct EchoReceiver {
    port: u16,
    seen: Seen,
}

impl EchoReceiver {
    fn start() -> EchoReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let turn = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (log, turn) = (Arc::clone(&log), Arc::clone(&turn));
                std::thread::spawn(move || {
                    let Some((line, headers, body)) = common::http::read_request(&stream) else {
                        return;
                    };
                    // Echoed in one of three forms by turns (plain; base64; percent-decoded
                    // and -encoded), the path and the headers that carry secrets first: a sink
                    // keeps only the start of an answer, and the echo must reach it.
                    let n = turn.fetch_add(1, Ordering::SeqCst);
                    let boring = [
                        "host",
                        "content-length",
                        "content-type",
                        "user-agent",
                        "accept",
                        "accept-encoding",
                    ];
                    let words = |t: &str| -> Vec<String> {
                        let mut w = vec![t.to_string()];
                        w.extend(t.split(' ').map(str::to_string));
                        w
                    };
                    let shown = |t: &str, segments: bool| -> String {
                        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
                        match (n / 2) % 3 {
                            0 => t.to_string(),
                            // each path segment and query value on its own
                            1 if segments => {
                                let mut out = String::new();
                                for piece in t.split_inclusive(['/', '?', '&', '=']) {
                                    let (word, sep) = piece
                                        .strip_suffix(['/', '?', '&', '='])
                                        .map_or((piece, ""), |w| (w, &piece[w.len()..]));
                                    let d = percent_decode(word);
                                    out.push_str(&format!(
                                        "{}~{}{sep}",
                                        STANDARD.encode(&d),
                                        URL_SAFE_NO_PAD.encode(&d)
                                    ));
                                }
                                out
                            }
                            // and what a word decodes to (a Basic header's user:password)
                            1 => words(t)
                                .iter()
                                .map(|w| {
                                    let decoded = STANDARD
                                        .decode(w)
                                        .ok()
                                        .and_then(|b| String::from_utf8(b).ok())
                                        .unwrap_or_default();
                                    format!(
                                        "{} {} {decoded}",
                                        STANDARD.encode(w),
                                        URL_SAFE_NO_PAD.encode(w)
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(" "),
                            _ if segments => percent_decode(t),
                            // (upper- and lower-case hex by turns: clients and relays write both)
                            _ if (n / 6) % 2 == 0 => words(t)
                                .iter()
                                .map(|w| percent_encode(w))
                                .collect::<Vec<_>>()
                                .join(" "),
                            _ => words(t)
                                .iter()
                                .map(|w| percent_encode_lower(w))
                                .collect::<Vec<_>>()
                                .join(" "),
                        }
                    };
                    let (method, target) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                    let target = target.rsplit_once(' ').map_or(target, |(t, _)| t);
                    let mut echo = format!("{method} {}", shown(target, true));
                    for (k, v) in headers
                        .iter()
                        .filter(|(k, _)| !boring.contains(&k.as_str()))
                    {
                        echo.push_str(&format!(" | {k}: {}", shown(v, false)));
                    }
                    let text = String::from_utf8_lossy(&body).replace(['\r', '\n'], " ");
                    echo.push_str(&format!(" | body: {text}"));
                    // What was sent, as sent (the test checks the secrets really went out).
                    let mut raw = line.clone();
                    for (k, v) in &headers {
                        raw.push_str(&format!(" | {k}: {v}"));
                    }
                    log.lock().expect("lock").push(raw);
                    let reply = if n % 2 == 0 {
                        "500 Internal Server Error\r\n".to_string()
                    } else {
                        "429 Too Many Requests\r\nRetry-After: 0\r\n".to_string()
                    };
                    let out = format!(
                        "HTTP/1.1 {reply}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{echo}",
                        echo.len()
                    );
                    let _ = stream.write_all(out.as_bytes());
                });
            }
        });
        EchoReceiver { port, seen }
    }

    fn seen(&self) -> String {
        self.seen.lock().expect("lock").join("\n")
    }
}

/// A Redis stand-in that answers every command with the error real Redis gives an unknown one,
/// which echoes the command's arguments (AUTH's password included).
fn echo_redis() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let Ok(mut out) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    if reader.read_line(&mut head).unwrap_or(0) == 0 {
                        return;
                    }
                    let Some(n) = head.trim().strip_prefix('*').and_then(|n| n.parse().ok()) else {
                        return;
                    };
                    let mut args: Vec<String> = Vec::new();
                    for _ in 0..n {
                        let mut len = String::new();
                        let _ = reader.read_line(&mut len);
                        let len: usize = len.trim().trim_start_matches('$').parse().unwrap_or(0);
                        let mut buf = vec![0; len + 2];
                        if reader.read_exact(&mut buf).is_err() {
                            return;
                        }
                        args.push(String::from_utf8_lossy(&buf[..len]).into_owned());
                    }
                    log.lock().expect("lock").push(args.join(" "));
                    let (cmd, rest) = args
                        .split_first()
                        .map(|(c, r)| (c.clone(), r))
                        .unwrap_or_default();
                    let quoted: Vec<String> = rest.iter().map(|a| format!("'{a}'")).collect();
                    let reply = format!(
                        "-ERR unknown command '{cmd}', with args beginning with: {} \r\n",
                        quoted.join(" ")
                    );
                    if out.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// The forms a secret travels in: plain, base64 (standard and url-safe, padded or not) and
/// percent-encoded.
fn forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = vec![secret.to_string()];
    for e in [STANDARD, URL_SAFE] {
        out.push(e.encode(secret));
    }
    for e in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        out.push(e.encode(secret));
    }
    out.push(percent_encode(secret));
    out.push(percent_encode_lower(secret));
    out.sort();
    out.dedup();
    out
}

fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `percent_encode` with lower-case hex digits.
fn percent_encode_lower(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// Every file under `dir`, as text.
fn files_under(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
}

/// The places a run wrote to, by name.
fn written(stdout: &[u8], stderr: &[u8], dir: &Path) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "stdout".to_string(),
            String::from_utf8_lossy(stdout).into_owned(),
        ),
        (
            "stderr".to_string(),
            String::from_utf8_lossy(stderr).into_owned(),
        ),
    ];
    files_under(dir, &mut out);
    out
}

/// Every (field, form, place) where a secret shows.
fn leaks(secrets: &[(&str, Vec<String>)], places: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (field, forms) in secrets {
        for form in forms {
            for (place, text) in places {
                if let Some(i) = text.find(form.as_str()) {
                    let from = text[..i].char_indices().rev().nth(60).map_or(0, |(j, _)| j);
                    let to = (i + form.len() + 60).min(text.len());
                    let to = (to..=text.len())
                        .find(|&j| text.is_char_boundary(j))
                        .unwrap_or(text.len());
                    found.push(format!(
                        "{field} as {form:?} in {place}: …{}…",
                        &text[from..to]
                    ));
                }
            }
        }
    }
    found
}

/// A secret: 12 to 32 characters, with some a URL must carry percent-encoded (`/ @ : ? # % &`
/// and space; URLs get the secret encoded) and some base64 and percent-encoding change.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9+=!*$._~/@:?#% &-]{10,30}[A-Za-z0-9]"
}

#[derive(Debug, Clone)]
struct Secrets {
    slack_token: String,
    path_token: String,
    query_token: String,
    bearer: String,
    header: String,
    dd_key: String,
    dd_env: String,
    basic_password: String,
    push_password: String,
    redis_password: String,
    env_value: String,
}

fn secrets() -> impl Strategy<Value = Secrets> {
    (
        (secret(), secret(), secret(), secret(), secret()),
        (secret(), secret(), secret(), secret(), secret(), secret()),
    )
        .prop_map(|((a, b, c, d, e), (f, g, h, i, j, k))| Secrets {
            slack_token: a,
            path_token: b,
            query_token: c,
            bearer: d,
            header: e,
            dd_key: f,
            dd_env: j,
            basic_password: k,
            push_password: g,
            redis_password: h,
            env_value: i,
        })
}

/// Every secret-bearing receiver, all on one echoing receiver; each delivery tried three times
/// with no wait to speak of.
fn systems(port: u16, s: &Secrets) -> Value {
    let base = format!("http://127.0.0.1:{port}");
    let quick = |mut v: Value| {
        v["retry_count"] = json!(2);
        v["retry_delay"] = json!("5ms");
        v["timeout"] = json!("5s");
        v["notify_on"] = json!(["failure", "retry", "success", "alert"]);
        v
    };
    json!([
        quick(json!({"name": "team", "type": "slack",
            "url": format!("{base}/relay/services/T0RELAY/B0RELAY/{}", percent_encode(&s.slack_token))})),
        quick(json!({"name": "hook_path", "type": "webhook",
            "url": format!("{base}/hooks/{}/in", percent_encode(&s.path_token))})),
        quick(json!({"name": "hook_query", "type": "webhook",
            "url": format!("{base}/in?token={}&source=retryx", percent_encode(&s.query_token))})),
        quick(
            json!({"name": "hook_auth", "type": "webhook", "url": format!("{base}/auth"),
            "auth_header": format!("Bearer {}", s.bearer),
            "headers": {"X-Api-Key": s.header}})
        ),
        quick(
            json!({"name": "dd", "type": "datadog", "url": format!("{base}/api/v2/series"),
            "compression": "none", "auth_header": format!("DD-API-KEY {}", s.dd_key)})
        ),
        quick(json!({"name": "push", "type": "prometheus_pushgateway",
            "url": format!("http://ops:{}@127.0.0.1:{port}", percent_encode(&s.push_password))})),
        quick(
            json!({"name": "hook_basic", "type": "webhook", "url": format!("{base}/basic"),
            "auth_header": format!("Basic {}", base64::engine::general_purpose::STANDARD
                .encode(format!("ops:{}", s.basic_password)))})
        ),
        // the API key from DD_API_KEY (set by `retryx()`)
        quick(json!({"name": "dd_events", "type": "datadog_events",
            "url": format!("{base}/api/v1/events")})),
    ])
}

/// The binary under test; `RETRYX_TEST_BIN` points the test at another build (to measure the
/// attack against an older one).
fn retryx_bin() -> String {
    std::env::var("RETRYX_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_retryx").to_string())
}

fn retryx(s: &Secrets) -> Command {
    run_as(Path::new(&retryx_bin()), s)
}

/// The binary under another name (`retry_manager`: the module), with the test's environment.
fn run_as(program: &Path, s: &Secrets) -> Command {
    let mut c = Command::new(program);
    c.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("DD_API_KEY", &s.dd_env)
        .env_remove("RETRYX_STATE_BACKEND")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` with its output captured, bounded: past 60 s the child is killed (by its pid)
/// and the test fails, so a run that hangs cannot hang the test.
fn output_bounded(cmd: &mut Command, what: &str) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    // Drained on threads: a child that fills a pipe must not stall behind the wait.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = common::attack::wait_bounded(&mut child, std::time::Duration::from_secs(60), what);
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// One case: the CLI at -vv and the module under no_log, both with every secret; returns the
/// leaks found (empty when none).
fn run_case(s: &Secrets) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = EchoReceiver::start();
    let (redis_port, redis_seen) = echo_redis();
    let cfg = json!({
        "external_systems": systems(receiver.port, s),
        "state_backend": format!(
            "redis://:{}@127.0.0.1:{redis_port}/0",
            percent_encode(&s.redis_password)
        ),
        "state_backend_failure": "open",
        "state_backend_timeout": "2s",
        "circuit_breaker": {"key": "k", "consecutive_failures": 5},
    });
    let cfg_path = dir.path().join("cfg.json");
    std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
    let arts = dir.path().join("arts");
    let mut cli = retryx(s);
    cli.args([
        "-vv",
        "-n",
        "2",
        "-d",
        "5ms",
        "-j",
        "none",
        "--operation",
        "deploy",
        "-c",
    ])
    .arg(&cfg_path)
    .arg("--artifacts-dir")
    .arg(&arts)
    .arg("--result-json")
    .arg(dir.path().join("result.json"))
    .arg("--events")
    .arg(dir.path().join("events.jsonl"))
    .args(["--", "sh", "-c", "echo connection refused >&2; exit 3"]);
    let out = output_bounded(&mut cli, "retryx -vv");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = std::fs::read_to_string(dir.path().join("result.json")).expect("result");
    let result: Value = serde_json::from_str(&result).expect("result is JSON");
    let outcomes = result["retry"]["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(outcomes.len(), 8, "every receiver was tried: {result}");
    // The secrets really went out, and the receivers really echoed them.
    let seen = receiver.seen();
    for t in [&s.slack_token, &s.path_token, &s.query_token] {
        let sent = percent_encode(t);
        assert!(
            seen.contains(&sent),
            "the receiver never saw {sent:?}: {seen}"
        );
    }
    for t in [&s.bearer, &s.header, &s.dd_key, &s.dd_env] {
        assert!(
            seen.contains(t.as_str()),
            "the receiver never saw {t:?}: {seen}"
        );
    }
    let basic_sent =
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{}", s.basic_password));
    assert!(
        seen.contains(&basic_sent),
        "the receiver never saw the Basic auth_header {basic_sent:?}: {seen}"
    );
    // The echoes really came back into the result (masked): without them this test would not
    // exercise the scrubbing of receivers' answers at all.
    for name in ["team", "hook_path", "hook_auth"] {
        let response = outcomes
            .iter()
            .find(|o| o["system"] == name)
            .and_then(|o| o["response"].as_str())
            .unwrap_or("");
        assert!(
            response.contains("***"),
            "no masked echo in the answer of {name}: {result}"
        );
    }
    let b64 = |t: String| base64::engine::general_purpose::STANDARD.encode(t);
    let basic = [
        b64(format!("ops:{}", s.push_password)),
        b64(format!("ops:{}", percent_encode(&s.push_password))),
    ];
    assert!(
        basic.iter().any(|b| seen.contains(b.as_str())),
        "no Basic header for the Pushgateway's user info: {seen}"
    );
    let redis = redis_seen.lock().expect("lock").join("\n");
    assert!(
        redis.contains(&s.redis_password),
        "AUTH never reached the stand-in: {redis}"
    );

    let mut places = written(&out.stdout, &out.stderr, dir.path());
    // `notify test`: every receiver, each outcome described on a line.
    let t = output_bounded(
        retryx(s).args(["notify", "test", "-c"]).arg(&cfg_path),
        "notify test",
    );
    places.push((
        "notify test stdout".into(),
        String::from_utf8_lossy(&t.stdout).into(),
    ));
    places.push((
        "notify test stderr".into(),
        String::from_utf8_lossy(&t.stderr).into(),
    ));
    // The module at Ansible's -vvv (its log lines in the result), every receiver and the Redis
    // backend.
    let module = dir.path().join("retry_manager");
    std::os::unix::fs::symlink(retryx_bin(), &module).expect("symlink");
    let verbose_arts = dir.path().join("verbose-arts");
    let mut args = cfg.clone();
    args["command"] = json!("echo connection refused >&2; exit 3");
    args["max_attempts"] = json!(2);
    args["base_delay"] = json!("5ms");
    args["artifacts_dir"] = json!(verbose_arts.display().to_string());
    args["_ansible_verbosity"] = json!(3);
    let vargs = dir.path().join("verbose-args.json");
    std::fs::write(&vargs, args.to_string()).expect("write args");
    let v = output_bounded(run_as(&module, s).arg(&vargs), "the module at -vvv");
    let answer: Value = serde_json::from_slice(&v.stdout).expect("the module answers JSON");
    assert!(
        answer["retry"]["log"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "the module's log lines are in its result: {answer}"
    );
    for (place, text) in written(&v.stdout, &v.stderr, &verbose_arts) {
        places.push((format!("module at -vvv: {place}"), text));
    }
    // The module, under no_log: the command prints the environment's secret, and a webhook gets
    // the report.
    let margs = dir.path().join("args.json");
    let module_arts = dir.path().join("module-arts");
    let args = json!({
        "command": "echo \"token=$TOKEN\"; echo \"token=$TOKEN\" >&2; exit 3",
        "env": {"TOKEN": s.env_value},
        "max_attempts": 2, "base_delay": "5ms", "jitter": "none",
        "artifacts_dir": module_arts.display().to_string(),
        "external_systems": [systems(receiver.port, s)[1].clone()],
        "_ansible_no_log": true, "_ansible_verbosity": 3,
    });
    std::fs::write(&margs, args.to_string()).expect("write args");
    let m = output_bounded(run_as(&module, s).arg(&margs), "the module under no_log");
    let answer: Value = serde_json::from_slice(&m.stdout).expect("the module answers JSON");
    assert_eq!(answer["failed"], true, "{answer}");
    for (place, text) in written(&m.stdout, &m.stderr, &module_arts) {
        places.push((format!("module {place}"), text));
    }
    // (the module's own args file holds the secrets: it is the input, not something written)
    places.retain(|(p, _)| !p.ends_with("args.json") && !p.ends_with("cfg.json"));
    let mut push_forms = forms(&s.push_password);
    push_forms.extend(forms(&format!("ops:{}", s.push_password)));
    push_forms.extend(forms(&format!("ops:{}", percent_encode(&s.push_password))));
    let all = [
        ("slack relay token", forms(&s.slack_token)),
        ("webhook path token", forms(&s.path_token)),
        ("webhook query token", forms(&s.query_token)),
        ("auth_header bearer", forms(&s.bearer)),
        ("custom header", forms(&s.header)),
        ("datadog api key", forms(&s.dd_key)),
        ("DD_API_KEY", forms(&s.dd_env)),
        ("pushgateway password", push_forms),
        ("Basic auth_header password", {
            let mut f = forms(&s.basic_password);
            f.extend(forms(&format!("ops:{}", s.basic_password)));
            f
        }),
        ("redis password", forms(&s.redis_password)),
        ("env under no_log", forms(&s.env_value)),
    ];
    leaks(&all, &places)
}

/// Runs this many cases: each is four real runs of the binary (the CLI, `notify test`, the
/// module twice), about half a second in a debug build: 32 cases take some 20 seconds.
const CASES: usize = 32;

/// Every case runs (no stop at the first leak, so a measurement against an older build counts
/// them all); the test fails naming each case that leaked and where.
#[test]
fn no_secret_leaves_in_any_form() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    // The seed is random on every run (proptest's default), so runs cover new secrets; a case
    // that leaks is printed with its secrets (`{s:?}` below) to be replayed by hand.
    let mut runner = TestRunner::default();
    let strategy = secrets();
    let mut failed = Vec::new();
    for case in 0..CASES {
        let s = strategy
            .new_tree(&mut runner)
            .expect("a case from the strategy")
            .current();
        let found = run_case(&s);
        if !found.is_empty() {
            failed.push(format!(
                "case {case} ({s:?}): {} leak(s)\n  {}",
                found.len(),
                found.join("\n  ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {CASES} cases leaked a secret:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
