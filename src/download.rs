//! The resumable HTTP download operation (`retryx download URL -o FILE`, module `action:
//! download`): an `engine::Attempter` that streams a URL into `dest.part` in fixed-size chunks,
//! resumes after a failure with `Range: bytes=<offset>-` guarded by `If-Range`, starts again from
//! zero when the server ignores the range or the file changed, verifies the sha256 and renames
//! the part into place. A part left by an earlier run (killed, or out of attempts) is resumed
//! too: its validator (ETag or Last-Modified), the announced size and the sha256 of the URL are
//! kept beside it in `dest.part.resume` (0600, like the part), so the next run sends `If-Range`
//! and a changed file restarts from zero. Failures are reported as text ("HTTP 503 Service Unavailable",
//! "connection reset by peer") so the classifier, the policy and the records treat a download
//! like any other operation.
//!
//! It must not: log, record or echo header values or any part of the URL past the port (they
//! are secrets, scrubbed in every form by the sinks' `Redactor`); hold more than a few
//! chunks of the body in memory; write anywhere but `dest.part`, `dest.part.resume` and `dest`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{Config, Plan};
use crate::engine::Attempter;
use crate::exec::{AttemptOutput, ExitKind};
use crate::log::{Level, Logger};
use crate::record::{DownloadAttempt, OperationRecord};
use crate::sinks::redact::Redactor;
use crate::sys::stop::Cancel;

/// Bytes read from the network (and written to disk) at a time.
pub const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the network thread and the writer: memory stays under
/// `(QUEUE + 2) * CHUNK` whatever the file size.
const QUEUE: usize = 8;
/// A transfer that receives nothing for this long is cut and retried.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait for the network looks at stop requests and the attempt's timeout.
const POLL: Duration = Duration::from_millis(100);
/// Plain progress lines (no terminal) come at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Headers retryx sets itself to resume; a user value would break resuming.
const RESERVED_HEADERS: &[&str] = &["range", "if-range", "accept-encoding"];

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("key 'url' is required for action download")]
    NoUrl,
    #[error("key 'url': expected an http:// or https:// URL with a host, got {0:?}")]
    BadUrl(String),
    #[error("key 'dest' is required for action download")]
    NoDest,
    #[error("key 'dest': {0}")]
    BadDest(String),
    #[error("key 'checksum': expected sha256:<64 hex digits>, got {0:?}")]
    BadChecksum(String),
    #[error("key 'headers': {0:?} is not a valid HTTP header name")]
    BadHeaderName(String),
    #[error("key 'headers': the value of {0:?} is not a valid HTTP header value")]
    BadHeaderValue(String),
    #[error("key 'headers': {0:?} is set by retryx itself to resume downloads")]
    ReservedHeader(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to download where, validated.
#[derive(Clone)]
pub struct DownloadSpec {
    url: String,
    /// The URL as shown in logs and results: scheme, host and port.
    pub shown_url: String,
    /// The URL's secret parts (user info, password, path, query) and the header values, with
    /// the forms they travel in (base64, percent-encoded): scrubbed from every failure text.
    redactor: Redactor,
    pub dest: PathBuf,
    pub part: PathBuf,
    /// `dest.part.resume`: what the next run needs to resume the part safely.
    pub resume: PathBuf,
    /// Lower-case hex sha256 the file must have.
    pub checksum: Option<String>,
    headers: Vec<(String, String)>,
    pub force: bool,
}

impl std::fmt::Debug for DownloadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadSpec")
            .field("url", &self.shown_url)
            .field("dest", &self.dest)
            .field("checksum", &self.checksum)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("force", &self.force)
            .finish()
    }
}

/// `scheme://host[:port]` of an http(s) URL, nothing past the port: a token may be anywhere in
/// the path, and the file name is shown by `dest` and the operation's name anyway; `None` when
/// the text is not an http(s) URL with a host.
pub fn shown_url(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = uri.host().filter(|h| !h.is_empty())?;
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{scheme}://{host}{port}"))
}

/// The file name the URL's path ends with, when it is usable as one.
fn url_file_name(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let last = uri.path().rsplit('/').next()?.to_string();
    (!last.is_empty() && last != "." && last != ".." && !last.contains('\0')).then_some(last)
}

/// Parses `sha256:<hex>` (the algorithm may be omitted) into lower-case hex.
pub fn parse_checksum(text: &str) -> Result<String, DownloadError> {
    let t = text.trim();
    let hex_part = match t.split_once(':') {
        Some((alg, h)) if alg.eq_ignore_ascii_case("sha256") => h,
        Some(_) => return Err(DownloadError::BadChecksum(text.to_string())),
        None => t,
    };
    if hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex_part.to_ascii_lowercase())
    } else {
        Err(DownloadError::BadChecksum(text.to_string()))
    }
}

/// `download <file name of dest>`: the seed's operation name when none is given.
pub fn default_operation(dest: &str, url: &str) -> String {
    let name = Path::new(dest)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .or_else(|| url_file_name(url))
        .unwrap_or_else(|| "file".into());
    format!("download {name}")
}

