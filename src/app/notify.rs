//! Notify the external systems: after an operation (its outcomes in the answer; only a
//! `required: true` system can fail it), the role's metrics and alerts handlers (the session
//! record), and `notify test`. Delivery itself is `crate::sinks`.

use std::path::Path;

use serde_json::{Value, json};

use super::{Answer, Status};
use crate::config::Config;
use crate::log::Logger;
use crate::record::OperationRecord;
use crate::sinks::{
    Alert, NotifyResult, NotifySettings, Purpose, Report, log_outcomes, notify, threshold_alerts,
};

/// After an operation: notifies every configured system about `record` (with the alerts the
/// records raised), puts the outcomes in `retry.notifications`, and fails the answer only when
/// a system with `required: true` failed.
pub(crate) fn after_operation(
    config: &Config,
    record: &OperationRecord,
    answer: &mut Answer,
    log: &Logger,
) -> NotifyResult {
    let settings = NotifySettings::from_config(config);
    if settings.systems.is_empty() {
        return NotifyResult::default();
    }
    let alerts = answer
        .data
        .get("retry")
        .and_then(|r| r.get("alerts"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Alert::from_value).collect())
        .unwrap_or_default();
    let res = notify(
        &settings,
        &Report::from_operation(record, alerts),
        Purpose::Run,
    );
    log_outcomes(&res, log);
    for o in &res.outcomes {
        log.event(&crate::log::events::Event::Notification(o.into()));
    }
    answer.retry_mut().insert(
        "notifications".into(),
        serde_json::to_value(&res.outcomes).unwrap_or_default(),
    );
    answer.warnings.extend(failed_delivery_warnings(&res));
    if res.required_failed {
        answer.status = Status::Failed;
        let sep = if answer.msg.is_empty() { "" } else { "; " };
        answer.msg = format!(
            "{}{sep}required notification failed: {}",
            answer.msg,
            failed_required(&res)
        );
        answer.exit_code = crate::exit::with_required_notification_failed(answer.exit_code);
    }
    res
}

/// The module's `action: notify` (the role's "send retry metrics to external systems" with
/// `notify_kind: metrics`, "send retry alerts" with `notify_kind: alerts`, or `test`). Metrics
/// and alerts describe the session record `retry_session_<session_id>.json` in
/// `artifacts_dir`. In check mode nothing is sent.
pub(crate) fn action(config: &Config, check_mode: bool, log: &Logger) -> Answer {
    let kind = config.notify_kind.as_deref().unwrap_or("metrics");
    let purpose = match kind {
        "metrics" => Purpose::Metrics,
        "alerts" => Purpose::Alerts,
        "test" => Purpose::Test,
        other => {
            return Answer::failure(format!(
                "notify_kind must be metrics, alerts or test, got {other:?}"
            ));
        }
    };
    let settings = NotifySettings::from_config(config);
    if settings.systems.is_empty() || settings.external_integration == Some(false) {
        return Answer::done(
            false,
            "no external system to notify (external_systems empty or external_integration false)",
        )
        .with("retry", json!({"notifications": []}));
    }
    let report = if purpose == Purpose::Test {
        Report::test_message(&session_or_new(config))
    } else {
        match session_report(config) {
            Ok(r) => r,
            Err(answer) => return *answer,
        }
    };
    if check_mode {
        return Answer::skipped(format!(
            "would notify {} system(s) ({kind}) if not in check mode",
            settings.systems.len()
        ))
        .with(
            "retry",
            json!({"session_id": report.session_id, "notifications": []}),
        );
    }
    let res = notify(&settings, &report, purpose);
    log_outcomes(&res, log);
    let sent = res.outcomes.iter().filter(|o| o.status == "sent").count();
    let failed = res.outcomes.iter().filter(|o| o.status == "failed").count();
    let msg = format!("notify {kind}: {sent} sent, {failed} failed");
    let mut answer = if res.required_failed {
        Answer::failure(format!(
            "{msg}; required notification failed: {}",
            failed_required(&res)
        ))
    } else {
        Answer::done(sent > 0, msg)
    };
    answer.warnings.extend(failed_delivery_warnings(&res));
    answer.data.insert(
        "retry".into(),
        json!({"session_id": report.session_id, "notifications": res.outcomes}),
    );
    answer
}

