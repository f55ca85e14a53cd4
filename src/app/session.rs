//! The session actions: the hook that records an operation after a run, `finalize` /
//! `cleanup` / `compress` (the role's handlers, `retryx session|cleanup|compress`), and the
//! JSON schemas of every record. Decides where records go (module: /tmp/ansible_retry by
//! default; CLI: only when asked) and turns record errors into answers; the work itself is in
//! `record::store`.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::Answer;
use crate::config::notify::AlertThresholds;
use crate::config::{Action, Config};
use crate::log::Logger;
use crate::record::OperationRecord;
use crate::record::store::{self, RecordError, Store};

/// Defaults of cleanup and compress (config keys retention_days, max_sessions, compress_threshold).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
pub const DEFAULT_MAX_SESSIONS: u32 = 100;
pub const DEFAULT_COMPRESS_THRESHOLD: u64 = 1024 * 1024;

/// The thresholds in force, unless monitoring is switched off.
pub fn thresholds(config: &Config) -> Option<AlertThresholds> {
    let m = config.monitoring.as_ref()?;
    if m.enabled == Some(false) {
        return None;
    }
    m.alerts.clone()
}

/// Where records go: the config's artifacts_dir, else the default when the front door writes
/// by default (the module), else nowhere (the CLI).
pub fn artifacts_dir(config: &Config, by_default: bool) -> Option<PathBuf> {
    match &config.artifacts_dir {
        Some(d) => Some(PathBuf::from(d)),
        None if by_default => Some(PathBuf::from(store::DEFAULT_DIR)),
        None => None,
    }
}

/// After a run: writes the operation's records and fills `retry.artifacts`, `retry.alerts`
/// and `retry.statistics.session`. A record that cannot be written does not change the
/// operation's outcome: it becomes `retry.record_error` and a warning.
pub(crate) fn after_run(
    config: &Config,
    by_default: bool,
    record: &OperationRecord,
    answer: &mut Answer,
    log: &Logger,
) {
    let t = thresholds(config);
    let Some(dir) = artifacts_dir(config, by_default) else {
        // No records: the operation-scope alerts are still evaluated and reported.
        let op_alerts = t
            .as_ref()
            .map(|t| crate::record::alerts::operation_alerts(record, t))
            .unwrap_or_default();
        for a in &op_alerts {
            log.warn("alert", &[("alert", a.message.clone())]);
        }
        if !answer.data.is_empty() {
            answer
                .retry_mut()
                .insert("alerts".into(), store::to_value(&op_alerts));
        }
        return;
    };
    let log_attempts = config.log_individual_attempts.unwrap_or(false);
    let outcome = Store::open(&dir)
        .and_then(|s| s.record_operation(record, log_attempts, t.as_ref(), chrono::Utc::now()));
    if answer.data.is_empty() {
        // Nobody reads the document: the records are what mattered.
        if let Err(e) = outcome {
            log.warn("records not written", &[("error", e.to_string())]);
        }
        return;
    }
    match outcome {
        Ok(w) => {
            let retry = answer.retry_mut();
            retry.insert(
                "artifacts".into(),
                json!(
                    w.files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                ),
            );
            retry.insert("alerts".into(), store::to_value(&w.alerts));
            if let Some(stats) = retry.get_mut("statistics").and_then(Value::as_object_mut) {
                stats.insert("session".into(), store::to_value(&w.session_statistics));
            }
            for a in &w.alerts {
                log.warn("alert", &[("alert", a.message.clone())]);
            }
        }
        Err(e) => {
            let msg = format!("records not written: {e}");
            log.warn("records not written", &[("error", e.to_string())]);
            answer.retry_mut().insert("record_error".into(), json!(msg));
            answer.warnings.push(msg);
        }
    }
}

/// The end of a CLI run that opened its own session: the session is finalized (statistics,
/// status, alerts) so that it does not stay `open` for ever and `cleanup` can retire it. Its
/// session-wide alerts are logged (the operation's own were, by `after_run`).
pub(crate) fn close_own_session(config: &Config, record: &OperationRecord, log: &Logger) {
    let Some(dir) = artifacts_dir(config, false) else {
        return;
    };
    let t = thresholds(config);
    match Store::new(&dir).finalize(&record.session_id, t.as_ref(), false, chrono::Utc::now()) {
        Ok((s, _)) => {
            for a in s.alerts.iter().filter(|a| a.scope == "session") {
                log.warn("alert", &[("alert", a.message.clone())]);
            }
        }
        Err(e) => log.warn(
            "session not finalized",
            &[
                ("session", record.session_id.clone()),
                ("error", e.to_string()),
            ],
        ),
    }
}

