//! Writing and reading the records on disk. Layout in the artifacts directory (0700, files 0600,
//! every write through `fsx`: temp + fsync + rename):
//!
//! ```text
//! retry_session_<sid>.json                 the session (seed "Session Statistics" + operation list + alerts)
//! retry_session_<sid>.lock                 serialises updates of the session document
//! retry_session_<sid>/operation_<oid>.json one per operation (seed "Operation Details", attempts included)
//! attempt_<oid>_<n>.json                   one per attempt, when log_individual_attempts
//! retry_performance_<sid>.json             written by finalize
//! retry_session_error_<sid>.json           written by finalize when the session ended in failure; by
//!                                          close_on_error with the whole session, which it then removes
//! retry_session_<sid>.records.json.gz      a finished session's operation and attempt files, packed by compress
//! ```
//!
//! Each operation writes its own file and adds its counts to the session document, both under
//! the session lock (so cleanup, which takes that lock, never races a writer): O(1) per operation however long the
//! session. Finalize reads the operation files once (linear) and rewrites the session document.
//! This module decides nothing about policy and never sends anything.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alerts::{self, Alert};
use super::stats::{self, Distribution, FinalStatistics, OperationSummary, StatsAcc};
use super::{AttemptRecord, OperationRecord, timestamp};
use crate::config::notify::AlertThresholds;
use crate::sys::safe_fs::{self, FsError, LockGuard};

/// Where the module writes records when not told otherwise (seed "Log Files").
pub const DEFAULT_DIR: &str = "/tmp/ansible_retry";
/// Documents above this size are refused when read back (nothing we write comes near it).
const MAX_DOC_BYTES: u64 = 1 << 30;
/// Left-over temp files older than this are removed by cleanup (a writer killed mid-write).
const STALE_TEMP_SECS: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: not a valid record: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: cannot decompress: {source}")]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "session id {0:?} is not usable: expected 1-128 characters from A-Z a-z 0-9 _ -, not starting with 'error_' (e.g. retry_1640995200_123456)"
    )]
    BadSessionId(String),
    #[error("{path}: holds {got:?} operations/attempts, {want:?} were packed")]
    PackMismatch {
        path: PathBuf,
        want: (usize, usize),
        got: (usize, usize),
    },
    #[error("no session {id} in {dir}")]
    NoSuchSession { id: String, dir: PathBuf },
}

/// A session id names files: it must be a plain name. Rejected rather than rewritten, so two
/// different ids never end up in the same file. `error_` would collide with the error record.
pub fn check_session_id(id: &str) -> Result<(), RecordError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !id.starts_with("error_");
    if ok {
        Ok(())
    } else {
        Err(RecordError::BadSessionId(id.to_string()))
    }
}

/// The operation document: the seed's "Operation Details" plus the operation's own alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OperationDocument {
    #[serde(flatten)]
    pub record: OperationRecord,
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// `attempt_<operation_id>_<n>.json`: one attempt with the names that place it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptDocument {
    pub operation_id: String,
    pub operation_name: String,
    pub session_id: String,
    #[serde(flatten)]
    pub attempt: AttemptRecord,
}

/// `retry_session_<id>.json`: the seed's "Session Statistics" plus the operation list, alerts
/// and the thresholds the session's operations were run with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionDocument {
    pub session_id: String,
    pub session_start: String,
    /// The end of the last operation (null while open).
    pub session_end: Option<String>,
    /// Seconds from session_start to session_end (or to the last operation's end while open).
    pub session_duration: f64,
    /// `open` while operations are added; `completed` or `failed` once finalized.
    pub session_status: String,
    pub final_statistics: FinalStatistics,
    /// Every operation, by start time (filled by finalize; empty while open).
    pub operations: Vec<OperationSummary>,
    /// Session alerts, then the operations' own (filled by finalize).
    pub alerts: Vec<Alert>,
    /// The `monitoring.alerts` the latest operation was run with: finalize uses them when not given others.
    pub thresholds: Option<AlertThresholds>,
    pub last_update: String,
    pub finalized_at: Option<String>,
    /// The end of the latest operation seen (while open).
    pub last_operation_end: String,
    /// How many times the session was closed (a finalize that found it already closed and
    /// unchanged does not count: see `app::session`).
    #[serde(default)]
    pub finalize_count: u32,
}

/// `retry_performance_<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PerformanceDocument {
    pub session_id: String,
    pub generated_at: String,
    pub session_duration: f64,
    pub operations: u64,
    pub attempts: u64,
    pub operations_per_minute: f64,
    /// Seconds per operation, waits included.
    pub execution_time: Distribution,
    /// Seconds per attempt.
    pub attempt_time: Distribution,
    /// Seconds waited between attempts, all operations.
    pub total_wait_time: f64,
    pub error_distribution: BTreeMap<String, u64>,
    pub by_operation: BTreeMap<String, OperationGroup>,
}

/// Per operation name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OperationGroup {
    pub count: u64,
    pub successful: u64,
    pub failed: u64,
    pub average_execution_time: f64,
    pub average_retry_count: f64,
}

/// `retry_session_error_<id>.json`: what went wrong in a failed session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDocument {
    pub session_id: String,
    pub session_status: String,
    pub generated_at: String,
    /// Why the session counts as failed.
    pub reason: String,
    pub failed_operations: Vec<FailedOperation>,
    pub error_distribution: BTreeMap<String, u64>,
    /// "cleanup retry session on error" only: the error the play reported (the failed task,
    /// its class and message), when the handler knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// "cleanup retry session on error" only: the closed session document, kept here because
    /// every other file of the session is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionDocument>,
    /// "cleanup retry session on error" only: every operation with its attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<OperationDocument>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailedOperation {
    pub operation_id: String,
    pub operation_name: String,
    pub status: super::OperationStatus,
    pub attempt_count: u32,
    pub final_error_type: Option<crate::classify::ErrorClass>,
    pub final_error_message: Option<String>,
    pub stop_reason: String,
    pub end_time: String,
}

/// A finished session's operation and attempt documents in one gzip file (compress).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordsPack {
    pub session_id: String,
    pub operations: Vec<OperationDocument>,
    pub attempts: Vec<AttemptDocument>,
}

/// What writing one operation produced.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub alerts: Vec<Alert>,
    pub session_statistics: Option<FinalStatistics>,
}

/// The artifacts directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn json_err(path: &Path) -> impl FnOnce(serde_json::Error) -> RecordError + '_ {
    move |source| RecordError::Json {
        path: path.to_path_buf(),
        source,
    }
}

