//! Writes and reads the records under the artifacts directory: one file per operation, the
//! session document updated under a file lock, attempt files, and at finalize the performance
//! and error documents. Every write goes through `fsx` (private dir, 0600, atomic, no symlink
//! followed). Knows nothing of Ansible or the CLI.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::alerts::{Alert, operation_alerts, threshold_alerts};
use super::stats::{FinalStatistics, OperationSummary, final_statistics};
use super::{OperationRecord, timestamp};
use crate::config::notify::AlertThresholds;
use crate::fsx::{self, FsError, LockGuard};

/// The default artifacts directory (seed 003 "Log Files").
pub const DEFAULT_ARTIFACTS_DIR: &str = "/tmp/ansible_retry";
/// Largest record read back (a session of 100,000 operations stays well under it).
const MAX_DOC_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{0}")]
    Invalid(String),
    #[error("no session {0} in {1}")]
    NoSession(String, String),
}

/// `retry_session_<id>.json`: the seed's Session Statistics plus what retryx keeps to finalize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionDoc {
    pub session_id: String,
    pub session_start: String,
    pub session_end: Option<String>,
    /// Seconds, set at finalize.
    pub session_duration: Option<f64>,
    /// `running` until finalized, then `completed` or `failed`.
    pub session_status: String,
    pub final_statistics: FinalStatistics,
    pub operations: Vec<OperationSummary>,
    pub alerts: Vec<Alert>,
    /// The thresholds last seen with an operation, used at finalize when none are given.
    pub thresholds: Option<AlertThresholds>,
    pub updated_at: String,
}

/// A plain id usable in a file name: `[A-Za-z0-9_.-]`, not starting with a dot, at most 200.
pub fn check_id(what: &str, id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} {id:?} must be a plain name of letters, digits, '_', '-' and '.' such as retry_1640995200_123456"
        )))
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(v).unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    text
}