/// The session actions (the role's handlers; `retryx session finalize`, `cleanup`,
/// `compress`). In check mode nothing is written. `play_error` is what "cleanup retry session
/// on error" knew of the play's failure (the failed task, classified).
pub(crate) fn action(
    action: Action,
    config: &Config,
    check_mode: bool,
    play_error: Option<Value>,
) -> Answer {
    let dir = artifacts_dir(config, true).unwrap_or_else(|| PathBuf::from(store::DEFAULT_DIR));
    let store = Store::new(&dir);
    let sid = config.session_id.as_deref();
    if check_mode {
        return Answer::skipped(format!(
            "would {} in {} if not in check mode",
            action_name(action),
            dir.display()
        ))
        .with(
            "retry",
            json!({"session_id": sid, "artifacts": [], "alerts": []}),
        );
    }
    let done =
        |r: Result<Answer, RecordError>| r.unwrap_or_else(|e| Answer::failure(e.to_string()));
    match action {
        Action::Finalize => {
            let Some(sid) = sid else {
                return Answer::failure(
                    "action finalize needs session_id (the role passes retry_session_id)",
                );
            };
            done(finalize_once(&store, sid, config))
        }
        // With a session id: the role's "cleanup retry session on error" closes the session
        // as failed, keeps the whole picture in its error record and removes the rest. Without
        // one: "cleanup old retry files", retention by age and count.
        Action::Cleanup => match sid {
            Some(sid) => done(close_on_error(&store, sid, config, play_error)),
            None => done(
                store
                    .cleanup(
                        config.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
                        config.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
                        chrono::Utc::now(),
                    )
                    .map(|r| {
                        let changed = !r.removed_sessions.is_empty() || r.removed_files > 0;
                        Answer::done(
                            changed,
                            format!(
                                "removed {} session(s), {} file(s); kept {} open",
                                r.removed_sessions.len(),
                                r.removed_files,
                                r.kept_open.len()
                            ),
                        )
                        .with(
                            "retry",
                            json!({"cleanup": store::to_value(&r), "artifacts": [], "alerts": []}),
                        )
                    }),
            ),
        },
        // A session "cleanup retry session on error" removed (it runs before this handler)
        // has nothing to pack: said so, without touching the directory.
        Action::Compress
            if sid.is_some_and(|s| {
                store::check_session_id(s).is_ok() && !store.session_file(s).exists()
            }) =>
        {
            Answer::done(
                false,
                format!(
                    "nothing to compress: no session {} in {}",
                    sid.unwrap_or_default(),
                    dir.display()
                ),
            )
            .with(
                "retry",
                json!({"session_id": sid, "artifacts": [], "alerts": []}),
            )
        }
        Action::Compress => done(
            store
                .compress(
                    sid,
                    config
                        .compress_threshold
                        .unwrap_or(DEFAULT_COMPRESS_THRESHOLD),
                )
                .map(|r| {
                    let files: Vec<String> = r
                        .files
                        .iter()
                        .map(|f| dir.join(&f.file).display().to_string())
                        .collect();
                    Answer::done(
                        !r.files.is_empty(),
                        format!("compressed {} file(s)", r.files.len()),
                    )
                    .with(
                        "retry",
                        json!({"session_id": sid, "compress": store::to_value(&r),
                                "artifacts": files, "alerts": []}),
                    )
                }),
        ),
        other => Answer::failure(format!(
            "action '{}' is not a records action",
            action_name(other)
        )),
    }
}

fn action_name(a: Action) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Finalize, unless the session is already closed and nothing changed since: no operation
/// was added (that reopens it) and no other alert thresholds are given. Ansible runs a role's
/// handler once per `include_role` that notified it, so "finalize retry session" may be
/// called several times for one session; it closes the session once.
fn finalize_once(store: &Store, sid: &str, config: &Config) -> Result<Answer, RecordError> {
    let previous = match store.read_session(sid) {
        Ok(s) => Some(s),
        Err(RecordError::NoSuchSession { .. }) => None,
        Err(e) => return Err(e),
    };
    // "cleanup retry session on error" ran in an earlier flush: the session lives on only in
    // its error record, already closed.
    if previous.is_none()
        && let Some(s) = store.read_error_record(sid)?.and_then(|d| d.session)
    {
        let msg = format!(
            "session {sid} already closed on error ({}); nothing new to finalize",
            s.session_status
        );
        return Ok(Answer::done(false, msg).with("retry", session_json(&s, &[])));
    }
    if let Some(s) = previous
        && s.session_status != "open"
        && s.finalized_at.is_some()
        && thresholds(config).is_none_or(|t| Some(&t) == s.thresholds.as_ref())
    {
        let msg = format!(
            "session {sid} already {} (closed {} time(s)); nothing new to finalize",
            s.session_status, s.finalize_count
        );
        return Ok(Answer::done(false, msg).with("retry", session_json(&s, &[])));
    }
    finalize(store, sid, config)
}