fn to_bytes<T: Serialize>(v: &T, path: &Path) -> Result<Vec<u8>, RecordError> {
    let mut b = serde_json::to_vec_pretty(v).map_err(json_err(path))?;
    b.push(b'\n');
    Ok(b)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Whether the gzip file at `path`, read back from the disk, gives `original` byte for byte;
/// why not otherwise.
fn gunzips_to(path: &Path, original: &[u8]) -> Result<(), String> {
    let gz = safe_fs::read_private(path, MAX_DOC_BYTES)
        .map_err(|e| format!("the gzip could not be read back ({e})"))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(original.len() as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the gzip read back does not decompress ({e})"))?;
    if out != original {
        return Err("the gzip read back differs".into());
    }
    Ok(())
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// Opens the directory for writing: created 0700, refused when a symlink or not ours.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, RecordError> {
        let s = Store::new(dir);
        safe_fs::ensure_private_dir(&s.dir)?;
        Ok(s)
    }

    pub fn session_file(&self, sid: &str) -> PathBuf {
        self.dir.join(format!("retry_session_{sid}.json"))
    }
    fn lock_file(&self, sid: &str) -> PathBuf {
        self.dir.join(format!("retry_session_{sid}.lock"))
    }
    pub fn session_dir(&self, sid: &str) -> PathBuf {
        self.dir.join(format!("retry_session_{sid}"))
    }
    /// Whether the session's directory is a real directory (not a symlink to one).
    fn is_real_session_dir(&self, sid: &str) -> bool {
        std::fs::symlink_metadata(self.session_dir(sid)).is_ok_and(|m| m.file_type().is_dir())
    }
    fn pack_name(sid: &str) -> String {
        format!("retry_session_{sid}.records.json.gz")
    }

    /// The session lock. A lock file can be removed by cleanup while we wait on it; the lock is
    /// ours only if the path still names the inode we locked.
    fn lock(&self, sid: &str) -> Result<LockGuard, RecordError> {
        let path = self.lock_file(sid);
        loop {
            let g = LockGuard::exclusive(&path)?;
            let held = g.file().metadata().map_err(|e| FsError::Io {
                path: path.clone(),
                source: e,
            })?;
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(g),
                _ => continue,
            }
        }
    }

    /// Reads a JSON document, or its `.gz` twin, transparently.
    pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
        let gz = PathBuf::from(format!("{}.gz", path.display()));
        let (p, bytes) = match safe_fs::read_private(path, MAX_DOC_BYTES) {
            Ok(b) => (path.to_path_buf(), b),
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                (gz.clone(), safe_fs::read_private(&gz, MAX_DOC_BYTES)?)
            }
            Err(e) => return Err(e.into()),
        };
        Self::parse_doc(&bytes, &p)
    }

    /// A document's bytes (gzipped or not) as `T`, with the reader's limits: what every reader
    /// of the records (`session show`, finalize, compress) goes through, and what compress
    /// checks its pack with before anything is removed.
    fn parse_doc<T: serde::de::DeserializeOwned>(
        bytes: &[u8],
        path: &Path,
    ) -> Result<T, RecordError> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .take(MAX_DOC_BYTES)
                .read_to_end(&mut out)
                .map_err(|source| RecordError::Gzip {
                    path: path.to_path_buf(),
                    source,
                })?;
            serde_json::from_slice(&out).map_err(json_err(path))
        } else {
            serde_json::from_slice(bytes).map_err(json_err(path))
        }
    }

    /// A plain (not gzipped) record file's bytes, checked to be one JSON value.
    fn checked_json(p: &Path) -> Result<Vec<u8>, RecordError> {
        let bytes = safe_fs::read_private(p, MAX_DOC_BYTES)?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(json_err(p))?;
        Ok(bytes)
    }

    /// Writes one finished operation: its document, its attempts when asked, and its counts
    /// into the session document (under the session lock).
    pub fn record_operation(
        &self,
        record: &OperationRecord,
        log_attempts: bool,
        thresholds: Option<&AlertThresholds>,
        now: DateTime<Utc>,
    ) -> Result<Written, RecordError> {
        let sid = &record.session_id;
        check_session_id(sid)?;
        safe_fs::ensure_private_dir(&self.dir)?;
        // The operation file is written under the session lock: cleanup takes the same lock
        // before removing a session, so it can never remove (or miss) an operation mid-write.
        let _lock = self.lock(sid)?;
        let sdir = self.session_dir(sid);
        safe_fs::ensure_private_dir(&sdir)?;
        let op_alerts = thresholds
            .map(|t| alerts::operation_alerts(record, t))
            .unwrap_or_default();
        let mut written = Written::default();
        // The operation id is built from a sanitised name plus a uuid part; sanitise again
        // anyway so a hand-made record can never name a path outside the directory.
        let oid = super::sanitize_file_part(&record.operation_id);
        let name = format!("operation_{oid}.json");
        let doc = OperationDocument {
            record: record.clone(),
            alerts: op_alerts.clone(),
        };
        let path = sdir.join(&name);
        written.files.push(safe_fs::write_atomic(
            &sdir,
            &name,
            &to_bytes(&doc, &path)?,
        )?);
        if log_attempts {
            for a in &record.attempts {
                let name = format!("attempt_{oid}_{}.json", a.attempt_number);
                let d = AttemptDocument {
                    operation_id: record.operation_id.clone(),
                    operation_name: record.operation_name.clone(),
                    session_id: sid.clone(),
                    attempt: a.clone(),
                };
                let bytes = to_bytes(&d, &self.dir.join(&name))?;
                written
                    .files
                    .push(safe_fs::write_atomic(&self.dir, &name, &bytes)?);
            }
        }
        let spath = self.session_file(sid);
        let mut session = match Self::read_json::<SessionDocument>(&spath) {
            Ok(s) => s,
            Err(RecordError::Fs(FsError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                SessionDocument {
                    session_id: sid.clone(),
                    session_start: record.start_time.clone(),
                    session_end: None,
                    session_duration: 0.0,
                    session_status: "open".into(),
                    final_statistics: FinalStatistics::default(),
                    operations: vec![],
                    alerts: vec![],
                    thresholds: None,
                    last_update: String::new(),
                    finalized_at: None,
                    last_operation_end: record.end_time.clone(),
                    finalize_count: 0,
                }
            }
            Err(e) => return Err(e),
        };
        let mut acc = StatsAcc::from_statistics(&session.final_statistics);
        acc.add(record.status, record.attempt_count, record.execution_time);
        // RFC 3339 UTC strings of one format order as the times do.
        if record.start_time < session.session_start {
            session.session_start = record.start_time.clone();
        }
        if record.end_time > session.last_operation_end {
            session.last_operation_end = record.end_time.clone();
        }
        // A finished session that gets another operation is open again; finalize recounts all.
        session.session_status = "open".into();
        // An open session lists its operations as they come (finalize lists them again, sorted,
        // from the operation files).
        session
            .operations
            .retain(|o| o.operation_id != record.operation_id);
        session
            .operations
            .push(OperationSummary::of(record, op_alerts.len() as u32));
        session.alerts.clear();
        session.session_end = None;
        session.finalized_at = None;
        session.session_duration =
            stats::seconds_between(&session.session_start, &session.last_operation_end);
        session.final_statistics = acc.finish(session.session_duration);
        if let Some(t) = thresholds {
            session.thresholds = Some(t.clone());
        }
        session.last_update = timestamp(now);
        let bytes = to_bytes(&session, &spath)?;
        written.files.push(safe_fs::write_atomic(
            &self.dir,
            &format!("retry_session_{sid}.json"),
            &bytes,
        )?);
        written.session_statistics = Some(session.final_statistics);
        written.alerts = op_alerts;
        Ok(written)
    }

    /// Every operation document of a session: its directory, then its pack. Calls `f` on each
    /// (streaming: finalize never holds all attempts in memory).
    pub fn for_each_operation(
        &self,
        sid: &str,
        mut f: impl FnMut(OperationDocument),
    ) -> Result<(), RecordError> {
        // An operation can be both in the pack and in the directory when compress was killed
        // between writing the pack and removing the originals: count it once.
        let mut seen = std::collections::HashSet::new();
        let mut f = |d: OperationDocument| {
            if seen.insert(d.record.operation_id.clone()) {
                f(d);
            }
        };
        let sdir = self.session_dir(sid);
        // Never read through a symlink planted where the session's directory goes.
        let listed = if self.is_real_session_dir(sid) {
            std::fs::read_dir(&sdir)
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        };
        match listed {
            Ok(entries) => {
                for e in entries.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    let Some(stem) = name.strip_prefix("operation_") else {
                        continue;
                    };
                    if !(stem.ends_with(".json") || stem.ends_with(".json.gz")) {
                        continue;
                    }
                    f(Self::read_json(&e.path())?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(FsError::Io {
                    path: sdir,
                    source: e,
                }
                .into());
            }
        }
        let pack = self.dir.join(Self::pack_name(sid));
        if pack.exists() {
            let bytes = safe_fs::read_private(&pack, MAX_DOC_BYTES)?;
            Self::stream_pack(&bytes, &pack, &mut f, &mut drop)?;
        }
        Ok(())
    }

    /// How every reader reads a pack (`session show`, finalize, compress checking its own):
    /// gunzipped and parsed as a stream, one document at a time handed to `on_op` or
    /// `on_attempt` (memory stays at one document however big the session), with
    /// serde_json's limits. Returns how many of each it held.
    fn stream_pack(
        bytes: &[u8],
        path: &Path,
        on_op: &mut dyn FnMut(OperationDocument),
        on_attempt: &mut dyn FnMut(AttemptDocument),
    ) -> Result<(usize, usize), RecordError> {
        use serde::de::DeserializeSeed;
        let gz = bytes.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(bytes).take(MAX_DOC_BYTES))
        } else {
            Box::new(bytes)
        };
        let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
        let counts = pack_stream::Pack { on_op, on_attempt }
            .deserialize(&mut de)
            .and_then(|c| de.end().map(|()| c));
        counts.map_err(|source| {
            if source.is_io() {
                RecordError::Gzip {
                    path: path.to_path_buf(),
                    source: source.into(),
                }
            } else {
                json_err(path)(source)
            }
        })
    }

    pub fn read_session(&self, sid: &str) -> Result<SessionDocument, RecordError> {
        check_session_id(sid)?;
        let path = self.session_file(sid);
        match Self::read_json(&path) {
            Err(RecordError::Fs(FsError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(RecordError::NoSuchSession {
                    id: sid.into(),
                    dir: self.dir.clone(),
                })
            }
            other => other,
        }
    }

    /// Closes a session: statistics from every operation, end and duration, status, alerts;
    /// writes the session, performance and (when failed) error records. `force_failed` is the
    /// role's "cleanup retry session on error". Linear in the session's operations.
    pub fn finalize(
        &self,
        sid: &str,
        thresholds: Option<&AlertThresholds>,
        force_failed: bool,
        now: DateTime<Utc>,
    ) -> Result<(SessionDocument, Vec<PathBuf>), RecordError> {
        check_session_id(sid)?;
        safe_fs::ensure_private_dir(&self.dir)?;
        let lock = self.lock(sid)?;
        let done = self.finalize_locked(sid, thresholds, force_failed, now);
        if matches!(done, Err(RecordError::NoSuchSession { .. })) {
            // Taking the lock made its file: leave no trace of a session that is not there.
            let _ = std::fs::remove_file(self.lock_file(sid));
        }
        drop(lock);
        done
    }

    /// `retry_session_error_<sid>.json` (or its `.gz`), None when there is none.
    pub fn read_error_record(&self, sid: &str) -> Result<Option<ErrorDocument>, RecordError> {
        check_session_id(sid)?;
        match Self::read_json(&self.dir.join(format!("retry_session_error_{sid}.json"))) {
            Ok(d) => Ok(Some(d)),
            Err(RecordError::Fs(FsError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `finalize` with the session lock already held. Long (~160 lines): everything under one
    /// session lock, in the order the records depend on each other (statistics, then the
    /// documents that quote them).
    fn finalize_locked(
        &self,
        sid: &str,
        thresholds: Option<&AlertThresholds>,
        force_failed: bool,
        now: DateTime<Utc>,
    ) -> Result<(SessionDocument, Vec<PathBuf>), RecordError> {
        let previous = match self.read_session(sid) {
            Ok(s) => Some(s),
            Err(RecordError::NoSuchSession { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut acc = StatsAcc::default();
        let mut summaries = Vec::new();
        let mut op_alerts = Vec::new();
        let mut exec_times = Vec::new();
        let mut attempt_times = Vec::new();
        let mut wait = 0.0;
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut groups: BTreeMap<String, (OperationGroup, f64, u64)> = BTreeMap::new();
        let mut failed_ops = Vec::new();
        self.for_each_operation(sid, |d| {
            let r = &d.record;
            acc.add(r.status, r.attempt_count, r.execution_time);
            exec_times.push(r.execution_time);
            for a in &r.attempts {
                attempt_times.push(a.execution_time);
                wait += a.delay_before_retry;
                if let Some(c) = a.error_type {
                    *errors.entry(c.as_str().to_string()).or_default() += 1;
                }
            }
            let g = groups.entry(r.operation_name.clone()).or_default();
            g.0.count += 1;
            if stats::is_success(r.status) {
                g.0.successful += 1;
            } else {
                g.0.failed += 1;
                failed_ops.push(FailedOperation {
                    operation_id: r.operation_id.clone(),
                    operation_name: r.operation_name.clone(),
                    status: r.status,
                    attempt_count: r.attempt_count,
                    final_error_type: r.final_error_type,
                    final_error_message: r.final_error_message.clone(),
                    stop_reason: r.stop_reason.clone(),
                    end_time: r.end_time.clone(),
                });
            }
            g.1 += r.execution_time;
            g.2 += u64::from(r.attempt_count.saturating_sub(1));
            summaries.push(OperationSummary::of(r, d.alerts.len() as u32));
            op_alerts.extend(d.alerts);
        })?;
        if summaries.is_empty() && previous.is_none() {
            return Err(RecordError::NoSuchSession {
                id: sid.into(),
                dir: self.dir.clone(),
            });
        }
        summaries.sort_by(|a, b| {
            a.start_time
                .cmp(&b.start_time)
                .then(a.operation_id.cmp(&b.operation_id))
        });
        let start = summaries
            .iter()
            .map(|s| s.start_time.as_str())
            .min()
            .map(String::from)
            .or_else(|| previous.as_ref().map(|p| p.session_start.clone()))
            .unwrap_or_else(|| timestamp(now));
        let end = summaries
            .iter()
            .map(|s| s.end_time.as_str())
            .max()
            .map(String::from)
            .unwrap_or_else(|| start.clone());
        let duration = stats::seconds_between(&start, &end);
        let statistics = acc.finish(duration);
        let thresholds = thresholds
            .cloned()
            .or_else(|| previous.as_ref().and_then(|p| p.thresholds.clone()));
        let mut all_alerts = thresholds
            .as_ref()
            .map(|t| alerts::session_alerts(sid, &statistics, t))
            .unwrap_or_default();
        all_alerts.extend(op_alerts);
        let failed = force_failed || statistics.failed_operations > 0;
        let session = SessionDocument {
            session_id: sid.into(),
            session_start: start,
            session_end: Some(end.clone()),
            session_duration: duration,
            session_status: if failed { "failed" } else { "completed" }.into(),
            final_statistics: statistics.clone(),
            operations: summaries,
            alerts: all_alerts,
            thresholds,
            last_update: timestamp(now),
            finalized_at: Some(timestamp(now)),
            last_operation_end: end,
            finalize_count: previous.as_ref().map_or(0, |p| p.finalize_count) + 1,
        };
        let mut files = Vec::new();
        let perf = PerformanceDocument {
            session_id: sid.into(),
            generated_at: timestamp(now),
            session_duration: duration,
            operations: statistics.total_operations,
            attempts: attempt_times.len() as u64,
            operations_per_minute: statistics.operations_per_minute,
            execution_time: stats::distribution(exec_times),
            attempt_time: stats::distribution(attempt_times),
            total_wait_time: (wait * 1000.0).round() / 1000.0,
            error_distribution: errors.clone(),
            by_operation: groups
                .into_iter()
                .map(|(k, (mut g, t, r))| {
                    g.average_execution_time = (t / g.count as f64 * 1000.0).round() / 1000.0;
                    g.average_retry_count = (r as f64 / g.count as f64 * 100.0).round() / 100.0;
                    (k, g)
                })
                .collect(),
        };
        let name = format!("retry_performance_{sid}.json");
        let bytes = to_bytes(&perf, &self.dir.join(&name))?;
        files.push(safe_fs::write_atomic(&self.dir, &name, &bytes)?);
        let ename = format!("retry_session_error_{sid}.json");
        // The whole picture "cleanup retry session on error" kept (it holds the session) is
        // the only record left of that session: a later finalize of the same id neither
        // replaces nor removes it.
        let whole_picture = !force_failed
            && self
                .read_error_record(sid)
                .ok()
                .flatten()
                .is_some_and(|d| d.session.is_some());
        if failed && !whole_picture {
            let reason = if force_failed {
                "closed by 'cleanup retry session on error'".to_string()
            } else {
                format!(
                    "{} of {} operation(s) did not succeed",
                    statistics.failed_operations, statistics.total_operations
                )
            };
            let e = ErrorDocument {
                session_id: sid.into(),
                session_status: "failed".into(),
                generated_at: timestamp(now),
                reason,
                failed_operations: failed_ops,
                error_distribution: errors,
                error: None,
                session: None,
                operations: Vec::new(),
            };
            let bytes = to_bytes(&e, &self.dir.join(&ename))?;
            files.push(safe_fs::write_atomic(&self.dir, &ename, &bytes)?);
        } else if !failed && !whole_picture {
            // A session re-finalized after a later success must not keep a stale error record.
            let _ = std::fs::remove_file(self.dir.join(&ename));
        }
        let spath = self.session_file(sid);
        let bytes = to_bytes(&session, &spath)?;
        files.insert(
            0,
            safe_fs::write_atomic(&self.dir, &format!("retry_session_{sid}.json"), &bytes)?,
        );
        Ok((session, files))
    }

    /// "cleanup retry session on error": closes the session as failed, folds the whole picture
    /// (the session document, every operation with its attempts, the play's error) into
    /// `retry_session_error_<sid>.json`, then removes every other file of the session. The
    /// error record is written (temp + fsync + rename) before anything is removed, all under
    /// the session lock, so a kill at any point loses nothing. Returns the error record, its
    /// path and how many files went.
    pub fn close_on_error(
        &self,
        sid: &str,
        thresholds: Option<&AlertThresholds>,
        error: Option<Value>,
        now: DateTime<Utc>,
    ) -> Result<(ErrorDocument, PathBuf, u64), RecordError> {
        check_session_id(sid)?;
        safe_fs::ensure_private_dir(&self.dir)?;
        let lock = self.lock(sid)?;
        let (session, _) = match self.finalize_locked(sid, thresholds, true, now) {
            Err(e @ RecordError::NoSuchSession { .. }) => {
                // Taking the lock made its file: leave no trace of a session that is not there.
                let _ = std::fs::remove_file(self.lock_file(sid));
                return Err(e);
            }
            other => other?,
        };
        let ename = format!("retry_session_error_{sid}.json");
        let epath = self.dir.join(&ename);
        let mut doc: ErrorDocument = Self::read_json(&epath)?;
        let ops = self.operations_in_order(sid)?;
        doc.error = error;
        doc.operations = ops;
        doc.session = Some(session.clone());
        let path = safe_fs::write_atomic(&self.dir, &ename, &to_bytes(&doc, &epath)?)?;
        let (removed, _) = self.remove_session(sid, &session, true)?;
        // The lock file goes last, while we still hold it (see `lock`).
        let _ = std::fs::remove_file(self.lock_file(sid));
        drop(lock);
        Ok((doc, path, removed))
    }

    /// Session ids present in the directory, newest activity first.
    pub fn session_ids(&self) -> Result<Vec<String>, RecordError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| FsError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        let mut ids = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(sid) = session_id_of(&name) {
                ids.push(sid.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The attempt documents of a session's operations (those that exist).
    fn attempt_files(&self, oids: &[String]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        let wanted: std::collections::HashSet<String> =
            oids.iter().map(|o| super::sanitize_file_part(o)).collect();
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(oid) = attempt_operation_of(&name)
                && wanted.contains(oid)
            {
                out.push(e.path());
            }
        }
        out.sort();
        out
    }

    /// A pack's bytes read as the readers read them, holding `want` (operations, attempts).
    fn check_pack(bytes: &[u8], path: &Path, want: (usize, usize)) -> Result<(), RecordError> {
        let got = Self::stream_pack(bytes, path, &mut drop, &mut drop)?;
        if got != want {
            return Err(RecordError::PackMismatch {
                path: path.to_path_buf(),
                want,
                got,
            });
        }
        Ok(())
    }

    /// Whether someone holds the session lock right now (a writer or finalize at work).
    fn busy(&self, sid: &str) -> Result<Option<LockGuard>, RecordError> {
        let path = self.lock_file(sid);
        // As in `lock`: a lock taken on a file another cleanup unlinked meanwhile is no lock
        // (a writer may hold the new one); look again.
        loop {
            let Some(g) = LockGuard::try_exclusive(&path)? else {
                return Ok(None);
            };
            let held = g.file().metadata().map_err(|e| FsError::Io {
                path: path.clone(),
                source: e,
            })?;
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(Some(g)),
                _ => continue,
            }
        }
    }

    /// gzip: every finished session's operation and attempt files packed into one
    /// `retry_session_<sid>.records.json.gz`, and any other file of ours above `threshold`
    /// bytes gzipped in place. Session documents stay plain: they are the entry point the
    /// handlers, the notifier and AAP read. Open or busy sessions are left alone.
    /// Long (~185 lines): pack, read back, fsync, then unlink, under the session lock; the
    /// order is what makes a kill at any point lose nothing.
    pub fn compress(
        &self,
        only: Option<&str>,
        threshold: u64,
    ) -> Result<CompressReport, RecordError> {
        safe_fs::ensure_private_dir(&self.dir)?;
        let mut report = CompressReport::default();
        let ids = match only {
            Some(s) => {
                check_session_id(s)?;
                vec![s.to_string()]
            }
            None => self.session_ids()?,
        };
        for sid in ids {
            let Some(_lock) = self.busy(&sid)? else {
                report.skipped.push(format!("{sid}: busy"));
                continue;
            };
            let session = match self.read_session(&sid) {
                Ok(s) => s,
                Err(e) => {
                    report.skipped.push(format!("{sid}: {e}"));
                    continue;
                }
            };
            if session.session_status == "open" {
                report.skipped.push(format!("{sid}: open"));
                continue;
            }
            let oids: Vec<String> = session
                .operations
                .iter()
                .map(|o| o.operation_id.clone())
                .collect();
            let attempt_paths = self.attempt_files(&oids);
            let sdir = self.session_dir(&sid);
            let mut op_paths = Vec::new();
            if let Ok(entries) = std::fs::read_dir(&sdir) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("operation_")
                        && e.file_name().to_string_lossy().ends_with(".json")
                    {
                        op_paths.push(e.path());
                    }
                }
            }
            if op_paths.is_empty() && attempt_paths.is_empty() {
                continue;
            }
            let pack_name = Self::pack_name(&sid);
            let pack_path = self.dir.join(&pack_name);
            // Streamed: each file's bytes go straight into the gzip stream once checked to be
            // one JSON value, so memory stays at the compressed size plus the few files in
            // flight between the reader threads and this one (10,000 operations: 12 MiB).
            let mut before = 0u64;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let io = |e: std::io::Error| RecordError::Gzip {
                path: pack_path.clone(),
                source: e,
            };
            write!(
                enc,
                "{{\"session_id\":{},\"operations\":[",
                Value::from(sid.as_str())
            )
            .map_err(io)?;
            let mut first = true;
            // A pack left by an earlier compress (the session was reopened since) is carried
            // over document by document: its operations straight into the new stream, its
            // attempts held (serialised) until the new operations are in.
            let mut packed_ops = std::collections::HashSet::new();
            let mut packed_attempts = std::collections::HashSet::new();
            let mut old_attempts: Vec<u8> = Vec::new();
            let (mut put_err, mut held_err): (Option<std::io::Error>, Option<std::io::Error>) =
                (None, None);
            let old = if pack_path.exists() {
                let carried = safe_fs::read_private(&pack_path, MAX_DOC_BYTES)
                    .map_err(RecordError::from)
                    .and_then(|bytes| {
                        Self::stream_pack(
                            &bytes,
                            &pack_path,
                            &mut |op| {
                                packed_ops.insert(format!(
                                    "operation_{}.json",
                                    super::sanitize_file_part(&op.record.operation_id)
                                ));
                                let r = serde_json::to_vec(&op).map_err(std::io::Error::other);
                                if let Err(e) = r.and_then(|b| put_item(&mut enc, &mut first, &b)) {
                                    put_err.get_or_insert(e);
                                }
                            },
                            &mut |a| {
                                packed_attempts.insert(format!(
                                    "attempt_{}_{}.json",
                                    super::sanitize_file_part(&a.operation_id),
                                    a.attempt.attempt_number
                                ));
                                if !old_attempts.is_empty() {
                                    old_attempts.push(b',');
                                }
                                if let Err(e) = serde_json::to_writer(&mut old_attempts, &a) {
                                    held_err.get_or_insert(std::io::Error::other(e));
                                }
                            },
                        )
                    });
                match carried {
                    Ok(counts) => counts,
                    Err(e) => {
                        report.skipped.push(format!("{sid}: {e}"));
                        continue;
                    }
                }
            } else {
                (0, 0)
            };
            if let Some(e) = put_err.or(held_err) {
                return Err(io(e));
            }
            // Files already packed by a compress that was stopped before removing them are
            // skipped; the rest are read and checked on several threads (the cost is system
            // calls) and streamed in the order they come.
            let todo = not_packed(&op_paths, &packed_ops);
            let todo_ops = todo.len();
            safe_fs::for_each_loaded(&todo, Self::checked_json, |bytes| {
                before += bytes.len() as u64;
                put_item(&mut enc, &mut first, bytes.trim_ascii()).map_err(io)
            })?;
            enc.write_all(b"],\"attempts\":[").map_err(io)?;
            enc.write_all(&old_attempts).map_err(io)?;
            first = old_attempts.is_empty();
            drop(old_attempts);
            let todo = not_packed(&attempt_paths, &packed_attempts);
            let todo_attempts = todo.len();
            safe_fs::for_each_loaded(&todo, Self::checked_json, |bytes| {
                before += bytes.len() as u64;
                put_item(&mut enc, &mut first, bytes.trim_ascii()).map_err(io)
            })?;
            enc.write_all(b"]}").map_err(io)?;
            let gz = enc.finish().map_err(io)?;
            // The pack is read as every reader reads it (same parser, same limits, one document
            // at a time) before it replaces the old one; what reached the disk is then compared
            // with it. A pack `session show` could not read never costs the originals.
            let want = (old.0 + todo_ops, old.1 + todo_attempts);
            if let Err(e) = Self::check_pack(&gz, &pack_path, want) {
                report
                    .skipped
                    .push(format!("{sid}: pack not readable, nothing removed: {e}"));
                continue;
            }
            safe_fs::write_atomic(&self.dir, &pack_name, &gz)?;
            match safe_fs::read_private(&pack_path, MAX_DOC_BYTES) {
                Ok(back) if back == gz => {}
                Ok(_) => {
                    report
                        .skipped
                        .push(format!("{sid}: the pack read back differs, originals kept"));
                    continue;
                }
                Err(e) => {
                    report.skipped.push(format!(
                        "{sid}: the pack could not be read back ({e}), originals kept"
                    ));
                    continue;
                }
            }
            // Only once the pack is safely on disk, and readable, do the originals go.
            let originals: Vec<PathBuf> = op_paths.iter().chain(&attempt_paths).cloned().collect();
            safe_fs::remove_files(&originals);
            let _ = std::fs::remove_dir(&sdir);
            report.files.push(Compressed {
                file: pack_name,
                sources: (op_paths.len() + attempt_paths.len()) as u64,
                bytes_before: before,
                bytes_after: gz.len() as u64,
            });
        }
        // Single files above the threshold: performance and error records, and operation or
        // attempt files of sessions that were not packed (open ones excluded).
        let entries = std::fs::read_dir(&self.dir).map_err(|e| FsError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let compressible = name.ends_with(".json")
                && (name.starts_with("retry_performance_")
                    || name.starts_with("retry_session_error_")
                    || name.starts_with("attempt_"));
            if !compressible {
                continue;
            }
            if let Some(sid) = only {
                let of_session = name == format!("retry_performance_{sid}.json")
                    || name == format!("retry_session_error_{sid}.json");
                if !of_session {
                    continue;
                }
            }
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if !meta.is_file() || meta.len() <= threshold {
                continue;
            }
            let bytes = safe_fs::read_private(&e.path(), MAX_DOC_BYTES)?;
            let gz = gzip(&bytes);
            let gz_name = format!("{name}.gz");
            safe_fs::write_atomic(&self.dir, &gz_name, &gz)?;
            // As for packs: the original goes only once its gzip, read back from the disk,
            // gives the same bytes.
            if let Err(why) = gunzips_to(&self.dir.join(&gz_name), &bytes) {
                let _ = std::fs::remove_file(self.dir.join(&gz_name));
                report.skipped.push(format!("{name}: {why}, original kept"));
                continue;
            }
            let _ = std::fs::remove_file(e.path());
            report.files.push(Compressed {
                file: gz_name,
                sources: 1,
                bytes_before: meta.len(),
                bytes_after: gz.len() as u64,
            });
        }
        Ok(report)
    }

    /// Retention: finished sessions older than `retention_days` (by their end), then all but
    /// the newest `max_sessions` finished ones, go with every file of theirs; temp files left
    /// by a killed writer go after an hour. Orphans (attempt files no session refers to, and
    /// operation directories whose session document never got written: a writer killed
    /// half-way, or an older retryx that raced cleanup) go once older than the retention
    /// period, and never before an hour. Open or busy sessions, the guard state directory and
    /// files that do not carry our names are never touched.
    pub fn cleanup(
        &self,
        retention_days: u32,
        max_sessions: u32,
        now: DateTime<Utc>,
    ) -> Result<CleanupReport, RecordError> {
        safe_fs::ensure_private_dir(&self.dir)?;
        let mut report = CleanupReport::default();
        let mut finished: Vec<(String, String)> = Vec::new();
        for sid in self.session_ids()? {
            match self.read_session(&sid) {
                Ok(s) if s.session_status == "open" => report.kept_open.push(sid),
                Ok(s) => {
                    let end = s.finalized_at.or(s.session_end).unwrap_or(s.last_update);
                    finished.push((end, sid));
                }
                Err(e) => report.skipped.push(format!("{sid}: {e}")),
            }
        }
        finished.sort_by(|a, b| b.cmp(a));
        let cutoff = now - chrono::Duration::days(i64::from(retention_days));
        let cutoff = timestamp(cutoff);
        for (i, (end, sid)) in finished.iter().enumerate() {
            let too_old = end.as_str() < cutoff.as_str();
            let too_many = i >= max_sessions as usize;
            if !(too_old || too_many) {
                continue;
            }
            let Some(lock) = self.busy(sid)? else {
                report.skipped.push(format!("{sid}: busy"));
                continue;
            };
            // Recheck under the lock: a writer may have reopened it meanwhile.
            match self.read_session(sid) {
                Ok(s) if s.session_status != "open" => {
                    let (files, ops) = self.remove_session(sid, &s, false)?;
                    report.removed_files += files;
                    report.removed_operations += ops;
                    report.removed_sessions.push(sid.clone());
                }
                _ => report.kept_open.push(sid.clone()),
            }
            // The lock file goes last, while we still hold it (see `lock`).
            let _ = std::fs::remove_file(self.lock_file(sid));
            drop(lock);
        }
        report.removed_files += self.remove_stale_temps(now)?;
        let orphan_cutoff = (now.timestamp() - i64::from(retention_days) * 86_400)
            .min(now.timestamp() - STALE_TEMP_SECS);
        self.remove_orphans(orphan_cutoff, &mut report)?;
        report.removed_files += self.remove_old_error_records(retention_days, now);
        Ok(report)
    }

    /// Orphans older than `cutoff` (epoch seconds). Attempt files are listed before the
    /// references are gathered: a writer writes its operation file before its attempt files,
    /// both under the session lock, so an attempt file seen first has its reference seen after.
    fn remove_orphans(&self, cutoff: i64, report: &mut CleanupReport) -> Result<(), RecordError> {
        let old = |m: &std::fs::Metadata| m.mtime() < cutoff;
        let mut attempts = Vec::new();
        let mut sdirs = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| FsError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if let Some(oid) = attempt_operation_of(&name)
                && meta.is_file()
                && old(&meta)
            {
                attempts.push((oid.to_string(), e.path()));
            } else if let Some(sid) = name
                .strip_prefix("retry_session_")
                .filter(|sid| check_session_id(sid).is_ok())
                && meta.is_dir()
            {
                sdirs.push(sid.to_string());
            }
        }
        // Operation directories without a session document, untouched since the cutoff: the
        // directory itself too (an empty one, or one holding only temp files, has no operation
        // file to date it).
        let is_old = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| old(&m));
        let mut referenced = std::collections::HashSet::new();
        for sid in sdirs {
            let sdir = self.session_dir(&sid);
            let removable = !self.session_file(&sid).exists()
                && is_old(&sdir)
                && self.operation_files(&sid).iter().all(|(_, p)| is_old(p));
            let lock = if removable { self.busy(&sid)? } else { None };
            // Rechecked under the lock: a writer may have written the document or an
            // operation meanwhile. Only what is still old goes; a young operation keeps the
            // directory (and its attempts) for a later cleanup.
            if lock.is_some() && !self.session_file(&sid).exists() && is_old(&sdir) {
                let paths: Vec<PathBuf> = self
                    .operation_files(&sid)
                    .into_iter()
                    .map(|(_, p)| p)
                    .filter(|p| is_old(p))
                    .collect();
                let removed = safe_fs::remove_files(&paths);
                report.removed_files += removed;
                report.removed_operations += removed;
                // What is left (young, or not removable) keeps its attempts.
                referenced.extend(self.operation_files(&sid).into_iter().map(|(o, _)| o));
                if std::fs::remove_dir(&sdir).is_ok() {
                    report.orphans.push(format!("retry_session_{sid}/"));
                    let _ = std::fs::remove_file(self.lock_file(&sid));
                }
            } else {
                referenced.extend(self.operation_files(&sid).into_iter().map(|(o, _)| o));
            }
            drop(lock);
        }
        for sid in self.session_ids()? {
            match self.read_session(&sid) {
                Ok(s) => referenced.extend(
                    s.operations
                        .iter()
                        .map(|o| super::sanitize_file_part(&o.operation_id)),
                ),
                // Removed meanwhile (by another cleanup), with its attempts.
                Err(RecordError::NoSuchSession { .. }) => {}
                Err(e) => {
                    // Which attempts are its own cannot be told: none is removed.
                    report.skipped.push(format!("orphans: {sid}: {e}"));
                    return Ok(());
                }
            }
        }
        let doomed: Vec<PathBuf> = attempts
            .into_iter()
            .filter(|(oid, _)| !referenced.contains(oid))
            .map(|(_, p)| p)
            .collect();
        report.removed_files += safe_fs::remove_files(&doomed);
        report.orphans.extend(
            doomed
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_string())),
        );
        Ok(())
    }

    /// A session directory's operation files, with the (sanitised) operation id each names.
    fn operation_files(&self, sid: &str) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.session_dir(sid)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let oid = name.strip_prefix("operation_").and_then(|r| {
                    r.strip_suffix(".json")
                        .or_else(|| r.strip_suffix(".json.gz"))
                })?;
                Some((oid.to_string(), e.path()))
            })
            .collect()
    }

    /// Removes a finished session's files (with `keep_error`, all but its error record);
    /// returns (files, operations) removed.
    fn remove_session(
        &self,
        sid: &str,
        s: &SessionDocument,
        keep_error: bool,
    ) -> Result<(u64, u64), RecordError> {
        let mut n = 0;
        let mut oids: Vec<String> = s
            .operations
            .iter()
            .map(|o| o.operation_id.clone())
            .collect();
        let sdir = self.session_dir(sid);
        // Never remove through a symlink planted where the session's directory goes.
        let listed = if self.is_real_session_dir(sid) {
            std::fs::read_dir(&sdir).ok()
        } else {
            None
        };
        if let Some(entries) = listed {
            let mut doomed = Vec::new();
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(oid) = name.strip_prefix("operation_").and_then(|r| {
                    r.strip_suffix(".json")
                        .or_else(|| r.strip_suffix(".json.gz"))
                }) {
                    oids.push(oid.to_string());
                }
                if name.starts_with("operation_") || name.starts_with(".retryx-tmp-") {
                    doomed.push(e.path());
                }
            }
            n += safe_fs::remove_files(&doomed);
            let _ = std::fs::remove_dir(&sdir);
        }
        n += safe_fs::remove_files(&self.attempt_files(&oids));
        for name in [
            format!("retry_performance_{sid}.json"),
            format!("retry_performance_{sid}.json.gz"),
            format!("retry_session_error_{sid}.json"),
            format!("retry_session_error_{sid}.json.gz"),
            Self::pack_name(sid),
            format!("retry_session_{sid}.json"),
        ] {
            if keep_error && name.starts_with("retry_session_error_") {
                continue;
            }
            n += u64::from(std::fs::remove_file(self.dir.join(name)).is_ok());
        }
        let operations: std::collections::HashSet<String> =
            oids.iter().map(|o| super::sanitize_file_part(o)).collect();
        Ok((n, operations.len() as u64))
    }

    /// The error records "cleanup retry session on error" kept when it removed the rest of
    /// their session: they have no session document, so retention goes by their age alone.
    fn remove_old_error_records(&self, retention_days: u32, now: DateTime<Utc>) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let max_age = i64::from(retention_days) * 86_400;
        let mut n = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(sid) = name.strip_prefix("retry_session_error_").and_then(|r| {
                r.strip_suffix(".json")
                    .or_else(|| r.strip_suffix(".json.gz"))
            }) else {
                continue;
            };
            if check_session_id(sid).is_err() || self.session_file(sid).exists() {
                continue;
            }
            let old = e
                .metadata()
                .map(|m| m.is_file() && now.timestamp() - m.mtime() >= max_age)
                .unwrap_or(false);
            if old {
                n += u64::from(std::fs::remove_file(e.path()).is_ok());
            }
        }
        n
    }

    fn remove_stale_temps(&self, now: DateTime<Utc>) -> Result<u64, RecordError> {
        let mut n = 0;
        let mut dirs = vec![self.dir.clone()];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("retry_session_")
                    && e.file_type().map(|t| t.is_dir()).unwrap_or(false)
                {
                    dirs.push(e.path());
                }
            }
        }
        for d in dirs {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                if !e.file_name().to_string_lossy().starts_with(".retryx-tmp-") {
                    continue;
                }
                let old = e
                    .metadata()
                    .map(|m| now.timestamp() - m.mtime() > STALE_TEMP_SECS)
                    .unwrap_or(false);
                if old {
                    n += u64::from(std::fs::remove_file(e.path()).is_ok());
                }
            }
        }
        Ok(n)
    }
}