/// One warning per delivery that failed (Ansible shows a result's `warnings` at any
/// verbosity): the system, whether it was required, the HTTP status and the (redacted) error.
/// The `required: true` systems that failed, named for the message that fails the task.
fn failed_required(res: &NotifyResult) -> String {
    let names: Vec<&str> = res
        .outcomes
        .iter()
        .filter(|o| o.required && o.status == "failed")
        .map(|o| o.system.as_str())
        .collect();
    names.join(", ")
}

fn failed_delivery_warnings(res: &NotifyResult) -> Vec<String> {
    res.outcomes
        .iter()
        .filter(|o| o.status == "failed")
        .map(|o| {
            format!(
                "notification to {} ({}{}) failed after {} attempt(s){}: {}",
                o.system,
                o.kind,
                if o.required { ", required" } else { "" },
                o.attempts,
                o.http_status
                    .map(|s| format!(", HTTP {s}"))
                    .unwrap_or_default(),
                o.error.as_deref().unwrap_or("no answer")
            )
        })
        .collect()
}

/// `retryx notify test`: a test message to every enabled system.
pub(crate) fn test(config: &Config) -> NotifyResult {
    notify(
        &NotifySettings::from_config(config),
        &Report::test_message(&session_or_new(config)),
        Purpose::Test,
    )
}

fn session_or_new(config: &Config) -> String {
    config
        .session_id
        .clone()
        .unwrap_or_else(|| crate::record::new_session_id(chrono::Utc::now().timestamp()))
}

/// The session document "cleanup retry session on error" kept in the error record, if any.
fn closed_on_error(dir: &str, session: &str) -> Option<Value> {
    let store = crate::record::store::Store::new(dir);
    let doc = store.read_error_record(session).ok()??;
    doc.session.and_then(|s| serde_json::to_value(s).ok())
}

/// The report of the session record named by `session_id` in `artifacts_dir` (or of the
/// session its error record kept, once "cleanup retry session on error" removed the record).
fn session_report(config: &Config) -> Result<Report, Box<Answer>> {
    let fail = |msg: String| Box::new(Answer::failure(msg));
    let Some(session) = config.session_id.as_deref() else {
        return Err(fail(
            "action notify needs session_id (the role passes retry_session_id)".into(),
        ));
    };
    if session.is_empty() || session.contains(['/', '\\']) || session.starts_with('.') {
        return Err(fail(
            "session_id must be a plain name such as retry_1640995200_123456".into(),
        ));
    }
    let dir = config
        .artifacts_dir
        .as_deref()
        .unwrap_or(crate::record::store::DEFAULT_DIR);
    let path = Path::new(dir).join(format!("retry_session_{session}.json"));
    let doc = match std::fs::read_to_string(&path) {
        // "cleanup retry session on error" ran first (handlers run in definition order): the
        // session lives on in its error record's `session`.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => closed_on_error(dir, session)
            .ok_or_else(|| {
                fail(format!(
                    "cannot read the session record {}: {e}",
                    path.display()
                ))
            })?,
        read => read
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
            .map_err(|e| {
                fail(format!(
                    "cannot read the session record {}: {e}",
                    path.display()
                ))
            })?,
    };
    let Some(mut r) = Report::from_session(&doc) else {
        return Err(fail(format!(
            "{} is not a session record (no session_id)",
            path.display()
        )));
    };
    let thresholds = config.monitoring.as_ref().and_then(|m| m.alerts.as_ref());
    if doc.get("alerts").is_none()
        && let Some(t) = thresholds
    {
        let stats = doc.get("final_statistics").cloned().unwrap_or(Value::Null);
        r.alerts = threshold_alerts(&stats, t);
    }
    Ok(r)
}