impl DownloadSpec {
    /// Validates the download keys of a resolved config. Reads the file system only to see
    /// whether `dest` is a directory and its parent exists.
    pub fn from_config(c: &Config) -> Result<DownloadSpec, DownloadError> {
        let url = c.url.clone().ok_or(DownloadError::NoUrl)?;
        let shown = shown_url(&url).ok_or_else(|| {
            DownloadError::BadUrl(shown_url(&url).unwrap_or_else(|| strip_secrets(&url)))
        })?;
        let dest_text = c.dest.clone().ok_or(DownloadError::NoDest)?;
        if dest_text.is_empty() || dest_text.contains('\0') {
            return Err(DownloadError::BadDest("expected a file path".into()));
        }
        let mut dest = PathBuf::from(&dest_text);
        if dest.is_dir() {
            let name = url_file_name(&url).ok_or_else(|| {
                DownloadError::BadDest(format!(
                    "{dest_text} is a directory and the URL path ends without a file name; give a file path"
                ))
            })?;
            dest.push(name);
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(DownloadError::BadDest(format!(
                "the directory {} does not exist",
                parent.display()
            )));
        }
        let mut part = dest.clone().into_os_string();
        part.push(".part");
        let mut resume = part.clone();
        resume.push(".resume");
        let checksum = c.checksum.as_deref().map(parse_checksum).transpose()?;
        let mut headers = Vec::new();
        for (k, v) in c.headers.iter().flatten() {
            if ureq::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(DownloadError::BadHeaderName(k.clone()));
            }
            if ureq::http::HeaderValue::from_str(v).is_err() {
                return Err(DownloadError::BadHeaderValue(k.clone()));
            }
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(DownloadError::ReservedHeader(k.clone()));
            }
            headers.push((k.clone(), v.clone()));
        }
        let mut redactor = Redactor::new();
        redactor.add_download_url(&url, dest.file_name().and_then(|n| n.to_str()));
        for (_, v) in &headers {
            redactor.add_header_value(v);
        }
        Ok(DownloadSpec {
            url,
            shown_url: shown,
            redactor,
            dest,
            part: PathBuf::from(part),
            resume: PathBuf::from(resume),
            checksum,
            headers,
            force: c.force.unwrap_or(false),
        })
    }

    /// The dest's file name, for log lines (`file=...`).
    pub fn file_label(&self) -> String {
        self.dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dest.display().to_string())
    }

    /// What the result shows as `cmd`.
    pub fn cmd(&self) -> String {
        format!("download {} -> {}", self.shown_url, self.dest.display())
    }

    /// Hides the URL's secrets and header values in a message that might echo them.
    fn scrub(&self, text: &str) -> String {
        self.redactor
            .scrub(&text.replace(&self.url, &self.shown_url))
    }
}

/// A URL reduced to what can be shown when it does not even parse: scheme, host and port.
fn strip_secrets(url: &str) -> String {
    crate::log::url_origin(url)
}

/// The sha256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The dest before the operation.
#[derive(Debug, Clone)]
pub enum Before {
    Missing,
    Exists { sha256: String },
}

/// Whether there is anything to download.
#[derive(Debug, Clone)]
pub enum Precheck {
    Fetch(Before),
    UpToDate {
        size: u64,
        sha256: String,
        reason: String,
    },
}

/// Looks at `dest`: up to date when it matches the checksum, or exists and neither a checksum
/// nor `force` asks for more (as `get_url` does).
pub fn precheck(spec: &DownloadSpec) -> Result<Precheck, DownloadError> {
    let io = |source| DownloadError::Io {
        path: spec.dest.clone(),
        source,
    };
    let meta = match std::fs::metadata(&spec.dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Precheck::Fetch(Before::Missing));
        }
        Err(e) => return Err(io(e)),
    };
    if !meta.is_file() {
        return Err(DownloadError::BadDest(format!(
            "{} exists and is not a regular file",
            spec.dest.display()
        )));
    }
    let sha256 = sha256_file(&spec.dest).map_err(io)?;
    let size = meta.len();
    if spec.force {
        return Ok(Precheck::Fetch(Before::Exists { sha256 }));
    }
    match &spec.checksum {
        Some(want) if *want == sha256 => Ok(Precheck::UpToDate {
            size,
            sha256,
            reason: "dest already matches the checksum".into(),
        }),
        Some(_) => Ok(Precheck::Fetch(Before::Exists { sha256 })),
        None => Ok(Precheck::UpToDate {
            size,
            sha256,
            reason: "dest exists and force is false (give a checksum or force to compare)".into(),
        }),
    }
}

/// `bytes <start>-<end>/<total>` or `bytes */<total>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// `None` for `bytes */<total>`.
    pub range: Option<(u64, u64)>,
    pub total: Option<u64>,
}

pub fn parse_content_range(text: &str) -> Option<ContentRange> {
    let rest = text.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-')?;
            let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if b < a || total.is_some_and(|t| b >= t) {
                return None;
            }
            Some((a, b))
        }
    };
    if range.is_none() && total.is_none() {
        return None;
    }
    Some(ContentRange { range, total })
}

/// What identifies the version of the file first seen, sent back as `If-Range`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Validator {
    ETag(String),
    LastModified(String),
}

impl Validator {
    fn value(&self) -> &str {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }
}