/// The shape of a `RecordsPack`, read one document at a time.
mod pack_stream {
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{AttemptDocument, OperationDocument};

    pub(super) struct Pack<'a> {
        pub on_op: &'a mut dyn FnMut(OperationDocument),
        pub on_attempt: &'a mut dyn FnMut(AttemptDocument),
    }

    impl<'de> DeserializeSeed<'de> for Pack<'_> {
        type Value = (usize, usize);
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Pack<'_> {
        type Value = (usize, usize);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a records pack (session_id, operations, attempts)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut sid, mut ops, mut attempts) = (false, None, None);
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "session_id" => sid = map.next_value::<String>().map(|_| true)?,
                    "operations" => ops = Some(map.next_value_seed(Each(&mut *self.on_op))?),
                    "attempts" => {
                        attempts = Some(map.next_value_seed(Each(&mut *self.on_attempt))?)
                    }
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            if !sid {
                return Err(de::Error::missing_field("session_id"));
            }
            Ok((
                ops.ok_or_else(|| de::Error::missing_field("operations"))?,
                attempts.ok_or_else(|| de::Error::missing_field("attempts"))?,
            ))
        }
    }

    /// A list whose items go to the callback one by one; its value is how many there were.
    struct Each<'a, T>(&'a mut dyn FnMut(T));

    impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Each<'_, T> {
        type Value = usize;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Each<'_, T> {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(item) = seq.next_element::<T>()? {
                (self.0)(item);
                n += 1;
            }
            Ok(n)
        }
    }
}

