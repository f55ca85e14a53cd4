//! The result document, built here and nowhere else: an `app::Answer`'s data plus the status
//! keys Ansible reads (`failed`, `changed`, `skipped`, `msg`, `warnings`), with `no_log`
//! redaction. The module prints it; the CLI writes it with `--result-json`.

use serde_json::{Value, json};

use crate::app::{Answer, Status};
use crate::record::REDACTED;

/// The document of an answer.
pub(crate) fn of(answer: &Answer) -> Value {
    let mut out = Value::Object(answer.data.clone());
    out["failed"] = json!(answer.status == Status::Failed);
    out["changed"] = json!(answer.status == Status::Changed);
    if answer.status == Status::Skipped {
        out["skipped"] = json!(true);
    }
    out["msg"] = json!(answer.msg);
    if !answer.warnings.is_empty() {
        out["warnings"] = json!(answer.warnings);
    }
    if answer.no_log {
        redact_result(&mut out);
    }
    out
}

/// `debug_mode`: one line per attempt in `retry.debug` (number, exit status, class, the
/// matched text, how long it took, the wait after it), read from the document's own
/// `retry.attempts`, so a `no_log` result shows the redaction marker, never the text.
pub(crate) fn add_attempt_detail(out: &mut Value) {
    let Some(retry) = out.get_mut("retry") else {
        return;
    };
    let Some(attempts) = retry.get("attempts").and_then(Value::as_array) else {
        return;
    };
    let max = retry
        .get("max_attempts")
        .and_then(Value::as_u64)
        .map(|m| format!("/{m}"))
        .unwrap_or_default();
    let lines: Vec<String> = attempts.iter().map(|a| attempt_line(a, &max)).collect();
    retry["debug"] = json!(lines);
}

fn attempt_line(a: &Value, max: &str) -> String {
    let str_of = |k: &str| a.get(k).and_then(Value::as_str);
    let num = |k: &str| a.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut parts = Vec::new();
    parts.push(if a.get("timed_out") == Some(&json!(true)) {
        "timed out".to_string()
    } else if let Some(sig) = a.get("signal").and_then(Value::as_i64) {
        format!("killed by signal {sig}")
    } else if let Some(rc) = a.get("exit_code").and_then(Value::as_i64) {
        format!("rc {rc}")
    } else {
        "no rc".to_string()
    });
    if let Some(task) = str_of("failed_task") {
        parts.push(format!("failed task '{task}'"));
    }
    match str_of("error_type") {
        Some(class) => {
            let retry = if a.get("should_retry") == Some(&json!(true)) {
                "retryable"
            } else {
                "not retryable"
            };
            let why = str_of("retry_reason")
                .map(|r| format!(", {r}"))
                .unwrap_or_default();
            parts.push(format!("class {class} ({retry}{why})"));
        }
        None => parts.push(str_of("status").unwrap_or("succeeded").to_string()),
    }
    if let Some(m) = str_of("error_message").filter(|m| !m.is_empty()) {
        parts.push(format!("matched {m:?}"));
    }
    parts.push(format!("took {:.3}s", num("execution_time")));
    let wait = num("delay_before_retry");
    if wait > 0.0 {
        parts.push(format!("then waited {wait:.3}s"));
    }
    format!(
        "attempt {}{max}: {}",
        a.get("attempt_number").and_then(Value::as_u64).unwrap_or(0),
        parts.join(", ")
    )
}

/// The document of a failure found before any action could start.
pub(crate) fn failure(msg: impl Into<String>) -> Value {
    of(&Answer::failure(msg))
}

/// Hides everything a `no_log` task's output, command or context could reveal.
fn redact_result(out: &mut Value) {
    for key in ["cmd", "stdout", "stderr", "msg"] {
        if out.get(key).is_some() {
            out[key] = json!(REDACTED);
        }
    }
    for key in ["stdout_lines", "stderr_lines"] {
        if out.get(key).is_some() {
            out[key] = json!([REDACTED]);
        }
    }
    if let Some(retry) = out.get_mut("retry") {
        if let Some(attempts) = retry.get_mut("attempts").and_then(Value::as_array_mut) {
            for a in attempts {
                if a.get("error_message").is_some_and(|m| !m.is_null()) {
                    a["error_message"] = json!(REDACTED);
                }
            }
        }
        for key in ["command", "context", "final_error_message"] {
            if retry.get(key).is_some_and(|v| !v.is_null()) {
                retry[key] = json!(REDACTED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keys_come_from_the_answer_alone() {
        let a =
            Answer::usage("key 'x': expected a number").with("retry", json!({"status": "none"}));
        let d = of(&a);
        assert_eq!(d["failed"], json!(true));
        assert_eq!(d["changed"], json!(false));
        assert_eq!(d["rc"], json!(125));
        assert!(d.get("skipped").is_none());
        let mut s = Answer::skipped("would run").with("cmd", json!("echo secret"));
        s.no_log = true;
        let d = of(&s);
        assert_eq!(
            (d["skipped"].clone(), d["cmd"].clone()),
            (json!(true), json!(REDACTED))
        );
    }

    #[test]
    fn attempt_detail_reads_the_redacted_document() {
        let attempts = json!([
            {"attempt_number": 1, "exit_code": 1, "error_type": "connection_error",
             "should_retry": true, "retry_reason": "pattern", "status": "failed",
             "error_message": "token hunter2 refused", "execution_time": 0.25,
             "delay_before_retry": 1.5, "timed_out": false, "signal": null},
            {"attempt_number": 2, "exit_code": null, "timed_out": true, "error_type": "timeout",
             "should_retry": false, "status": "failed", "execution_time": 3.0,
             "delay_before_retry": 0.0, "failed_task": "Call the API"}
        ]);
        let answer = Answer::failure("failed")
            .with("retry", json!({"attempts": attempts, "max_attempts": 2}));
        let mut d = of(&answer);
        add_attempt_detail(&mut d);
        assert_eq!(
            d["retry"]["debug"],
            json!([
                "attempt 1/2: rc 1, class connection_error (retryable, pattern), matched \"token hunter2 refused\", took 0.250s, then waited 1.500s",
                "attempt 2/2: timed out, failed task 'Call the API', class timeout (not retryable), took 3.000s"
            ])
        );
        let mut hidden = answer.clone();
        hidden.no_log = true;
        let mut d = of(&hidden);
        add_attempt_detail(&mut d);
        let text = d["retry"]["debug"].to_string();
        assert!(
            !text.contains("hunter2") && text.contains(REDACTED),
            "{text}"
        );
    }
}