/// The `dest.part.resume` sidecar: which version of which URL the part holds the start of.
/// The URL is kept only as a sha256 (it may carry credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sidecar {
    validator: Validator,
    size: Option<u64>,
    url_sha256: String,
}

impl Sidecar {
    fn to_json(&self) -> String {
        let (kind, value) = match &self.validator {
            Validator::ETag(v) => ("etag", v),
            Validator::LastModified(v) => ("last_modified", v),
        };
        serde_json::json!({
            "validator": kind,
            "value": value,
            "size": self.size,
            "url_sha256": self.url_sha256,
        })
        .to_string()
    }

    /// None for anything but a sidecar this version wrote: a damaged one is not trusted.
    fn parse(text: &str) -> Option<Sidecar> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let value = v.get("value")?.as_str()?.to_string();
        let validator = match v.get("validator")?.as_str()? {
            "etag" => Validator::ETag(value),
            "last_modified" => Validator::LastModified(value),
            _ => return None,
        };
        let size = match v.get("size") {
            None | Some(serde_json::Value::Null) => None,
            Some(n) => Some(n.as_u64()?),
        };
        Some(Sidecar {
            validator,
            size,
            url_sha256: v.get("url_sha256")?.as_str()?.to_string(),
        })
    }
}

/// The parts of a response head the writer decides on.
#[derive(Debug, Clone)]
struct Head {
    status: u16,
    reason: String,
    content_length: Option<u64>,
    content_range: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
    retry_after: Option<String>,
}

impl Head {
    fn from_response(r: &ureq::http::Response<ureq::Body>) -> Head {
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string())
        };
        Head {
            status: r.status().as_u16(),
            reason: r.status().canonical_reason().unwrap_or("").to_string(),
            content_length: h("content-length").and_then(|v| v.parse().ok()),
            content_range: h("content-range"),
            etag: h("etag"),
            last_modified: h("last-modified"),
            retry_after: h("retry-after"),
        }
    }

    /// A strong ETag (If-Range needs one), else Last-Modified.
    fn validator(&self) -> Option<Validator> {
        match (&self.etag, &self.last_modified) {
            (Some(e), _) if !e.starts_with("W/") && !e.is_empty() => {
                Some(Validator::ETag(e.clone()))
            }
            (_, Some(lm)) if !lm.is_empty() => Some(Validator::LastModified(lm.clone())),
            _ => None,
        }
    }

    /// The failure text the classifier reads: `HTTP 503 Service Unavailable`. A `Retry-After`
    /// comes first, so `delay_from_output` can use it and the status stays the last line (the
    /// record's error message).
    fn failure_text(&self) -> String {
        let mut t = String::new();
        if matches!(self.status, 429 | 503)
            && let Some(secs) = self.retry_after.as_deref().and_then(retry_after_seconds)
        {
            t.push_str(&format!("Retry-After: {secs}\n"));
        }
        t.push_str(format!("HTTP {} {}", self.status, self.reason).trim_end());
        // Other client errors are final: mark them so the download's own pattern says so.
        if (400..500).contains(&self.status)
            && ![400, 401, 403, 404, 408, 416, 429].contains(&self.status)
        {
            t.push_str(CLIENT_ERROR_MARK);
        }
        t
    }
}

/// Appended to 4xx failures the built-in table does not know; `client_error_pattern` classes them.
const CLIENT_ERROR_MARK: &str = " (client error)";

/// A `Retry-After` value in whole seconds from now: delta-seconds, or an HTTP-date (RFC 9110
/// IMF-fixdate, which RFC 2822 parsing accepts); a date in the past is 0.
fn retry_after_seconds(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = when.timestamp() - chrono::Utc::now().timestamp();
    Some(secs.max(0) as u64)
}

/// The class the download gives to client errors the built-in table does not know (410 Gone,
/// 405, 451...): `invalid_parameter`, not retried unless `retry_conditions` says so.
pub fn client_error_pattern() -> crate::classify::UserPattern {
    crate::classify::UserPattern {
        // A constant pattern, compiled by this file's tests.
        regex: regex::Regex::new(r"(?m)^HTTP 4\d\d .*\(client error\)$")
            .unwrap_or_else(|e| panic!("built-in pattern: {e}")),
        class: crate::classify::ErrorClass::InvalidParameter,
    }
}

enum Msg {
    Head(Head),
    Chunk(Vec<u8>),
    End,
    Failed(String),
}

struct Fetch {
    url: String,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
}

fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset => "connection reset by peer".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::ConnectionRefused => "connection refused".into(),
        K::BrokenPipe => "broken pipe".into(),
        K::UnexpectedEof => "connection closed before the end of the body".into(),
        K::TimedOut | K::WouldBlock => "connection timed out (no data received)".into(),
        K::NotConnected => "connection closed".into(),
        _ => format!("network error: {e}"),
    }
}

fn describe_ureq(e: ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => describe_io(&io),
        ureq::Error::Timeout(t) => format!("connection timed out ({t})"),
        ureq::Error::HostNotFound => "could not resolve host".into(),
        ureq::Error::ConnectionFailed => "network error: connection failed".into(),
        other => format!("HTTP request failed: {other}"),
    }
}

