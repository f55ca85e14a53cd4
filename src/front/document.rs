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
}