/// The records of one artifacts directory.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating 0700) the directory; refuses a symlink or a directory of someone else.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fsx::ensure_private_dir(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens an existing directory for reading without creating anything.
    pub fn existing(dir: &Path) -> Result<Store, StoreError> {
        let meta = std::fs::symlink_metadata(dir).map_err(|e| FsError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        if meta.file_type().is_symlink() {
            return Err(FsError::Symlink {
                path: dir.to_path_buf(),
            }
            .into());
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self, session_id: &str) -> Result<LockGuard, StoreError> {
        Ok(LockGuard::exclusive(
            &self.dir.join(format!("retry_session_{session_id}.lock")),
        )?)
    }

    /// Reads `name` or, when only the compressed copy exists, `name.gz`.
    pub fn read_doc(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let plain = self.dir.join(name);
        let bytes = match fsx::read_private(&plain, MAX_DOC_BYTES) {
            Ok(b) => b,
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let gz = self.dir.join(format!("{name}.gz"));
                match fsx::read_private(&gz, MAX_DOC_BYTES) {
                    Ok(b) => {
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&b[..])
                            .take(MAX_DOC_BYTES)
                            .read_to_end(&mut out)
                            .map_err(|e| FsError::Io {
                                path: gz.clone(),
                                source: e,
                            })?;
                        out
                    }
                    Err(FsError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::Invalid(format!("{}: not a valid record: {e}", plain.display()))
        })
    }

    fn remove_plain_and_gz(&self, name: &str) {
        for n in [name.to_string(), format!("{name}.gz")] {
            let _ = self.remove_ours(&self.dir.join(n));
        }
    }

    /// Removes a file only when it is a regular file (or a link, removed as a link) of ours.
    fn remove_ours(&self, path: &Path) -> std::io::Result<bool> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.is_dir() {
            return Ok(false);
        }
        std::fs::remove_file(path).map(|_| true)
    }

    pub fn load_session(&self, session_id: &str) -> Result<SessionDoc, StoreError> {
        check_id("session_id", session_id)?;
        let v = self
            .read_doc(&format!("retry_session_{session_id}.json"))?
            .ok_or_else(|| {
                StoreError::NoSession(session_id.into(), self.dir.display().to_string())
            })?;
        serde_json::from_value(v)
            .map_err(|e| StoreError::Invalid(format!("session {session_id}: {e}")))
    }

    fn save_session(&self, doc: &SessionDoc) -> Result<PathBuf, StoreError> {
        let name = format!("retry_session_{}.json", doc.session_id);
        let path = fsx::write_atomic(&self.dir, &name, &to_json(doc))?;
        // A compressed copy from before is stale now.
        let _ = self.remove_ours(&self.dir.join(format!("{name}.gz")));
        Ok(path)
    }

    /// Writes the operation (and its attempts when asked) and adds it to its session. Returns
    /// the files written and the alerts that apply to this operation.
    pub fn record_operation(
        &self,
        op: &OperationRecord,
        thresholds: Option<&AlertThresholds>,
        log_attempts: bool,
        now: DateTime<Utc>,
    ) -> Result<(Vec<PathBuf>, Vec<Alert>, FinalStatistics), StoreError> {
        check_id("session_id", &op.session_id)?;
        check_id("operation_id", &op.operation_id)?;
        let mut written = vec![fsx::write_atomic(
            &self.dir,
            &format!("retry_operation_{}.json", op.operation_id),
            &to_json(op),
        )?];
        if log_attempts {
            for a in &op.attempts {
                let name = format!("attempt_{}_{}.json", op.operation_id, a.attempt_number);
                let doc = json!({"operation_id": op.operation_id, "operation_name": op.operation_name, "session_id": op.session_id, "attempt": a});
                written.push(fsx::write_atomic(&self.dir, &name, &to_json(&doc))?);
            }
        }
        let alerts = thresholds
            .map(|t| operation_alerts(&op.operation_name, op.execution_time, op.attempt_count, t))
            .unwrap_or_default();
        let _lock = self.lock(&op.session_id)?;
        let mut doc = match self.load_session(&op.session_id) {
            Ok(d) => d,
            Err(StoreError::NoSession(..)) => SessionDoc {
                session_id: op.session_id.clone(),
                session_start: op.start_time.clone(),
                session_end: None,
                session_duration: None,
                session_status: "running".into(),
                final_statistics: FinalStatistics::default(),
                operations: Vec::new(),
                alerts: Vec::new(),
                thresholds: None,
                updated_at: String::new(),
            },
            Err(e) => return Err(e),
        };
        doc.operations.retain(|o| o.operation_id != op.operation_id);
        doc.operations.push(OperationSummary {
            operation_id: op.operation_id.clone(),
            operation_name: op.operation_name.clone(),
            status: op.status,
            attempt_count: op.attempt_count,
            execution_time: op.execution_time,
            start_time: op.start_time.clone(),
            end_time: op.end_time.clone(),
            final_error_type: op.final_error_type.map(|c| c.to_string()),
        });
        if op.start_time < doc.session_start {
            doc.session_start = op.start_time.clone();
        }
        // A session that gets a new operation is running again until finalized anew.
        doc.session_status = "running".into();
        doc.session_end = None;
        doc.session_duration = None;
        if let Some(t) = thresholds {
            doc.thresholds = Some(t.clone());
        }
        doc.alerts.extend(alerts.iter().cloned());
        let last_end = doc
            .operations
            .iter()
            .map(|o| o.end_time.clone())
            .max()
            .unwrap_or_default();
        doc.final_statistics =
            final_statistics(&doc.operations, span(&doc.session_start, &last_end));
        doc.updated_at = timestamp(now);
        written.push(self.save_session(&doc)?);
        Ok((written, alerts, doc.final_statistics))
    }

    /// Final statistics, end, duration, status and alerts; the performance document, and the
    /// error document when an operation failed.
    pub fn finalize(
        &self,
        session_id: &str,
        thresholds: Option<&AlertThresholds>,
        now: DateTime<Utc>,
    ) -> Result<(SessionDoc, Vec<PathBuf>), StoreError> {
        check_id("session_id", session_id)?;
        let _lock = self.lock(session_id)?;
        let mut doc = self.load_session(session_id)?;
        let end = timestamp(now);
        let duration = span(&doc.session_start, &end);
        doc.session_end = Some(end.clone());
        doc.session_duration = Some((duration * 1000.0).round() / 1000.0);
        doc.final_statistics = final_statistics(&doc.operations, duration);
        let failed = doc.operations.iter().any(|o| !o.succeeded());
        doc.session_status = if failed { "failed" } else { "completed" }.into();
        let thresholds = thresholds.cloned().or_else(|| doc.thresholds.clone());
        let mut alerts: Vec<Alert> = Vec::new();
        if let Some(t) = &thresholds {
            let stats = serde_json::to_value(&doc.final_statistics).unwrap_or_default();
            alerts.extend(threshold_alerts(&stats, t));
            for o in &doc.operations {
                alerts.extend(operation_alerts(
                    &o.operation_name,
                    o.execution_time,
                    o.attempt_count,
                    t,
                ));
            }
        }
        doc.alerts = alerts;
        doc.updated_at = end.clone();
        let mut written = vec![self.save_session(&doc)?];

        let mut by_time: Vec<&OperationSummary> = doc.operations.iter().collect();
        by_time.sort_by(|a, b| b.execution_time.total_cmp(&a.execution_time));
        let perf = json!({
            "session_id": doc.session_id,
            "generated_at": end,
            "session_duration": doc.session_duration,
            "final_statistics": doc.final_statistics,
            "operations": by_time.iter().map(|o| json!({
                "operation_id": o.operation_id, "operation_name": o.operation_name, "status": o.status,
                "attempt_count": o.attempt_count, "execution_time": o.execution_time,
            })).collect::<Vec<_>>(),
        });
        written.push(fsx::write_atomic(
            &self.dir,
            &format!("retry_performance_{session_id}.json"),
            &to_json(&perf),
        )?);
        let error_name = format!("retry_session_error_{session_id}.json");
        if failed {
            let failures: Vec<Value> = doc
                .operations
                .iter()
                .filter(|o| !o.succeeded())
                .map(|o| {
                    let full = self.read_doc(&format!("retry_operation_{}.json", o.operation_id)).ok().flatten().unwrap_or(Value::Null);
                    json!({
                        "operation_id": o.operation_id, "operation_name": o.operation_name, "status": o.status,
                        "attempt_count": o.attempt_count, "final_error_type": o.final_error_type,
                        "final_error_message": full.get("final_error_message").cloned().unwrap_or(Value::Null),
                        "stop_reason": full.get("stop_reason").cloned().unwrap_or(Value::Null),
                        "exit_code": full.get("exit_code").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect();
            let err = json!({"session_id": session_id, "session_status": doc.session_status, "generated_at": end, "failed_operations": failures});
            written.push(fsx::write_atomic(&self.dir, &error_name, &to_json(&err))?);
        } else {
            self.remove_plain_and_gz(&error_name);
        }
        Ok((doc, written))
    }

    /// The operation records of a session that can still be read.
    pub fn operations_of(&self, doc: &SessionDoc) -> Vec<OperationRecord> {
        doc.operations
            .iter()
            .filter(|o| check_id("operation_id", &o.operation_id).is_ok())
            .filter_map(|o| {
                self.read_doc(&format!("retry_operation_{}.json", o.operation_id))
                    .ok()
                    .flatten()
            })
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Every session in the directory, newest first.
    pub fn list(&self) -> Result<Vec<SessionDoc>, StoreError> {
        let mut ids: Vec<String> = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| FsError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let base = name.strip_suffix(".gz").unwrap_or(&name);
            if let Some(id) = base
                .strip_prefix("retry_session_")
                .and_then(|r| r.strip_suffix(".json"))
                && !id.starts_with("error_")
                && !ids.iter().any(|i| i == id)
            {
                ids.push(id.to_string());
            }
        }
        let mut docs: Vec<SessionDoc> = ids
            .iter()
            .filter_map(|id| self.load_session(id).ok())
            .collect();
        docs.sort_by(|a, b| b.session_start.cmp(&a.session_start));
        Ok(docs)
    }

    /// Removes one session and every file of it.
    pub fn remove_session(&self, session_id: &str) -> Result<Vec<String>, StoreError> {
        check_id("session_id", session_id)?;
        let doc = self.load_session(session_id)?;
        let lock = self.lock(session_id)?;
        let mut names = vec![
            format!("retry_session_{session_id}.json"),
            format!("retry_performance_{session_id}.json"),
            format!("retry_session_error_{session_id}.json"),
        ];
        for o in &doc.operations {
            if check_id("operation_id", &o.operation_id).is_err() {
                continue;
            }
            names.push(format!("retry_operation_{}.json", o.operation_id));
            let prefix = format!("attempt_{}_", o.operation_id);
            if let Ok(entries) = std::fs::read_dir(&self.dir) {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(&prefix) {
                        names.push(n.strip_suffix(".gz").unwrap_or(&n).to_string());
                    }
                }
            }
        }
        let mut removed = Vec::new();
        for n in names {
            for candidate in [n.clone(), format!("{n}.gz")] {
                if self
                    .remove_ours(&self.dir.join(&candidate))
                    .unwrap_or(false)
                {
                    removed.push(candidate);
                }
            }
        }
        drop(lock);
        let _ = self.remove_ours(&self.dir.join(format!("retry_session_{session_id}.lock")));
        Ok(removed)
    }

    /// Retention: finalized sessions older than `retention_days`, and beyond the newest
    /// `max_sessions`, are removed. Open (running) sessions and files not ours are never touched.
    pub fn cleanup(
        &self,
        retention_days: u32,
        max_sessions: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = now - chrono::Duration::days(i64::from(retention_days));
        let mut removed = Vec::new();
        let mut kept = 0u32;
        for doc in self.list()? {
            if doc.session_status == "running" {
                continue;
            }
            let ended = doc
                .session_end
                .as_deref()
                .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
                .map(|d| d.with_timezone(&Utc));
            let too_old = ended.is_some_and(|e| e < cutoff);
            if too_old || kept >= max_sessions {
                removed.extend(self.remove_session(&doc.session_id)?);
            } else {
                kept += 1;
            }
        }
        Ok(removed)
    }

    /// Gzips every file of finalized sessions, and any other record above `threshold` bytes;
    /// with `only`, just that session's files. Open sessions' documents stay plain (they are
    /// still rewritten).
    pub fn compress(&self, threshold: u64, only: Option<&str>) -> Result<Vec<String>, StoreError> {
        let sessions = match only {
            Some(id) => vec![self.load_session(id)?],
            None => self.list()?,
        };
        let mut done = Vec::new();
        for doc in &sessions {
            let finished = doc.session_status != "running";
            let mut names = vec![
                format!("retry_performance_{}.json", doc.session_id),
                format!("retry_session_error_{}.json", doc.session_id),
            ];
            if finished {
                names.push(format!("retry_session_{}.json", doc.session_id));
            }
            for o in &doc.operations {
                names.push(format!("retry_operation_{}.json", o.operation_id));
            }
            let attempt_prefixes: Vec<String> = doc
                .operations
                .iter()
                .map(|o| format!("attempt_{}_", o.operation_id))
                .collect();
            if let Ok(entries) = std::fs::read_dir(&self.dir) {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.ends_with(".json") && attempt_prefixes.iter().any(|p| n.starts_with(p)) {
                        names.push(n);
                    }
                }
            }
            for n in names {
                let path = self.dir.join(&n);
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
                    continue;
                }
                if finished || meta.len() > threshold {
                    self.gzip(&n)?;
                    done.push(n);
                }
            }
        }
        // One flush for the whole batch, and only then are the originals removed: a crash
        // leaves a plain copy or a durable compressed one, never neither.
        if !done.is_empty() {
            fsx::sync_dir_fs(&self.dir)?;
        }
        for n in &done {
            let _ = self.remove_ours(&self.dir.join(n));
        }
        Ok(done.into_iter().map(|n| format!("{n}.gz")).collect())
    }

    fn gzip(&self, name: &str) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        let bytes = fsx::read_private(&path, MAX_DOC_BYTES)?;
        let io = |e| FsError::Io {
            path: path.clone(),
            source: e,
        };
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).map_err(io)?;
        let gz = enc.finish().map_err(io)?;
        fsx::write_renamed(&self.dir, &format!("{name}.gz"), &gz, false)?;
        Ok(())
    }
}