/// The network side of one attempt, on its own thread: the request, the head, then the body in
/// chunks through a bounded channel. It never touches the file; when the writer stops listening
/// it ends.
fn fetch(req: Fetch, tx: SyncSender<Msg>, go: Receiver<bool>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .accept_encoding("identity")
        .user_agent(concat!("retryx/", env!("CARGO_PKG_VERSION")))
        .timeout_global(req.timeout)
        .timeout_connect(Some(
            req.timeout
                .map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT)),
        ))
        .timeout_per_read(Some(IDLE_TIMEOUT))
        .max_idle_connections(0)
        .build()
        .into();
    let mut rb = agent.get(&req.url);
    for (k, v) in &req.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = match rb.call() {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Msg::Failed(describe_ureq(e)));
            return;
        }
    };
    if tx.send(Msg::Head(Head::from_response(&resp))).is_err() {
        return;
    }
    if !matches!(go.recv(), Ok(true)) {
        return;
    }
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Msg::End);
                return;
            }
            Ok(n) => {
                if tx.send(Msg::Chunk(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Msg::Failed(describe_ureq(ureq::Error::from(e))));
                return;
            }
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on stderr (a terminal).
    Bar,
    /// A log line now and then.
    Lines,
}

impl ProgressMode {
    /// A bar when log lines go to a terminal's stderr, lines otherwise.
    pub fn for_stderr(to_stderr: bool, log: &Logger) -> ProgressMode {
        use std::io::IsTerminal;
        if to_stderr && log.enabled(Level::Info) && std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

struct Progress {
    mode: ProgressMode,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Progress {
    /// A fresh bar for each attempt: the seed resets the bar on retry.
    fn start(&mut self, label: &str, offset: u64, total: Option<u64>) {
        self.finish();
        self.last_line = Instant::now();
        if self.mode != ProgressMode::Bar {
            return;
        }
        let (bar, template) = match total {
            Some(t) => (
                indicatif::ProgressBar::new(t),
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ),
            None => (
                indicatif::ProgressBar::new_spinner(),
                "{msg} {spinner} {bytes} {bytes_per_sec}",
            ),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        bar.set_position(offset);
        self.bar = Some(bar);
    }

    fn update(&mut self, log: &Logger, label: &str, offset: u64, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            bar.set_position(offset);
        } else if self.last_line.elapsed() >= PROGRESS_EVERY {
            self.last_line = Instant::now();
            let mut fields = vec![("file", label.to_string()), ("bytes", offset.to_string())];
            if let Some(t) = total.filter(|t| *t > 0) {
                fields.push(("totalSize", t.to_string()));
                fields.push((
                    "percent",
                    format!("{:.1}", offset as f64 * 100.0 / t as f64),
                ));
            }
            log.info("download progress", &fields);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// How an attempt went wrong.
enum Fail {
    /// A failure for the classifier to read.
    Text(String),
    /// The attempt's timeout (or the deadline) ran out.
    TimedOut(String),
    /// retryx was asked to stop.
    Stopped(i32),
}

/// The finished download.
#[derive(Debug, Clone)]
pub struct Done {
    pub size: u64,
    pub sha256: String,
}

/// Runs the attempts of one download, carrying what a resume needs from one to the next.
pub struct DownloadAttempter<'a> {
    spec: &'a DownloadSpec,
    log: &'a Logger,
    progress: Progress,
    validator: Option<Validator>,
    total: Option<u64>,
    hasher: Sha256,
    /// Bytes of the part file the hasher has seen (from byte 0, in order).
    hashed: u64,
    facts: Vec<(u32, DownloadAttempt)>,
    done: Option<Done>,
}

impl<'a> DownloadAttempter<'a> {
    pub fn new(spec: &'a DownloadSpec, log: &'a Logger, mode: ProgressMode) -> Self {
        DownloadAttempter {
            spec,
            log,
            progress: Progress {
                mode,
                bar: None,
                last_line: Instant::now(),
            },
            validator: None,
            total: None,
            hasher: Sha256::new(),
            hashed: 0,
            facts: Vec::new(),
            done: None,
        }
    }

    /// The finished file, when the download succeeded.
    pub fn done(&self) -> Option<&Done> {
        self.done.as_ref()
    }

    /// Whether an attempt resumed a partial file (the server answered 206 to a Range).
    pub(crate) fn resumed(&self) -> bool {
        self.facts
            .iter()
            .any(|(_, f)| f.resumed_from > 0 && f.http_status == Some(206))
    }

    /// Body bytes received over all attempts.
    pub fn bytes_transferred(&self) -> u64 {
        self.facts.iter().map(|(_, f)| f.bytes_transferred).sum()
    }

    /// Puts each attempt's download facts into its record, and tidies the part file of a
    /// download that did not finish: kept when a checksum will vouch for it on the next run
    /// (which resumes from it), removed otherwise.
    pub fn finish(&self, record: &mut OperationRecord) {
        for a in &mut record.attempts {
            if let Some((_, f)) = self.facts.iter().find(|(n, _)| *n == a.attempt_number) {
                a.download = Some(f.clone());
            }
        }
        if self.done.is_some() {
            return;
        }
        let part = &self.spec.part;
        let len = std::fs::symlink_metadata(part).map(|m| m.len()).ok();
        let vouched = self.spec.checksum.is_some() || self.validator.is_some();
        match len {
            Some(n) if n > 0 && vouched => self.log.info(
                "partial download kept for the next run",
                &[
                    ("file", self.spec.file_label()),
                    ("part", part.display().to_string()),
                    ("bytes", n.to_string()),
                ],
            ),
            Some(_) => {
                let _ = std::fs::remove_file(part);
                let _ = std::fs::remove_file(&self.spec.resume);
            }
            None => {
                let _ = std::fs::remove_file(&self.spec.resume);
            }
        }
    }

    fn url_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.spec.url.as_bytes()))
    }

    /// Writes (or, with no validator, removes) the sidecar for the current part. Best effort:
    /// without it the next run merely starts from zero.
    fn save_resume(&self) {
        let Some(validator) = self.validator.clone() else {
            let _ = std::fs::remove_file(&self.spec.resume);
            return;
        };
        let text = Sidecar {
            validator,
            size: self.total,
            url_sha256: self.url_sha256(),
        }
        .to_json();
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&self.spec.resume)
            .and_then(|mut f| {
                f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                f.write_all(text.as_bytes())
            });
        if let Err(e) = written {
            self.log.debug(
                "cannot keep the resume validator",
                &[
                    ("path", self.spec.resume.display().to_string()),
                    ("error", e.to_string()),
                ],
            );
        }
    }

    /// The sidecar an earlier run left, when it is for this URL.
    fn load_resume(&self) -> Option<Sidecar> {
        let mut text = String::new();
        File::options()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&self.spec.resume)
            .ok()?
            .take(4096)
            .read_to_string(&mut text)
            .ok()?;
        Sidecar::parse(&text).filter(|s| s.url_sha256 == self.url_sha256())
    }