/// The paths whose file name is not among `packed` (the names already in the pack).
fn not_packed<'a>(
    paths: &'a [PathBuf],
    packed: &std::collections::HashSet<String>,
) -> Vec<&'a Path> {
    paths
        .iter()
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| packed.contains(n.to_string_lossy().as_ref()))
        })
        .map(PathBuf::as_path)
        .collect()
}

/// One element of a JSON array being streamed: a comma before all but the first.
fn put_item(enc: &mut impl Write, first: &mut bool, bytes: &[u8]) -> std::io::Result<()> {
    if !std::mem::take(first) {
        enc.write_all(b",")?;
    }
    enc.write_all(bytes)
}

/// `retry_session_<sid>.json` → sid (not the error record, not packs).
pub fn session_id_of(name: &str) -> Option<&str> {
    let sid = name.strip_prefix("retry_session_")?.strip_suffix(".json")?;
    check_session_id(sid).ok().map(|_| sid)
}

/// `attempt_<oid>_<n>.json[.gz]` → oid.
fn attempt_operation_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("attempt_")?;
    let rest = rest
        .strip_suffix(".json")
        .or_else(|| rest.strip_suffix(".json.gz"))?;
    let (oid, n) = rest.rsplit_once('_')?;
    n.parse::<u32>().ok().map(|_| oid)
}