/// Seconds between two RFC 3339 times (0 when either is unreadable or the order is reversed).
fn span(start: &str, end: &str) -> f64 {
    match (
        DateTime::parse_from_rfc3339(start),
        DateTime::parse_from_rfc3339(end),
    ) {
        (Ok(s), Ok(e)) => ((e - s).num_milliseconds().max(0) as f64) / 1000.0,
        _ => 0.0,
    }
}

/// The operation document's and session document's schemas, as `schemas/` holds them.
pub fn document_schemas() -> Vec<(&'static str, Value)> {
    let gen_for = |s: schemars::Schema| s.to_value();
    vec![
        ("operation", gen_for(schemars::schema_for!(OperationRecord))),
        ("session", gen_for(schemars::schema_for!(SessionDoc))),
        (
            "attempt",
            gen_for(schemars::schema_for!(super::AttemptRecord)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_record_schemas_match_the_types() {
        for (name, schema) in document_schemas() {
            let path = format!("{}/schemas/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
            let committed: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(
                committed, schema,
                "{path} is stale: run `retryx schema --document {name} > {path}`"
            );
        }
    }

    #[test]
    fn ids_that_could_escape_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "a\\0b", "x y"] {
            assert!(check_id("session_id", bad).is_err(), "{bad}");
        }
        check_id("session_id", "retry_1640995200_123456").unwrap();
    }
}