    fn io_fail(&self, what: &str, path: &Path, e: std::io::Error) -> Fail {
        Fail::Text(format!("{what} {}: {e}", path.display()))
    }

    /// Forgets everything about the part file: the next bytes start a new file.
    fn forget(&mut self) {
        let _ = std::fs::remove_file(&self.spec.resume);
        self.validator = None;
        self.total = None;
        self.hasher = Sha256::new();
        self.hashed = 0;
    }

    fn truncate(&mut self, file: &mut File) -> Result<(), Fail> {
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| self.io_fail("truncating", &self.spec.part, e))?;
        self.hasher = Sha256::new();
        self.hashed = 0;
        Ok(())
    }

    /// Opens the part file (0600) for appending, never through a symlink. The first attempt
    /// starts it afresh unless an earlier run's sidecar (sent back as `If-Range`) or a checksum
    /// will vouch for the bytes left there.
    fn open_part(&mut self, first: bool) -> Result<(File, u64), Fail> {
        let mut keep = !first;
        if first {
            if let Some(side) = self.load_resume() {
                self.validator = Some(side.validator);
                self.total = side.size;
                keep = true;
            } else {
                let _ = std::fs::remove_file(&self.spec.resume);
                keep = self.spec.checksum.is_some();
            }
        }
        let part = &self.spec.part;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!keep)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(part)
            .map_err(|e| self.io_fail("opening", part, e))?;
        // A part an older version left 0644 is tightened too.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| self.io_fail("setting the mode of", part, e))?;
        let len = file
            .metadata()
            .map_err(|e| self.io_fail("reading", part, e))?
            .len();
        file.seek(SeekFrom::Start(len))
            .map_err(|e| self.io_fail("seeking in", part, e))?;
        if len < self.hashed {
            self.hasher = Sha256::new();
            self.hashed = 0;
        }
        Ok((file, len))
    }

    /// Waits for the network thread, watching stop requests and the attempt's timeout.
    fn recv(
        &self,
        rx: &Receiver<Msg>,
        until: Option<Instant>,
        cancel: &Cancel,
        timeout: Option<Duration>,
    ) -> Result<Msg, Fail> {
        loop {
            if let Some(sig) = cancel.signal() {
                return Err(Fail::Stopped(sig));
            }
            let wait = match until {
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Fail::TimedOut(format!(
                            "download attempt timed out after {}",
                            crate::config::format_duration(timeout.unwrap_or_default())
                        )));
                    }
                    left.min(POLL)
                }
                None => POLL,
            };
            match rx.recv_timeout(wait) {
                Ok(m) => return Ok(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Fail::Text(
                        "network error: the download thread ended unexpectedly".into(),
                    ));
                }
            }
        }
    }

    /// One HTTP attempt as a sequence of resume decisions (Range, If-Range, 200 vs 206 vs 416,
    /// checksum): long (~190 lines) because the order of those checks is the protocol, and it
    /// reads best in one place.
    fn run_attempt(
        &mut self,
        n: u32,
        timeout: Option<Duration>,
        cancel: &Cancel,
        fact: &mut DownloadAttempt,
    ) -> Result<(), Fail> {
        let until = timeout.map(|t| Instant::now() + t);
        let label = self.spec.file_label();
        if n > 1 {
            self.log.info(
                "retrying file download",
                &[("file", label.clone()), ("attempt", n.to_string())],
            );
        }
        let (mut file, mut offset) = self.open_part(n == 1)?;
        if offset > 0 && self.total.is_some_and(|t| offset > t) {
            self.truncate(&mut file)?;
            offset = 0;
        }
        fact.resumed_from = offset;
        let mut headers = self.spec.headers.clone();
        if offset > 0 {
            self.log.debug(
                "resuming download",
                &[("file", label.clone()), ("resumeFrom", offset.to_string())],
            );
            headers.push(("Range".into(), format!("bytes={offset}-")));
            if let Some(v) = &self.validator {
                headers.push(("If-Range".into(), v.value().to_string()));
            }
        } else if n == 1 {
            self.log.info(
                "starting download",
                &[
                    ("file", label.clone()),
                    ("url", self.spec.shown_url.clone()),
                ],
            );
        }

        let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE);
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let req = Fetch {
            url: self.spec.url.clone(),
            headers,
            timeout,
        };
        std::thread::Builder::new()
            .name("retryx-download".into())
            .spawn(move || fetch(req, tx, go_rx))
            .map_err(|e| Fail::Text(format!("cannot start the download thread: {e}")))?;

        let head = match self.recv(&rx, until, cancel, timeout)? {
            Msg::Head(h) => h,
            Msg::Failed(text) => return Err(Fail::Text(text)),
            Msg::Chunk(_) | Msg::End => {
                return Err(Fail::Text("network error: no response head".into()));
            }
        };
        fact.http_status = Some(head.status);
        let mut complete_already = false;
        match head.status {
            200 => {
                if offset > 0 {
                    let reason = match (&self.validator, head.validator()) {
                        (Some(ours), Some(theirs)) if *ours != theirs => {
                            "the file changed on the server"
                        }
                        _ => "the server ignored the range request",
                    };
                    self.log.info(
                        "server sent the whole file, restarting from zero",
                        &[
                            ("file", label.clone()),
                            ("reason", reason.into()),
                            ("resumeFrom", offset.to_string()),
                        ],
                    );
                    fact.restarted = true;
                    self.truncate(&mut file)?;
                    offset = 0;
                }
                self.validator = head.validator();
                self.total = head.content_length;
                self.save_resume();
            }
            206 => {
                let cr = head.content_range.as_deref().and_then(parse_content_range);
                let changed = match (&self.validator, head.validator()) {
                    (Some(Validator::ETag(ours)), Some(Validator::ETag(theirs))) => *ours != theirs,
                    _ => false,
                };
                let fits = match cr {
                    Some(ContentRange {
                        range: Some((start, _)),
                        total,
                    }) => {
                        start == offset
                            && offset > 0
                            && match (self.total, total) {
                                (Some(a), Some(b)) => a == b,
                                _ => true,
                            }
                    }
                    _ => false,
                };
                if !fits || changed {
                    let _ = go_tx.send(false);
                    let why = if changed {
                        "the file changed on the server".to_string()
                    } else {
                        format!(
                            "unexpected Content-Range {:?} for a request from byte {offset}",
                            head.content_range.as_deref().unwrap_or("(none)")
                        )
                    };
                    self.truncate(&mut file)?;
                    self.forget();
                    return Err(Fail::Text(format!(
                        "HTTP 206 Partial Content: {why}; restarting from zero"
                    )));
                }
                if let Some(ContentRange { total: Some(t), .. }) = cr {
                    self.total = Some(t);
                }
                self.save_resume();
            }
            416 if offset > 0 => {
                let _ = go_tx.send(false);
                let total = head
                    .content_range
                    .as_deref()
                    .and_then(parse_content_range)
                    .and_then(|c| c.total);
                if total == Some(offset) {
                    complete_already = true;
                } else {
                    self.truncate(&mut file)?;
                    self.forget();
                    return Err(Fail::Text(format!(
                        "HTTP 416 Range Not Satisfiable for bytes={offset}-; restarting from zero"
                    )));
                }
            }
            _ => {
                let _ = go_tx.send(false);
                return Err(Fail::Text(head.failure_text()));
            }
        }

        if !complete_already {
            let _ = go_tx.send(true);
            self.progress.start(&label, offset, self.total);
            loop {
                match self.recv(&rx, until, cancel, timeout)? {
                    Msg::Chunk(buf) => {
                        file.write_all(&buf)
                            .map_err(|e| self.io_fail("writing", &self.spec.part, e))?;
                        if self.hashed == offset {
                            self.hasher.update(&buf);
                            self.hashed += buf.len() as u64;
                        }
                        offset += buf.len() as u64;
                        fact.bytes_transferred += buf.len() as u64;
                        self.progress.update(self.log, &label, offset, self.total);
                        if let Some(t) = self.total.filter(|t| offset > *t) {
                            self.truncate(&mut file)?;
                            self.forget();
                            return Err(Fail::Text(format!(
                                "network error: the server sent more than the {t} bytes it announced; restarting from zero"
                            )));
                        }
                    }
                    Msg::End => break,
                    Msg::Failed(text) => {
                        let of = self.total.map(|t| format!(" of {t}")).unwrap_or_default();
                        return Err(Fail::Text(format!("{text} (at byte {offset}{of})")));
                    }
                    Msg::Head(_) => {
                        return Err(Fail::Text("network error: a second response head".into()));
                    }
                }
            }
            if let Some(t) = self.total.filter(|t| offset < *t) {
                return Err(Fail::Text(format!(
                    "connection closed before the end of the body ({offset} of {t} bytes)"
                )));
            }
        }
        self.progress.finish();
        self.complete(file, offset, &label)
    }

    /// Syncs the part, checks the checksum and renames it into place.
    fn complete(&mut self, file: File, size: u64, label: &str) -> Result<(), Fail> {
        let part = self.spec.part.clone();
        file.sync_all()
            .map_err(|e| self.io_fail("syncing", &part, e))?;
        drop(file);
        // Every byte came through this run's transfers (checked by If-Range) when the hasher saw
        // them all; otherwise a part left by an earlier run was trusted and is re-read.
        let all_ours = self.hashed == size;
        let sha = if all_ours {
            hex::encode(self.hasher.clone().finalize())
        } else {
            sha256_file(&part).map_err(|e| self.io_fail("reading", &part, e))?
        };
        if let Some(want) = &self.spec.checksum
            && *want != sha
        {
            let _ = std::fs::remove_file(&part);
            self.forget();
            // A whole file of this run that does not match means the checksum given (or the
            // file on the server) is wrong: fetching it again would not help, so say so in
            // words the classifier takes as final. An old part that spoiled it is worth a retry.
            let why = if all_ours {
                "invalid parameter 'checksum' for the file the server sends"
            } else {
                "the part left by an earlier run did not belong to this file; starting over"
            };
            return Err(Fail::Text(format!(
                "checksum mismatch: expected sha256:{want}, got sha256:{sha} ({size} bytes): {why}"
            )));
        }
        std::fs::rename(&part, &self.spec.dest).map_err(|e| {
            Fail::Text(format!(
                "renaming {} to {}: {e}",
                part.display(),
                self.spec.dest.display()
            ))
        })?;
        if let Some(dir) = self
            .spec
            .dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.log.info(
            "download complete",
            &[
                ("file", label.to_string()),
                ("size", size.to_string()),
                ("sha256", sha.clone()),
            ],
        );
        let _ = std::fs::remove_file(&self.spec.resume);
        self.done = Some(Done { size, sha256: sha });
        Ok(())
    }
}