#[derive(Debug, Default, Serialize)]
pub struct Compressed {
    pub file: String,
    /// Files folded into it.
    pub sources: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct CompressReport {
    pub files: Vec<Compressed>,
    pub skipped: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct CleanupReport {
    pub removed_sessions: Vec<String>,
    pub removed_files: u64,
    /// Operations removed with their sessions (and with orphaned operation directories).
    pub removed_operations: u64,
    /// Orphans removed: attempt files no session refers to, operation directories without a
    /// session document.
    pub orphans: Vec<String>,
    pub kept_open: Vec<String>,
    pub skipped: Vec<String>,
}

/// A session with every operation document, for `session show` and the picture.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub session: SessionDocument,
    pub operation_details: Vec<OperationDocument>,
}

impl Store {
    /// A session's operations (directory and pack), oldest first.
    fn operations_in_order(&self, sid: &str) -> Result<Vec<OperationDocument>, RecordError> {
        let mut ops = Vec::new();
        self.for_each_operation(sid, |d| ops.push(d))?;
        ops.sort_by(|a, b| {
            a.record
                .start_time
                .cmp(&b.record.start_time)
                .then(a.record.operation_id.cmp(&b.record.operation_id))
        });
        Ok(ops)
    }

    pub fn view(&self, sid: &str) -> Result<SessionView, RecordError> {
        let session = self.read_session(sid)?;
        let ops = self.operations_in_order(sid)?;
        Ok(SessionView {
            session,
            operation_details: ops,
        })
    }
}

/// Converts the pieces above into JSON for results.
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AttemptStatus, OperationStatus};

    fn op(sid: &str, name: &str, ok: bool) -> OperationRecord {
        let attempt = AttemptRecord {
            attempt_number: 1,
            start_time: "2023-12-01T10:00:00.000Z".into(),
            end_time: "2023-12-01T10:00:30.000Z".into(),
            status: if ok {
                AttemptStatus::Success
            } else {
                AttemptStatus::Failed
            },
            error_type: None,
            error_message: None,
            should_retry: false,
            delay_before_retry: 0.0,
            execution_time: 30.0,
            exit_code: Some(if ok { 0 } else { 1 }),
            signal: None,
            timed_out: false,
            retry_reason: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            download: None,
            policy_class: None,
            failed_task: None,
        };
        OperationRecord {
            operation_id: crate::record::new_operation_id(name, 1),
            operation_name: name.into(),
            session_id: sid.into(),
            start_time: attempt.start_time.clone(),
            end_time: attempt.end_time.clone(),
            status: if ok {
                OperationStatus::Completed
            } else {
                OperationStatus::Failed
            },
            attempt_count: 1,
            max_attempts: 3,
            execution_time: 30.0,
            attempts: vec![attempt],
            exit_code: 0,
            final_error_type: None,
            final_error_message: None,
            stop_reason: "success".into(),
            command: None,
            context: None,
            host: "h".into(),
            policy: Value::Null,
            jitter_seed: 1,
            guards: Default::default(),
        }
    }

    #[test]
    fn a_compress_stopped_half_way_counts_nothing_twice() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path().join("r")).unwrap();
        let now = Utc::now();
        let w = store
            .record_operation(&op("s", "a", true), true, None, now)
            .unwrap();
        store
            .record_operation(&op("s", "b", false), false, None, now)
            .unwrap();
        let (s, _) = store.finalize("s", None, false, now).unwrap();
        assert_eq!(s.final_statistics.total_operations, 2);
        assert_eq!(s.session_status, "failed");
        let kept: Vec<(PathBuf, Vec<u8>)> = w
            .files
            .iter()
            .take(2)
            .map(|p| (p.clone(), std::fs::read(p).unwrap()))
            .collect();
        let r = store.compress(Some("s"), u64::MAX).unwrap();
        assert_eq!(r.files.len(), 1);
        // As if compress had been killed after writing the pack: the originals are back.
        safe_fs::ensure_private_dir(&store.session_dir("s")).unwrap();
        for (p, b) in &kept {
            std::fs::write(p, b).unwrap();
        }
        let (s, _) = store.finalize("s", None, false, now).unwrap();
        assert_eq!(s.final_statistics.total_operations, 2);
        store.compress(Some("s"), u64::MAX).unwrap();
        let pack: RecordsPack =
            Store::read_json(&store.dir.join("retry_session_s.records.json.gz")).unwrap();
        assert_eq!((pack.operations.len(), pack.attempts.len()), (2, 1));
        // Another operation reopens the session: it joins the list; alerts wait for finalize.
        store
            .record_operation(&op("s", "c", true), false, None, now)
            .unwrap();
        let s = store.read_session("s").unwrap();
        assert_eq!(s.session_status, "open");
        assert_eq!(s.operations.len(), 3);
        assert_eq!(s.final_statistics.total_operations, 3);
        let (s, _) = store.finalize("s", None, false, now).unwrap();
        assert_eq!(s.operations.len(), 3);
    }

    /// The check compress makes before removing a file it gzipped: a good gzip passes; one
    /// that is cut short, altered or missing does not, and says why.
    #[test]
    fn a_gzip_is_trusted_only_when_it_reads_back_to_the_original() {
        let t = tempfile::tempdir().unwrap();
        let original = br#"{"total_wait_time": 1.5}"#.repeat(100);
        let gz = gzip(&original);
        let path = t.path().join("x.json.gz");
        std::fs::write(&path, &gz).unwrap();
        assert_eq!(gunzips_to(&path, &original), Ok(()));
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let why = gunzips_to(&path, &original).unwrap_err();
        assert!(why.contains("does not decompress"), "{why}");
        std::fs::write(&path, gzip(b"{}")).unwrap();
        assert_eq!(
            gunzips_to(&path, &original).unwrap_err(),
            "the gzip read back differs"
        );
        std::fs::remove_file(&path).unwrap();
        let why = gunzips_to(&path, &original).unwrap_err();
        assert!(why.contains("could not be read back"), "{why}");
    }

    #[test]
    fn session_ids_are_plain_names() {
        for good in ["retry_1640995200_123456", "a", "A-b_9"] {
            assert!(check_session_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "a.b",
            "error_1",
            "a\nb",
            &"x".repeat(129),
        ] {
            assert!(check_session_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            session_id_of("retry_session_retry_1_a.json"),
            Some("retry_1_a")
        );
        assert_eq!(session_id_of("retry_session_error_retry_1_a.json"), None);
        assert_eq!(session_id_of("retry_session_x.records.json.gz"), None);
        assert_eq!(
            attempt_operation_of("attempt_op_1_ab_3.json"),
            Some("op_1_ab")
        );
        assert_eq!(attempt_operation_of("attempt_x.json"), None);
    }
}