/// "cleanup retry session on error": the session closed as failed, its whole picture kept in
/// `retry_session_error_<sid>.json`, every other file of it removed. A session with no records
/// (no operation reached the host) has nothing to close: a warning, not a failure.
fn close_on_error(
    store: &Store,
    sid: &str,
    config: &Config,
    play_error: Option<Value>,
) -> Result<Answer, RecordError> {
    let closed = store.close_on_error(
        sid,
        thresholds(config).as_ref(),
        play_error,
        chrono::Utc::now(),
    );
    let (doc, path, removed) = match closed {
        Err(RecordError::NoSuchSession { id, dir }) => {
            let msg = format!(
                "no records of session {id} in {}: nothing to close",
                dir.display()
            );
            let mut a = Answer::done(false, msg.clone()).with(
                "retry",
                json!({"session_id": sid, "artifacts": [], "alerts": []}),
            );
            a.warnings.push(msg);
            return Ok(a);
        }
        other => other?,
    };
    let session = doc.session.as_ref();
    let ops = session.map_or(0, |s| s.final_statistics.total_operations);
    let failed = doc.failed_operations.len();
    let msg = format!(
        "session {sid} closed as failed ({failed} of {ops} operation(s) failed{}); \
         kept {}, removed {removed} other file(s)",
        doc.error
            .as_ref()
            .and_then(|e| e.get("task"))
            .and_then(Value::as_str)
            .map(|t| format!("; the play failed at task '{t}'"))
            .unwrap_or_default(),
        path.display()
    );
    let mut retry = session.map_or_else(|| json!({"session_id": sid}), |s| session_json(s, &[]));
    retry["artifacts"] = json!([path.display().to_string()]);
    retry["removed_files"] = json!(removed);
    retry["error"] = doc.error.clone().unwrap_or(Value::Null);
    Ok(Answer::done(true, msg).with("retry", retry))
}

/// The `retry` object of a closed session.
fn session_json(s: &store::SessionDocument, files: &[PathBuf]) -> Value {
    json!({
        "session_id": s.session_id,
        "status": s.session_status,
        "session_start": s.session_start,
        "session_end": s.session_end,
        "session_duration": s.session_duration,
        "statistics": s.final_statistics,
        "alerts": s.alerts,
        "finalize_count": s.finalize_count,
        "artifacts": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}

fn finalize(store: &Store, sid: &str, config: &Config) -> Result<Answer, RecordError> {
    let (s, files) = store.finalize(sid, thresholds(config).as_ref(), false, chrono::Utc::now())?;
    let msg = format!(
        "session {sid} {}: {} operation(s), {} alert(s)",
        s.session_status,
        s.final_statistics.total_operations,
        s.alerts.len()
    );
    Ok(Answer::done(true, msg).with("retry", session_json(&s, &files)))
}

/// The JSON Schema of each record document, by file name under `schemas/`.
pub fn schemas() -> Vec<(&'static str, Value)> {
    let s = |v: schemars::Schema| v.to_value();
    vec![
        (
            "retry_session.schema.json",
            s(schemars::schema_for!(store::SessionDocument)),
        ),
        (
            "retry_operation.schema.json",
            s(schemars::schema_for!(store::OperationDocument)),
        ),
        (
            "retry_attempt.schema.json",
            s(schemars::schema_for!(store::AttemptDocument)),
        ),
        (
            "retry_performance.schema.json",
            s(schemars::schema_for!(store::PerformanceDocument)),
        ),
        (
            "retry_session_error.schema.json",
            s(schemars::schema_for!(store::ErrorDocument)),
        ),
        (
            "retry_records_pack.schema.json",
            s(schemars::schema_for!(store::RecordsPack)),
        ),
        (
            "retry_events.schema.json",
            s(schemars::schema_for!(
                crate::log::events::EventLine<'static>
            )),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files in schemas/ are the types' schemas. RETRYX_WRITE_SCHEMAS=1 rewrites them.
    #[test]
    fn record_schemas_are_current() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for (name, schema) in schemas() {
            let want = format!("{}\n", serde_json::to_string_pretty(&schema).unwrap());
            let path = root.join(name);
            if std::env::var_os("RETRYX_WRITE_SCHEMAS").is_some() {
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == want,
                "{name} is stale: RETRYX_WRITE_SCHEMAS=1 cargo test --lib record_schemas"
            );
        }
    }
}
