//! `retryx session list|show|finalize`, `retryx cleanup`, `retryx compress`: clap arguments
//! and their handlers. Prints to stdout, errors to stderr; returns the exit code (125 for bad
//! usage or unreadable records). The work itself is in `store` and `render`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::app::session::{
    DEFAULT_COMPRESS_THRESHOLD, DEFAULT_MAX_SESSIONS, DEFAULT_RETENTION_DAYS, thresholds,
};
use crate::config::Config;
use crate::exit::USAGE;
use crate::record::render;
use crate::record::store::{DEFAULT_DIR, RecordError, Store};
use crate::sys::safe_fs;

#[derive(Args, Debug)]
pub struct SessionArgs {
    #[command(subcommand)]
    pub cmd: SessionCmd,
}

#[derive(Args, Debug, Clone)]
pub struct DirArgs {
    /// Where the records are
    #[arg(long, value_name = "DIR", env = ARTIFACTS_ENV, default_value = DEFAULT_DIR)]
    pub artifacts_dir: PathBuf,
}

/// The one environment variable naming the artifacts directory of every command.
pub const ARTIFACTS_ENV: &str = "RETRYX_ARTIFACTS_DIR";

#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    /// List the sessions in the artifacts directory, newest first
    List(ListArgs),
    /// Show a session: json, text, or a timeline picture (svg, html)
    Show {
        id: String,
        #[command(flatten)]
        dir: DirArgs,
        #[arg(long, default_value = "text")]
        format: Format,
        /// Write to FILE [default: stdout]
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Close a session: final statistics, end, duration, status, alerts
    Finalize {
        id: String,
        #[command(flatten)]
        dir: DirArgs,
        /// JSON config whose monitoring.alerts thresholds to apply (a regular file, not a link,
        /// FIFO or device) [default: the session's own]
        #[arg(short = 'c', long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Close it as failed (as the role's "cleanup retry session on error")
        #[arg(long)]
        failed: bool,
    },
}

/// `session list`: filters and the two formats a listing has.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Only sessions with this status [default: any]
    #[arg(long, value_name = "STATUS")]
    pub status: Option<SessionStatus>,
    /// Only sessions holding an operation of this name [default: any]
    #[arg(long, value_name = "NAME")]
    pub operation: Option<String>,
    /// Only sessions started since WHEN: a duration ago (30m, 2h, 1d) or a time (2026-01-21, RFC 3339) [default: any time]
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: ListFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SessionStatus {
    Open,
    Completed,
    Failed,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    Text,
    Json,
}

/// `--since`: a duration back from now, a date (midnight UTC) or an RFC 3339 time.
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{DateTime, NaiveDate, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    let ago = crate::config::duration::parse_duration(text).map_err(|_| {
        format!("expected a duration ago (30m, 2h, 1d), a date (2026-01-21) or an RFC 3339 time, got {text:?}")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    Ok(Utc::now() - ago)
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Svg,
    Html,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Remove finished sessions older than this many days
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RETENTION_DAYS)]
    pub retention_days: u32,
    /// Keep at most this many finished sessions
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: u32,
    /// Guard state directory (never touched by cleanup) [default: <artifacts-dir>/state]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Instead: close this session as failed ("cleanup retry session on error"; records kept) [default: none]
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct CompressArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Only this session [default: every finished session]
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Files above this many bytes are gzipped
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_COMPRESS_THRESHOLD)]
    pub threshold: u64,
}

fn report(r: Result<i32, String>) -> i32 {
    match r {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("retryx: {}", crate::log::escape_controls(&msg));
            USAGE
        }
    }
}

fn e(err: RecordError) -> String {
    err.to_string()
}