impl Attempter for DownloadAttempter<'_> {
    fn attempt(
        &mut self,
        attempt: u32,
        _max_attempts: u32,
        timeout: Option<Duration>,
        cancel: &Cancel,
    ) -> AttemptOutput {
        let mut fact = DownloadAttempt {
            bytes_transferred: 0,
            resumed_from: 0,
            http_status: None,
            restarted: false,
        };
        let result = self.run_attempt(attempt, timeout, cancel, &mut fact);
        self.progress.finish();
        self.facts.push((attempt, fact));
        let failed = |exit: ExitKind, text: String| {
            let mut out = AttemptOutput::synthetic(exit);
            out.stderr_bytes = text.len() as u64;
            out.stderr_tail = text.into_bytes();
            out
        };
        match result {
            Ok(()) => AttemptOutput::synthetic(ExitKind::Code(0)),
            Err(Fail::Text(t)) => failed(ExitKind::Code(1), self.spec.scrub(&t)),
            Err(Fail::TimedOut(t)) => failed(ExitKind::TimedOut, t),
            Err(Fail::Stopped(sig)) => {
                let mut out = failed(ExitKind::Code(1), format!("stopped by signal {sig}"));
                out.interrupted_by = Some(sig);
                out
            }
        }
    }
}

/// A download ready to run: what to fetch and what `dest` held before.
pub(crate) struct Ready {
    pub spec: DownloadSpec,
    pub before: Before,
}

