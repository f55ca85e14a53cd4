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
