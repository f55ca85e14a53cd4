//! The decisions users rely on, through the CLI: what is retried (the whole output, the text
//! that decided, `retry_conditions`), and what the result says about them.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs `retryx ARGS -- sh -c SCRIPT` with no waits between attempts; gives the exit code and
/// the result document.
fn run(dir: &Path, args: &[&str], script: &str) -> (Option<i32>, Value) {
    let path = dir.join("result.json");
    let status = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["-q", "-d", "0", "--result-json"])
        .arg(&path)
        .args(args)
        .args(["--", "sh", "-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("retryx runs");
    let doc =
        serde_json::from_slice(&std::fs::read(&path).expect("result written")).expect("valid JSON");
    (status.code(), doc)
}

#[test]
fn a_permanent_error_far_from_the_end_of_the_output_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    // 100 KB after the line that matters: more than any tail retryx keeps.
    let (code, doc) = run(
        dir.path(),
        &["-n", "3"],
        "echo 'open /etc/app.key: Permission denied' >&2; yes 'copying block, connection ok' | head -c 100000 >&2; exit 1",
    );
    assert_eq!(code, Some(1));
    assert_eq!(doc["retry"]["attempt_count"], 1, "{doc}");
    let a = &doc["retry"]["attempts"][0];
    assert_eq!(a["error_type"], "permission_error");
    assert_eq!(a["error_message"], "open /etc/app.key: Permission denied");
}

#[test]
fn the_message_quotes_the_text_that_decided() {
    let dir = tempfile::tempdir().unwrap();
    let (_, doc) = run(
        dir.path(),
        &["-n", "2"],
        "echo 'mkdir /srv/x: Permission denied' >&2; echo 'Connection timed out' >&2; exit 1",
    );
    let msg = doc["msg"].as_str().unwrap();
    assert!(
        msg.contains("mkdir /srv/x: Permission denied (permission_error)"),
        "{msg}"
    );
    assert_eq!(doc["retry"]["attempt_count"], 1);
}

#[test]
fn an_informational_line_does_not_decide() {
    let dir = tempfile::tempdir().unwrap();
    let (_, doc) = run(
        dir.path(),
        &["-n", "3"],
        "echo 'INFO: request timeout set to 30s'; echo 'error: unrecognized arguments: --frobnicate' >&2; exit 2",
    );
    let a = &doc["retry"]["attempts"][0];
    assert_eq!(a["error_type"], "configuration_error", "{doc}");
    assert_eq!(doc["retry"]["attempt_count"], 1);
}

#[test]
fn seed_http_forms_are_classed_and_decided() {
    let dir = tempfile::tempdir().unwrap();
    let (_, doc) = run(dir.path(), &["-n", "3"], "echo 'HTTP 404' >&2; exit 1");
    assert_eq!(
        doc["retry"]["attempts"][0]["error_type"],
        "resource_not_found"
    );
    assert_eq!(doc["retry"]["attempt_count"], 1, "404 is not retried");
    let (_, doc) = run(dir.path(), &["-n", "2"], "echo 'HTTP 503' >&2; exit 1");
    assert_eq!(
        doc["retry"]["attempts"][0]["error_type"],
        "service_unavailable"
    );
    assert_eq!(doc["retry"]["attempt_count"], 2, "503 is retried");
}

#[test]
fn retry_conditions_name_exactly_what_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let script = "echo 'authentication failed for user admin' >&2; exit 1";
    // Not listed: a non-retryable class stops at once.
    let (_, doc) = run(dir.path(), &["-n", "3"], script);
    assert_eq!(doc["retry"]["attempt_count"], 1);
    // Listed: it is retried, and the reason says why.
    let (_, doc) = run(
        dir.path(),
        &[
            "-n",
            "3",
            "--retry-conditions",
            "authentication_error,timeout",
        ],
        script,
    );
    assert_eq!(doc["retry"]["attempt_count"], 3, "{doc}");
    let reason = doc["retry"]["attempts"][0]["retry_reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("authentication_error is in retry_conditions"),
        "{reason}"
    );
    // A retryable class left out is not retried.
    let (_, doc) = run(
        dir.path(),
        &["-n", "3", "--retry-conditions", "timeout"],
        "echo 'connection refused' >&2; exit 1",
    );
    assert_eq!(doc["retry"]["attempt_count"], 1);
}