fn emit(output: Option<&PathBuf>, text: &str) -> Result<(), String> {
    match output {
        Some(p) => std::fs::write(p, text).map_err(|err| format!("writing {}: {err}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .map_err(|err| format!("writing stdout: {err}"))
        }
    }
}

pub fn session(a: SessionArgs) -> i32 {
    report(match a.cmd {
        SessionCmd::List(a) => list(&a),
        SessionCmd::Show {
            id,
            dir,
            format,
            output,
        } => show(&dir.artifacts_dir, &id, format, output.as_ref()),
        SessionCmd::Finalize {
            id,
            dir,
            config,
            failed,
        } => finalize(&dir.artifacts_dir, &id, config.as_ref(), failed),
    })
}

/// One row of `session list`.
#[derive(serde::Serialize)]
struct Row {
    session_id: String,
    session_status: String,
    session_start: String,
    session_end: Option<String>,
    total_operations: u64,
    failed_operations: u64,
    alerts: usize,
}

fn list(a: &ListArgs) -> Result<i32, String> {
    let store = Store::new(&a.dir.artifacts_dir);
    let mut rows = Vec::new();
    for sid in store.session_ids().map_err(e)? {
        let s = match store.read_session(&sid) {
            Ok(s) => s,
            Err(err) => {
                let err = crate::log::escape_controls(&err.to_string());
                eprintln!("retryx: skipping {sid}: {err}");
                continue;
            }
        };
        if let Some(want) = a.status
            && s.session_status != format!("{want:?}").to_lowercase()
        {
            continue;
        }
        if let Some(since) = a.since
            && chrono::DateTime::parse_from_rfc3339(&s.session_start).map_or(true, |t| t < since)
        {
            continue;
        }
        // An open session lists its operations only in their own files.
        if let Some(name) = &a.operation
            && !store.view(&sid).is_ok_and(|v| {
                v.operation_details
                    .iter()
                    .any(|d| &d.record.operation_name == name)
            })
        {
            continue;
        }
        rows.push(Row {
            session_id: s.session_id,
            session_status: s.session_status,
            session_start: s.session_start,
            session_end: s.session_end,
            total_operations: s.final_statistics.total_operations,
            failed_operations: s.final_statistics.failed_operations,
            alerts: s.alerts.len(),
        });
    }
    // Newest first; the same timestamp format everywhere, so text order is time order.
    rows.sort_by(|x, y| {
        y.session_start
            .cmp(&x.session_start)
            .then(y.session_id.cmp(&x.session_id))
    });
    let text = match a.format {
        ListFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).map_err(|x| x.to_string())?
        ),
        ListFormat::Text => list_text(&rows),
    };
    emit(None, &text)?;
    Ok(0)
}

fn list_text(rows: &[Row]) -> String {
    use crate::log::escape_controls as esc;
    // Ids, status and start come from files anyone who can write the directory wrote: escaped,
    // so a control character in them cannot drive the terminal.
    let w = rows
        .iter()
        .map(|r| esc(&r.session_id).chars().count())
        .max()
        .unwrap_or(0)
        .max("SESSION".len());
    let mut t = format!(
        "{:<w$}  {:<9}  {:<24}  {:>4}  {:>6}  {:>6}\n",
        "SESSION", "STATUS", "STARTED", "OPS", "FAILED", "ALERTS"
    );
    for r in rows {
        t.push_str(&format!(
            "{:<w$}  {:<9}  {:<24}  {:>4}  {:>6}  {:>6}\n",
            esc(&r.session_id),
            esc(&r.session_status),
            esc(&r.session_start),
            r.total_operations,
            r.failed_operations,
            r.alerts
        ));
    }
    t
}

fn show(dir: &PathBuf, id: &str, format: Format, output: Option<&PathBuf>) -> Result<i32, String> {
    let view = Store::new(dir).view(id).map_err(e)?;
    let text = match format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&view).map_err(|x| x.to_string())?
        ),
        Format::Text => render::text(&view),
        Format::Svg => render::svg(&view),
        Format::Html => render::html(&view),
    };
    emit(output, &text)?;
    Ok(0)
}

fn finalize(
    dir: &PathBuf,
    id: &str,
    config: Option<&PathBuf>,
    failed: bool,
) -> Result<i32, String> {
    let t = match config {
        Some(p) => {
            // As records are read (no symlink, no FIFO or device, so nothing can block us in
            // `open`), under the cap `-c` has.
            let text = safe_fs::read_private(p, safe_fs::MAX_INPUT_BYTES)
                .map_err(|err| format!("cannot read config: {err}"))?;
            let c: Config = serde_json::from_slice(&text)
                .map_err(|err| format!("config {} is not valid: {err}", p.display()))?;
            thresholds(&c)
        }
        None => None,
    };
    let (s, files) = Store::new(dir)
        .finalize(id, t.as_ref(), failed, chrono::Utc::now())
        .map_err(e)?;
    let out = json!({
        "session_id": s.session_id,
        "session_status": s.session_status,
        "session_duration": s.session_duration,
        "final_statistics": s.final_statistics,
        "alerts": s.alerts,
        "files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    emit(
        None,
        &format!(
            "{}\n",
            serde_json::to_string_pretty(&out).map_err(|x| x.to_string())?
        ),
    )?;
    Ok(0)
}

pub fn cleanup(a: CleanupArgs) -> i32 {
    if let Some(id) = &a.session_id {
        return report(finalize(&a.dir.artifacts_dir, id, None, true));
    }
    report(
        Store::new(&a.dir.artifacts_dir)
            .cleanup(a.retention_days, a.max_sessions, chrono::Utc::now())
            .map_err(e)
            .and_then(|r| {
                emit(
                    None,
                    &format!(
                        "{}\n",
                        serde_json::to_string_pretty(&r).map_err(|x| x.to_string())?
                    ),
                )?;
                Ok(0)
            }),
    )
}

pub fn compress(a: CompressArgs) -> i32 {
    report(
        Store::new(&a.dir.artifacts_dir)
            .compress(a.session_id.as_deref(), a.threshold)
            .map_err(e)
            .and_then(|r| {
                emit(
                    None,
                    &format!(
                        "{}\n",
                        serde_json::to_string_pretty(&r).map_err(|x| x.to_string())?
                    ),
                )?;
                Ok(0)
            }),
    )
}
