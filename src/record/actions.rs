//! The session actions behind the role's handlers and the `retryx session|cleanup|compress`
//! subcommands: finalize, cleanup, compress. Each answers with a result object in the module's
//! shape (`changed`, `failed`, `msg`, ...); the front doors print it their way.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::store::{DEFAULT_ARTIFACTS_DIR, Store};
use crate::config::Config;

/// Default retention (days) and number of sessions kept by cleanup.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
pub const DEFAULT_MAX_SESSIONS: u32 = 100;
/// Files above this many bytes are gzipped by compress.
pub const DEFAULT_COMPRESS_THRESHOLD: u64 = 1024 * 1024;

fn failure(msg: impl Into<String>) -> Value {
    json!({"failed": true, "changed": false, "msg": msg.into()})
}

fn dir_of(config: &Config) -> std::path::PathBuf {
    std::path::PathBuf::from(
        config
            .artifacts_dir
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_ARTIFACTS_DIR.into()),
    )
}

/// Final statistics, status and alerts of `session_id`.
pub fn finalize(config: &Config, check_mode: bool, now: DateTime<Utc>) -> Value {
    let Some(id) = config.session_id.as_deref() else {
        return failure("action finalize needs session_id (the role passes retry_session_id)");
    };
    let dir = dir_of(config);
    let thresholds = config.monitoring.as_ref().and_then(|m| m.alerts.as_ref());
    if check_mode {
        return match Store::existing(&dir).and_then(|s| s.load_session(id)) {
            Ok(doc) => {
                json!({"changed": true, "failed": false, "msg": format!("session {id} would be finalized"), "session": doc})
            }
            Err(e) => failure(e.to_string()),
        };
    }
    match Store::open(&dir).and_then(|s| s.finalize(id, thresholds, now)) {
        Ok((doc, files)) => json!({
            "changed": true,
            "failed": false,
            "msg": format!("session {id} finalized: {} operations, {}", doc.final_statistics.total_operations, doc.session_status),
            "session": doc,
            "retry": {"session_id": id, "alerts": doc.alerts, "statistics": doc.final_statistics,
                      "artifacts": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()},
        }),
        Err(e) => failure(format!("finalize {id}: {e}")),
    }
}

/// With `session_id`: removes that session's files (the "cleanup retry session on error"
/// handler). Without: retention by age and count over finalized sessions.
pub fn cleanup(config: &Config, check_mode: bool, now: DateTime<Utc>) -> Value {
    let dir = dir_of(config);
    let store = match Store::existing(&dir) {
        Ok(s) => s,
        Err(e) => return failure(e.to_string()),
    };
    if !dir.exists() {
        return json!({"changed": false, "failed": false, "msg": "no records directory", "removed": []});
    }
    if check_mode {
        return json!({"changed": false, "failed": false, "msg": "cleanup would run", "removed": []});
    }
    let removed = match config.session_id.as_deref() {
        Some(id) => store.remove_session(id),
        None => store.cleanup(
            config.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
            config.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
            now,
        ),
    };
    match removed {
        Ok(files) => {
            json!({"changed": !files.is_empty(), "failed": false, "msg": format!("{} files removed", files.len()), "removed": files})
        }
        Err(e) => failure(format!("cleanup: {e}")),
    }
}

/// Gzips finished sessions and large records (of `session_id` only, when given).
pub fn compress(config: &Config, check_mode: bool) -> Value {
    let dir = dir_of(config);
    if check_mode {
        return json!({"changed": false, "failed": false, "msg": "compress would run", "compressed": []});
    }
    let threshold = config
        .compress_threshold
        .unwrap_or(DEFAULT_COMPRESS_THRESHOLD);
    match Store::existing(&dir).and_then(|s| s.compress(threshold, config.session_id.as_deref())) {
        Ok(files) => {
            json!({"changed": !files.is_empty(), "failed": false, "msg": format!("{} files compressed", files.len()), "compressed": files})
        }
        Err(e) => failure(format!("compress: {e}")),
    }
}