#[test]
fn a_completed_operation_has_no_final_error() {
    let dir = tempfile::tempdir().unwrap();
    // Fails once with a network error, then succeeds.
    let (code, doc) = run(
        dir.path(),
        &["-n", "3"],
        "if [ -e once ]; then echo ok; else touch once; echo 'connection refused' >&2; exit 1; fi",
    );
    assert_eq!(code, Some(0));
    assert_eq!(doc["retry"]["status"], "completed");
    assert_eq!(
        doc["retry"]["attempts"][0]["error_type"],
        "connection_error"
    );
    assert!(
        doc["retry"]["final_error_type"].is_null(),
        "{}",
        doc["retry"]["final_error_type"]
    );
}

/// Runs `retryx -c CONFIG --result-json R -- sh -c SCRIPT`.
fn run_config(dir: &Path, config: &Value, script: &str) -> (Option<i32>, Value, String) {
    let cfg = dir.join("cfg.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let path = dir.join("result.json");
    let _ = std::fs::remove_file(&path);
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .arg("-c")
        .arg(&cfg)
        .arg("--result-json")
        .arg(&path)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("retryx runs");
    let doc = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (
        out.status.code(),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn class_overrides_set_the_policy_after_a_failure_of_their_class() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    // The operation's own policy would wait 30 s; throttling gets its own, shorter here.
    let config = serde_json::json!({
        "max_attempts": 5, "base_delay": 30, "max_delay": 60, "jitter": "none",
        "class_overrides": {"rate_limit_exceeded": {"base_delay": 0.2, "max_delay": 0.2, "max_attempts": 3}}
    });
    let (code, doc, err) = run_config(
        dir.path(),
        &config,
        "echo 'HTTP/1.1 429 Too Many Requests' >&2; exit 1",
    );
    assert_eq!(code, Some(1), "{err}");
    let a = doc["retry"]["attempts"].as_array().unwrap();
    assert_eq!(a.len(), 3, "the class's max_attempts: {doc}");
    assert_eq!(a[0]["policy_class"], "rate_limit_exceeded");
    assert_eq!(a[0]["delay_before_retry"], 0.2);
    assert_eq!(a[1]["delay_before_retry"], 0.2);
    assert!(started.elapsed().as_secs() < 20);
    // Another class keeps the operation's policy (and no policy_class).
    let config = serde_json::json!({
        "max_attempts": 2, "base_delay": 0.1, "jitter": "none",
        "class_overrides": {"rate_limit_exceeded": {"base_delay": 30, "max_delay": 60}}
    });
    let (_, doc, _) = run_config(dir.path(), &config, "echo 'connection refused' >&2; exit 1");
    let a0 = &doc["retry"]["attempts"][0];
    assert_eq!(a0["delay_before_retry"], 0.1, "{doc}");
    assert!(a0.get("policy_class").is_none(), "{a0}");
}

#[test]
fn class_overrides_work_inside_operation_configs_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "operation": "api", "max_attempts": 4, "base_delay": 30, "jitter": "none",
        "operation_configs": {"api": {"class_overrides": {"service_unavailable": {"base_delay": 0.1, "max_delay": 0.1, "max_attempts": 2}}}}
    });
    let (_, doc, err) = run_config(dir.path(), &config, "echo 'HTTP 503' >&2; exit 1");
    assert_eq!(doc["retry"]["attempt_count"], 2, "{err}");
    assert_eq!(
        doc["retry"]["attempts"][0]["policy_class"],
        "service_unavailable"
    );
    // Bad input is refused before anything runs, naming the key.
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let bad = serde_json::json!({"class_overrides": {"rate_limit_exceeded": {"base_delay": 60, "max_delay": 1}}});
    let (code, _, err) = run_config(dir.path(), &bad, &touch);
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("class_overrides.rate_limit_exceeded.max_delay"),
        "{err}"
    );
    let bad = serde_json::json!({"class_overrides": {"throttled": {"base_delay": 1}}});
    let (code, _, err) = run_config(dir.path(), &bad, &touch);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("class_overrides"), "{err}");
    let bad = serde_json::json!({"class_overrides": {"timeout": {"jitter": "none"}}});
    let (code, _, err) = run_config(dir.path(), &bad, &touch);
    assert_eq!(code, Some(125), "{err}");
    assert!(!marker.exists());
}