/// What `prepare` decided.
pub(crate) enum Prepared {
    Fetch(Box<Ready>),
    /// `dest` is already what was asked for: nothing to run.
    UpToDate {
        spec: Box<DownloadSpec>,
        size: u64,
        sha256: String,
        reason: String,
    },
    /// A download key is wrong (bad usage).
    BadKeys(DownloadError),
    /// `dest` could not be looked at.
    Unusable(DownloadError),
}

/// Everything a download needs before the engine runs: the keys checked, `dest` looked at,
/// and the classifier told that other client errors (410, 405...) are final.
pub(crate) fn prepare(config: &Config, plan: &mut Plan) -> Prepared {
    let spec = match DownloadSpec::from_config(config) {
        Ok(spec) => spec,
        Err(e) => return Prepared::BadKeys(e),
    };
    plan.classifier.user_patterns.push(client_error_pattern());
    // A 503/429's Retry-After (first line of the failure text) sets the next wait, as
    // `delay_from_output` does for a command (still capped by max_delay); the user's own
    // pattern, when given, wins.
    if plan.delay_from_output.is_none() {
        plan.delay_from_output = regex::Regex::new(r"(?m)^Retry-After: ([0-9]+)$").ok();
    }
    match precheck(&spec) {
        Ok(Precheck::Fetch(before)) => Prepared::Fetch(Box::new(Ready { spec, before })),
        Ok(Precheck::UpToDate {
            size,
            sha256,
            reason,
        }) => Prepared::UpToDate {
            spec: Box::new(spec),
            size,
            sha256,
            reason,
        },
        Err(e) => Prepared::Unusable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ErrorClass;
    use crate::classify::builtin_class;

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                range: Some((100, 199)),
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange {
                range: Some((5, 9)),
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */42"),
            Some(ContentRange {
                range: None,
                total: Some(42)
            })
        );
        for bad in [
            "",
            "bytes",
            "bytes 9-5/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes */*",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn checksums_are_sha256_hex() {
        let hex = "A".repeat(64);
        assert_eq!(
            parse_checksum(&format!("sha256:{hex}")).unwrap(),
            "a".repeat(64)
        );
        assert_eq!(parse_checksum(&"b".repeat(64)).unwrap(), "b".repeat(64));
        assert!(parse_checksum("md5:abc").is_err());
        assert!(parse_checksum(&format!("sha256:{}", "z".repeat(64))).is_err());
        assert!(parse_checksum("sha256:abcd").is_err());
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            shown_url("https://user:pw@example.com:8443/a/b.iso?token=x").as_deref(),
            Some("https://example.com:8443")
        );
        assert_eq!(
            shown_url("https://example.com/dl/T0KEN/b.iso").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(shown_url("ftp://example.com/x"), None);
        assert_eq!(shown_url("not a url"), None);
        assert_eq!(strip_secrets("htp://u:p@h/x?t=1"), "htp://h");
        assert_eq!(
            url_file_name("http://h/a/b.iso?x=1").as_deref(),
            Some("b.iso")
        );
        assert_eq!(url_file_name("http://h/a/"), None);
        assert_eq!(
            default_operation("/tmp/vm-disk1.vmdk", "http://h/x"),
            "download vm-disk1.vmdk"
        );
    }

    #[test]
    fn failure_texts_get_the_classes_the_issue_asks_for() {
        let head = |status: u16, reason: &str| Head {
            status,
            reason: reason.into(),
            content_length: None,
            content_range: None,
            etag: None,
            last_modified: None,
            retry_after: None,
        };
        let class = builtin_class;
        assert_eq!(
            class(&head(503, "Service Unavailable").failure_text()),
            Some((ErrorClass::ServiceUnavailable, true))
        );
        assert_eq!(
            class(&head(429, "Too Many Requests").failure_text()),
            Some((ErrorClass::RateLimitExceeded, true))
        );
        for (s, r) in [
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
        ] {
            assert_eq!(
                class(&head(s, r).failure_text()).map(|c| c.1),
                Some(false),
                "{s}"
            );
        }
        assert_eq!(
            class(&describe_io(&std::io::Error::from(
                std::io::ErrorKind::ConnectionReset
            ))),
            Some((ErrorClass::ConnectionError, true))
        );
        assert_eq!(
            class("connection closed before the end of the body (10 of 20 bytes)"),
            Some((ErrorClass::ConnectionError, true))
        );
        let gone = head(410, "Gone").failure_text();
        assert!(client_error_pattern().regex.is_match(&gone));
        assert!(
            !client_error_pattern()
                .regex
                .is_match(&head(404, "Not Found").failure_text())
        );
        assert_eq!(retry_after_seconds(" 12 "), Some(12));
        assert_eq!(
            retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0),
            "a date in the past"
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        assert!(retry_after_seconds(&soon).is_some_and(|s| (28..=30).contains(&s)));
        assert_eq!(retry_after_seconds("soon"), None);
        let mut h = head(404, "Not Found");
        h.retry_after = Some("7".into());
        assert!(
            !h.failure_text().contains("Retry-After"),
            "only 503 and 429"
        );
        let mut h = head(503, "Service Unavailable");
        h.retry_after = Some("7".into());
        assert_eq!(
            h.failure_text(),
            "Retry-After: 7\nHTTP 503 Service Unavailable"
        );
    }

    #[test]
    fn sidecars_round_trip_and_damaged_ones_are_refused() {
        for validator in [
            Validator::ETag("\"v1\"".into()),
            Validator::LastModified("Wed, 02 Dec 2026 10:00:00 GMT".into()),
        ] {
            for size in [None, Some(3_000_000)] {
                let s = Sidecar {
                    validator: validator.clone(),
                    size,
                    url_sha256: "ab".repeat(32),
                };
                assert_eq!(Sidecar::parse(&s.to_json()), Some(s));
            }
        }
        for bad in [
            "",
            "{}",
            r#"{"validator":"md5","value":"x","url_sha256":"a"}"#,
            r#"{"validator":"etag","value":"x","size":-1,"url_sha256":"a"}"#,
            r#"{"validator":"etag","value":"x"}"#,
        ] {
            assert_eq!(Sidecar::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn weak_etags_are_not_used_for_if_range() {
        let mut h = Head {
            status: 200,
            reason: "OK".into(),
            content_length: Some(1),
            content_range: None,
            etag: Some("W/\"x\"".into()),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            retry_after: None,
        };
        assert_eq!(
            h.validator(),
            Some(Validator::LastModified(
                "Mon, 01 Jan 2024 00:00:00 GMT".into()
            ))
        );
        h.etag = Some("\"v1\"".into());
        assert_eq!(h.validator(), Some(Validator::ETag("\"v1\"".into())));
    }
}