#[test]
fn an_open_session_lists_its_operations() {
    let dir = tempfile::tempdir().unwrap();
    let arts = dir.path().join("arts");
    for (op, script) in [("first", "true"), ("second", "echo 'HTTP 404' >&2; exit 1")] {
        let status = Command::new(env!("CARGO_BIN_EXE_retryx"))
            .args([
                "-q",
                "-n",
                "1",
                "--session-id",
                "retry_1_open",
                "--operation",
                op,
            ])
            .arg("--artifacts-dir")
            .arg(&arts)
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.code().is_some());
    }
    let doc: Value = serde_json::from_slice(
        &std::fs::read(arts.join("retry_session_retry_1_open.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["session_status"], "open");
    let ops = doc["operations"].as_array().unwrap();
    let names: Vec<&str> = ops
        .iter()
        .map(|o| o["operation_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"], "{doc}");
    assert_eq!(doc["final_statistics"]["total_operations"], 2, "{doc}");
}

#[test]
fn validate_refuses_bad_receiver_urls_and_headers_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.json");
    let cases = [
        (json_sys("htp:/x", None), "external_systems[0].url"),
        (json_sys("https://", None), "external_systems[0].url"),
        (
            json_sys("https://h.example/x", Some("Bearer")),
            "external_systems[0].auth_header",
        ),
        (
            json_sys("https://h.example/x", Some("Bearer s3cr3t\nX-Evil: 1")),
            "external_systems[0].auth_header",
        ),
    ];
    for (config, key) in cases {
        std::fs::write(&cfg, config.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
            .arg("validate")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{config}: {err}");
        assert!(err.contains(key), "{err}");
        assert!(!err.contains("s3cr3t") && !err.contains("htp:/x"), "{err}");
    }
    std::fs::write(
        &cfg,
        json_sys("https://h.example/x", Some("Bearer abc")).to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .arg("validate")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

fn json_sys(url: &str, auth: Option<&str>) -> Value {
    let mut sys = serde_json::json!({"name": "hooks", "url": url});
    if let Some(a) = auth {
        sys["auth_header"] = a.into();
    }
    serde_json::json!({"external_systems": [sys]})
}

/// `retryx ARGS` (no command), for the session actions; gives the exit code and stdout.
fn retryx(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("retryx runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn names(alerts: &Value) -> Vec<(String, String)> {
    alerts
        .as_array()
        .unwrap_or_else(|| panic!("alerts is a list: {alerts}"))
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["scope"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn operation_alerts_are_evaluated_on_a_run_without_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "max_attempts": 3, "base_delay": 0, "jitter_enabled": false,
        "monitoring": {"alerts": {"operation_max_retries": 1, "max_average_retries": 1,
                                  "min_success_rate": 99}}
    });
    let (code, doc, log) = run_config(
        dir.path(),
        &config,
        "echo 'Connection timed out' >&2; exit 1",
    );
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(doc["retry"]["attempt_count"], 3, "{doc}");
    // Two retries are above operation_max_retries 1; the session's average (and success rate)
    // is not one operation's: those wait for a finalize.
    assert_eq!(
        names(&doc["retry"]["alerts"]),
        [("operation_max_retries".to_string(), "operation".to_string())],
        "{doc}"
    );
    assert!(
        doc["retry"]["alerts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("retry_count 2 is above the threshold 1"),
        "{doc}"
    );
    assert!(
        log.contains("retry_count 2 is above the threshold 1"),
        "{log}"
    );
    assert!(dir.path().read_dir().unwrap().all(|e| {
        let n = e.unwrap().file_name();
        n == "cfg.json" || n == "result.json"
    }));
}

#[test]
fn session_alerts_are_evaluated_at_finalize_and_replaced_by_other_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let arts = dir.path().join("arts");
    let a = arts.to_str().unwrap();
    let cfg = dir.path().join("cfg.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"base_delay": 0, "jitter_enabled": false,
            "monitoring": {"alerts": {"max_average_retries": 1, "min_success_rate": 40}}})
        .to_string(),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    // Three operations: two retries, then none, none: the average (2/3) is under 1.
    let mut results = Vec::new();
    for (op, n, script) in [
        ("flaky", "3", "echo 'Connection timed out' >&2; exit 1"),
        ("ok1", "1", "true"),
        ("ok2", "1", "true"),
    ] {
        let res = dir.path().join(format!("{op}.json"));
        let (code, _) = retryx(&[
            "-q",
            "-c",
            c,
            "-n",
            n,
            "--session-id",
            "retry_1_alerts",
            "--operation",
            op,
            "--artifacts-dir",
            a,
            "--result-json",
            res.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ]);
        assert!(code.is_some());
        results.push(serde_json::from_slice::<Value>(&std::fs::read(&res).unwrap()).unwrap());
    }
    // retry_count 2 of the first operation is not the session's average: no alert on it.
    assert_eq!(results[0]["retry"]["attempt_count"], 3);
    assert_eq!(names(&results[0]["retry"]["alerts"]), []);
    let op_doc = arts
        .join("retry_session_retry_1_alerts")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().contains("flaky"))
        .unwrap();
    let op: Value = serde_json::from_slice(&std::fs::read(op_doc).unwrap()).unwrap();
    assert_eq!(names(&op["alerts"]), [], "{op}");

    let (code, _) = retryx(&[
        "session",
        "finalize",
        "retry_1_alerts",
        "--artifacts-dir",
        a,
    ]);
    assert_eq!(code, Some(0));
    let session = |arts: &Path| -> Value {
        serde_json::from_slice(
            &std::fs::read(arts.join("retry_session_retry_1_alerts.json")).unwrap(),
        )
        .unwrap()
    };
    // 2/3 successes (66.7%) is above 40; the average 0.67 is under 1: quiet.
    assert_eq!(names(&session(&arts)["alerts"]), [], "{}", session(&arts));

    // Finalize again with other thresholds: re-evaluated, the earlier verdict replaced.
    let strict = dir.path().join("strict.json");
    std::fs::write(
        &strict,
        serde_json::json!({"monitoring": {"alerts": {"max_average_retries": 0.5, "min_success_rate": 90}}})
            .to_string(),
    )
    .unwrap();
    for _ in 0..2 {
        let (code, _) = retryx(&[
            "session",
            "finalize",
            "retry_1_alerts",
            "--artifacts-dir",
            a,
            "-c",
            strict.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0));
        let s = session(&arts);
        // Twice finalized, still one of each: replaced, not accumulated.
        assert_eq!(
            names(&s["alerts"]),
            [
                ("min_success_rate".to_string(), "session".to_string()),
                ("max_average_retries".to_string(), "session".to_string())
            ],
            "{s}"
        );
        assert_eq!(s["alerts"][1]["metric"], "average_retry_count");
    }
    let lenient = dir.path().join("lenient.json");
    std::fs::write(
        &lenient,
        serde_json::json!({"monitoring": {"alerts": {"max_average_retries": 5}}}).to_string(),
    )
    .unwrap();
    let (code, _) = retryx(&[
        "session",
        "finalize",
        "retry_1_alerts",
        "--artifacts-dir",
        a,
        "-c",
        lenient.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(names(&session(&arts)["alerts"]), []);
}
