//! Notification sinks: Slack, Datadog (series and events), Prometheus (Pushgateway, remote
//! write, node_exporter textfile) and a generic JSON webhook. Turns a `Report` (one operation,
//! a session, or a test message) into requests for every configured system, delivers them in
//! parallel under per-system timeouts, bounded retries and one time budget for the run, and
//! returns a redacted outcome per system. It must never change an operation's result (unless a
//! system says `required: true`, which the caller reads from `NotifyResult::required_failed`),
//! never talk HTTP from anywhere else, and never log or record a secret.

pub mod datadog;
pub mod deliver;
pub mod prometheus;
pub mod redact;
pub mod slack;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::config::notify::{AlertThresholds, ExternalSystem, NotifyOn, SystemType};
use crate::log::Logger;
use crate::record::{OperationRecord, OperationStatus};
use deliver::{Answer, Delivery, DeliveryPolicy, HttpRequest, Verdict};
use redact::{Redactor, redact_url};

/// Default per-request timeout (seed: `timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default delivery retries (seed: `retry_count`).
pub const DEFAULT_RETRY_COUNT: u32 = 2;
/// Default wait between delivery retries (seed: `retry_delay`).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Default bound on all notification delivery of one run (config `notification_timeout`).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// What a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Operation,
    Session,
    Test,
}

/// A threshold alert (from `monitoring.alerts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub name: String,
    pub message: String,
    /// `warning` or `error`.
    pub severity: String,
}

/// One attempt as the sinks need it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptPoint {
    pub number: u32,
    /// Milliseconds since the epoch when the attempt ended.
    pub end_ms: i64,
    pub execution_time: f64,
    pub succeeded: bool,
}

/// What is being notified about, already reduced to what the sinks show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub kind: ReportKind,
    pub operation: String,
    pub operation_id: Option<String>,
    pub session_id: String,
    /// `completed`, `failed`, `aborted`, `refused`, `skipped`, `test`.
    pub status: String,
    pub succeeded: bool,
    /// Operations described: 1, or a session's total.
    pub operations: u32,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub duration_secs: f64,
    pub last_error_class: Option<String>,
    pub last_error_message: Option<String>,
    pub host: String,
    /// RFC 3339.
    pub end_time: String,
    pub end_epoch: i64,
    pub attempts: Vec<AttemptPoint>,
    pub alerts: Vec<Alert>,
    /// What the generic webhook posts: the operation or session JSON.
    pub document: Value,
}

fn epoch_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// This machine's host name (for reports built outside an operation).
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

impl Report {
    /// The report of one finished operation.
    pub fn from_operation(op: &OperationRecord, alerts: Vec<Alert>) -> Self {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let end_ms = epoch_ms(&op.end_time).unwrap_or(now_ms);
        let attempts = op
            .attempts
            .iter()
            .map(|a| AttemptPoint {
                number: a.attempt_number,
                end_ms: epoch_ms(&a.end_time).unwrap_or(end_ms),
                execution_time: a.execution_time,
                succeeded: a.status == crate::record::AttemptStatus::Success,
            })
            .collect();
        Report {
            kind: ReportKind::Operation,
            operation: op.operation_name.clone(),
            operation_id: Some(op.operation_id.clone()),
            session_id: op.session_id.clone(),
            status: op.status.as_str().to_string(),
            succeeded: matches!(
                op.status,
                OperationStatus::Completed | OperationStatus::Skipped
            ),
            operations: 1,
            attempt_count: op.attempt_count,
            max_attempts: op.max_attempts,
            duration_secs: op.execution_time,
            last_error_class: op.final_error_type.map(|c| c.as_str().to_string()),
            last_error_message: op.final_error_message.clone(),
            host: op.host.clone(),
            end_time: op.end_time.clone(),
            end_epoch: end_ms.div_euclid(1000),
            attempts,
            alerts,
            document: serde_json::to_value(op).unwrap_or(Value::Null),
        }
    }

    /// The message `retryx notify test` sends.
    pub fn test_message(session_id: &str) -> Self {
        let now = chrono::Utc::now();
        let end_ms = now.timestamp_millis();
        Report {
            kind: ReportKind::Test,
            operation: "retryx_notify_test".into(),
            operation_id: None,
            session_id: session_id.to_string(),
            status: "test".into(),
            succeeded: true,
            operations: 1,
            attempt_count: 1,
            max_attempts: 1,
            duration_secs: 0.0,
            last_error_class: None,
            last_error_message: None,
            host: hostname(),
            end_time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            end_epoch: end_ms.div_euclid(1000),
            attempts: vec![AttemptPoint {
                number: 1,
                end_ms,
                execution_time: 0.0,
                succeeded: true,
            }],
            alerts: vec![],
            document: serde_json::json!({
                "test": true,
                "message": "retryx notify test",
                "session_id": session_id,
                "host": hostname(),
            }),
        }
    }

    /// The report of a session record (seed "Session Statistics": `session_id`,
    /// `session_status`, `session_end`, `session_duration`, `final_statistics`), with the
    /// record's `alerts` when it has them.
    pub fn from_session(doc: &Value) -> Option<Self> {
        let session_id = doc.get("session_id")?.as_str()?.to_string();
        let stats = doc.get("final_statistics").cloned().unwrap_or(Value::Null);
        let num = |k: &str| stats.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let total = num("total_operations").max(0.0) as u32;
        let failed = num("failed_operations").max(0.0) as u32;
        let retries = num("total_retry_attempts").max(0.0) as u32;
        let now = chrono::Utc::now();
        let end_time = doc
            .get("session_end")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let end_ms = epoch_ms(&end_time).unwrap_or_else(|| now.timestamp_millis());
        let alerts = doc
            .get("alerts")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Alert::from_value).collect())
            .unwrap_or_default();
        Some(Report {
            kind: ReportKind::Session,
            operation: "session".into(),
            operation_id: None,
            session_id,
            status: doc
                .get("session_status")
                .and_then(Value::as_str)
                .unwrap_or("completed")
                .to_string(),
            succeeded: failed == 0,
            operations: total,
            attempt_count: total.saturating_add(retries),
            max_attempts: total.saturating_add(retries),
            duration_secs: doc
                .get("session_duration")
                .and_then(Value::as_f64)
                .unwrap_or_else(|| num("total_execution_time")),
            last_error_class: None,
            last_error_message: (failed > 0)
                .then(|| format!("{failed} of {total} operation(s) failed")),
            host: doc
                .get("host")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(hostname),
            end_time,
            end_epoch: end_ms.div_euclid(1000),
            attempts: vec![],
            alerts,
            document: doc.clone(),
        })
    }

    /// Which `notify_on` events this report is.
    pub fn events(&self) -> Vec<NotifyOn> {
        let mut e = Vec::new();
        if self.succeeded {
            e.push(NotifyOn::Success);
        } else {
            e.push(NotifyOn::Failure);
        }
        if self.attempt_count > 1 {
            e.push(NotifyOn::Retry);
        }
        if !self.alerts.is_empty() {
            e.push(NotifyOn::Alert);
        }
        e
    }

    #[cfg(test)]
    pub fn sample() -> Self {
        let mut r = Report::test_message("retry_1_abc");
        r.kind = ReportKind::Operation;
        r.operation = "vmware_vm_create".into();
        r.operation_id = Some("vmware_vm_create_1_abc".into());
        r.status = "failed".into();
        r.succeeded = false;
        r.attempt_count = 3;
        r.max_attempts = 3;
        r.duration_secs = 4.5;
        r.last_error_class = Some("connection_error".into());
        r.last_error_message = Some("Connection refused".into());
        r
    }
}

// ----------------------------------------------------------------------------------- metrics

/// A Datadog metric kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Count,
    Gauge,
}

/// One Datadog metric of a report (`retry.<dd_name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub dd_name: &'static str,
    pub kind: MetricKind,
    pub value: f64,
    pub dd_unit: Option<&'static str>,
}

/// `retry.attempts`, `retry.retries`, `retry.duration`, `retry.success`, `retry.operations`.
pub fn dd_metrics(r: &Report) -> Vec<Metric> {
    let m = |dd_name, kind, value, dd_unit| Metric {
        dd_name,
        kind,
        value,
        dd_unit,
    };
    vec![
        m(
            "attempts",
            MetricKind::Count,
            f64::from(r.attempt_count),
            None,
        ),
        m(
            "retries",
            MetricKind::Count,
            f64::from(r.attempt_count.saturating_sub(1)),
            None,
        ),
        m(
            "duration",
            MetricKind::Gauge,
            r.duration_secs,
            Some("second"),
        ),
        m(
            "success",
            MetricKind::Gauge,
            if r.succeeded { 1.0 } else { 0.0 },
            None,
        ),
        m(
            "operations",
            MetricKind::Count,
            f64::from(r.operations),
            None,
        ),
    ]
}

/// A Prometheus metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromKind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: PromKind,
}

const fn fam(name: &'static str, help: &'static str, kind: PromKind) -> PromFamily {
    PromFamily { name, help, kind }
}

/// Gauges describing the last run of an operation (every Prometheus sink).
pub const LAST_RUN: [PromFamily; 5] = [
    fam(
        "retryx_operation_attempts",
        "Attempts the last run of the operation used.",
        PromKind::Gauge,
    ),
    fam(
        "retryx_operation_duration_seconds",
        "Duration of the last run of the operation, waits included.",
        PromKind::Gauge,
    ),
    fam(
        "retryx_operation_success",
        "1 if the last run of the operation succeeded, else 0.",
        PromKind::Gauge,
    ),
    fam(
        "retryx_operation_last_run_timestamp_seconds",
        "When the last run of the operation ended, in seconds since the epoch.",
        PromKind::Gauge,
    ),
    fam(
        "retryx_attempt_duration_seconds",
        "Duration of each attempt of the last run.",
        PromKind::Gauge,
    ),
];

/// Counters accumulated across runs (textfile only: it keeps the previous values).
pub const COUNTERS: [PromFamily; 3] = [
    fam(
        "retryx_attempts_total",
        "Attempts made, all runs of the operation.",
        PromKind::Counter,
    ),
    fam(
        "retryx_retries_total",
        "Retries made (attempts after the first), all runs of the operation.",
        PromKind::Counter,
    ),
    fam(
        "retryx_operations_total",
        "Runs of the operation, by final status.",
        PromKind::Counter,
    ),
];

fn lbl(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

/// Samples of the last-run gauges. `base` labels are added to each (empty for Pushgateway,
/// whose grouping key carries job/instance/operation).
fn last_run_samples(
    r: &Report,
    base: &[(&str, &str)],
) -> BTreeMap<&'static str, Vec<prometheus::Sample>> {
    let mut m = BTreeMap::new();
    let b = lbl(base);
    m.insert(
        LAST_RUN[0].name,
        vec![(b.clone(), f64::from(r.attempt_count))],
    );
    m.insert(LAST_RUN[1].name, vec![(b.clone(), r.duration_secs)]);
    m.insert(
        LAST_RUN[2].name,
        vec![(b.clone(), if r.succeeded { 1.0 } else { 0.0 })],
    );
    m.insert(LAST_RUN[3].name, vec![(b.clone(), r.end_epoch as f64)]);
    let attempts = r
        .attempts
        .iter()
        .map(|a| {
            let mut l = b.clone();
            l.push(("attempt".to_string(), a.number.to_string()));
            l.sort();
            (l, a.execution_time)
        })
        .collect();
    m.insert(LAST_RUN[4].name, attempts);
    m
}

fn counter_samples(
    r: &Report,
    base: &[(&str, &str)],
) -> BTreeMap<&'static str, Vec<prometheus::Sample>> {
    let mut m = BTreeMap::new();
    let b = lbl(base);
    m.insert(
        COUNTERS[0].name,
        vec![(b.clone(), f64::from(r.attempt_count))],
    );
    m.insert(
        COUNTERS[1].name,
        vec![(b.clone(), f64::from(r.attempt_count.saturating_sub(1)))],
    );
    let mut with_status = b;
    with_status.push(("status".to_string(), r.status.clone()));
    with_status.sort();
    m.insert(COUNTERS[2].name, vec![(with_status, 1.0)]);
    m
}

/// The Pushgateway body (labels come from the grouping key).
pub fn pushgateway_body(r: &Report) -> String {
    let samples = last_run_samples(r, &[]);
    let fams: Vec<(PromFamily, Vec<prometheus::Sample>)> = LAST_RUN
        .iter()
        .map(|f| (f.clone(), samples.get(f.name).cloned().unwrap_or_default()))
        .collect();
    prometheus::exposition(&fams)
}

/// The remote-write series: attempts and attempt durations sampled at each attempt's end,
/// the run's duration and success at the run's end.
pub fn remote_write_series(r: &Report, job: &str) -> Vec<prometheus::RwSeries> {
    let base = vec![
        ("instance".to_string(), r.host.clone()),
        ("job".to_string(), job.to_string()),
        ("operation".to_string(), r.operation.clone()),
    ];
    let end_ms = r
        .attempts
        .iter()
        .map(|a| a.end_ms)
        .max()
        .unwrap_or(r.end_epoch * 1000)
        .max(r.end_epoch * 1000);
    let mut attempts_seen = Vec::new();
    let mut attempt_durations = Vec::new();
    for a in &r.attempts {
        attempts_seen.push((a.end_ms, f64::from(a.number)));
        attempt_durations.push((a.end_ms, a.execution_time));
    }
    vec![
        prometheus::RwSeries {
            name: "retryx_operation_attempts",
            labels: base.clone(),
            samples: attempts_seen,
        },
        prometheus::RwSeries {
            name: "retryx_attempt_duration_seconds",
            labels: base.clone(),
            samples: attempt_durations,
        },
        prometheus::RwSeries {
            name: "retryx_operation_duration_seconds",
            labels: base.clone(),
            samples: vec![(end_ms, r.duration_secs)],
        },
        prometheus::RwSeries {
            name: "retryx_operation_success",
            labels: base,
            samples: vec![(end_ms, if r.succeeded { 1.0 } else { 0.0 })],
        },
    ]
}

// ------------------------------------------------------------------------------ resolution

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SystemError {
    #[error("auth_header must be \"Bearer TOKEN\", \"Basic CREDENTIALS\" or \"Header-Name value\"")]
    AuthHeader,
    #[error("url is required for type {0}")]
    MissingUrl(&'static str),
    #[error("url must start with http:// or https://")]
    BadUrl,
    #[error("textfile_dir is required for type prometheus_textfile")]
    MissingTextfileDir,
    #[error("no Datadog API key: give auth_header \"DD-API-KEY <key>\" or set DD_API_KEY")]
    NoApiKey,
    #[error("{0}")]
    Datadog(#[from] datadog::DatadogError),
    #[error("encoding the request failed: {0}")]
    Encode(String),
}

/// `auth_header` as the seed uses it: `Bearer x` / `Basic x` → Authorization; `Name value`
/// (or `Name: value`) → header Name.
pub fn parse_auth_header(s: &str) -> Result<(String, String), SystemError> {
    let s = s.trim();
    let (first, rest) = s.split_once([' ', ':']).ok_or(SystemError::AuthHeader)?;
    let rest = rest.trim_start_matches([':', ' ']).trim();
    if first.is_empty() || rest.is_empty() {
        return Err(SystemError::AuthHeader);
    }
    let scheme = first.to_ascii_lowercase();
    if ["bearer", "basic", "token", "digest", "negotiate"].contains(&scheme.as_str()) {
        return Ok(("Authorization".into(), s.to_string()));
    }
    if !first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(SystemError::AuthHeader);
    }
    Ok((first.to_string(), rest.to_string()))
}

pub fn type_name(t: SystemType) -> &'static str {
    match t {
        SystemType::Slack => "slack",
        SystemType::Datadog => "datadog",
        SystemType::DatadogEvents => "datadog_events",
        SystemType::PrometheusPushgateway => "prometheus_pushgateway",
        SystemType::PrometheusRemoteWrite => "prometheus_remote_write",
        SystemType::PrometheusTextfile => "prometheus_textfile",
        SystemType::Webhook => "webhook",
    }
}

/// The system's type: as given, else inferred from textfile_dir, URL and name, with the reason.
pub fn infer_type(sys: &ExternalSystem) -> (SystemType, Option<String>) {
    if let Some(t) = sys.system_type {
        return (t, None);
    }
    let name = sys.name.to_ascii_lowercase();
    let url = sys.url.as_deref().unwrap_or("").to_ascii_lowercase();
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
        None => ("", url.as_str()),
    };
    let host = host.rsplit('@').next().unwrap_or(host);
    let path = path.split('?').next().unwrap_or(path);
    let rule = |t: SystemType, why: String| (t, Some(why));
    if sys.textfile_dir.is_some() {
        return rule(SystemType::PrometheusTextfile, "textfile_dir is set".into());
    }
    if host.starts_with("hooks.slack.com") {
        return rule(SystemType::Slack, "url host hooks.slack.com".into());
    }
    if path.contains("/api/v1/events") {
        return rule(SystemType::DatadogEvents, "url path /api/v1/events".into());
    }
    if host.contains("datadoghq") || host.contains("ddog-gov") {
        return rule(SystemType::Datadog, format!("url host {host}"));
    }
    if path.ends_with("/api/v1/write") || path.ends_with("/api/v1/push") {
        return rule(
            SystemType::PrometheusRemoteWrite,
            "url path /api/v1/write".into(),
        );
    }
    if path.contains("/metrics/job/") {
        return rule(
            SystemType::PrometheusPushgateway,
            "url path /metrics/job/".into(),
        );
    }
    if path.starts_with("/services/") || name.contains("slack") {
        return rule(
            SystemType::Slack,
            "name or /services/ path of a Slack hook".into(),
        );
    }
    if name.contains("datadog") || path.ends_with("/series") {
        return rule(SystemType::Datadog, "name or /series path".into());
    }
    if name.contains("pushgateway") {
        return rule(SystemType::PrometheusPushgateway, "name".into());
    }
    rule(
        SystemType::Webhook,
        "no rule matched: generic JSON webhook".into(),
    )
}

fn is_metric_sink(t: SystemType) -> bool {
    matches!(
        t,
        SystemType::Datadog
            | SystemType::PrometheusPushgateway
            | SystemType::PrometheusRemoteWrite
            | SystemType::PrometheusTextfile
    )
}

/// Default `notify_on`: metric sinks every run; message sinks failures and alerts.
pub fn default_notify_on(t: SystemType) -> Vec<NotifyOn> {
    if is_metric_sink(t) {
        vec![
            NotifyOn::Failure,
            NotifyOn::Success,
            NotifyOn::Retry,
            NotifyOn::Alert,
        ]
    } else {
        vec![NotifyOn::Failure, NotifyOn::Alert]
    }
}

// --------------------------------------------------------------------------------- outcome

/// How delivery to one external system went; listed in `retry.notifications` and the session
/// record. Every string in it is redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    /// The system's `name` from the config.
    pub system: String,
    /// The receiver kind (`slack`, `datadog`, ...), and whether it was inferred from name and
    /// URL (`inferred_from` says how).
    pub kind: String,
    pub inferred: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inferred_from: Option<String>,
    /// `sent`, `failed`, `skipped` (not for this event), `disabled`.
    pub status: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    /// The error, redacted.
    pub error: Option<String>,
    /// The receiver's answer, first line, redacted (Slack's `ok` / `no_service`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Where it went: method and redacted URL, or the textfile path.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub required: bool,
    /// Seconds, waits included.
    #[serde(default)]
    pub duration: f64,
}

/// All outcomes of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NotifyResult {
    pub outcomes: Vec<NotificationOutcome>,
    /// A system with `required: true` failed: the caller fails the operation.
    pub required_failed: bool,
}

/// Which systems a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// End of an operation: each system by its `notify_on`.
    Run,
    /// `retryx notify test`: every enabled system.
    Test,
    /// The role's "send retry metrics to external systems": metric sinks and webhooks.
    Metrics,
    /// The role's "send retry alerts": message sinks, only when there are alerts.
    Alerts,
}

/// Settings of a notification run.
#[derive(Debug, Clone)]
pub struct NotifySettings<'a> {
    pub systems: &'a [ExternalSystem],
    /// `external_integration`: false turns every system off.
    pub external_integration: Option<bool>,
    /// Bound on the whole run's delivery.
    pub budget: Duration,
}

struct Prepared {
    kind: SystemType,
    request: Option<HttpRequest>,
    textfile: Option<PathBuf>,
    target: String,
}

fn with_headers(
    sys: &ExternalSystem,
    red: &mut Redactor,
) -> Result<Vec<(String, String)>, SystemError> {
    let mut headers = Vec::new();
    if let Some(a) = &sys.auth_header {
        let (k, v) = parse_auth_header(a)?;
        red.add(&v);
        if let Some((_, tok)) = v.split_once(' ') {
            red.add(tok);
        }
        headers.push((k, v));
    }
    for (k, v) in sys.headers.iter().flatten() {
        red.add(v);
        headers.push((k.clone(), v.clone()));
    }
    Ok(headers)
}

fn need_url(sys: &ExternalSystem, t: SystemType) -> Result<String, SystemError> {
    let u = sys
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(SystemError::MissingUrl(type_name(t)))?;
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(SystemError::BadUrl);
    }
    Ok(u.to_string())
}

fn json_request(
    method: &str,
    url: String,
    mut headers: Vec<(String, String)>,
    body: &Value,
) -> HttpRequest {
    headers.push(("Content-Type".into(), "application/json".into()));
    HttpRequest {
        method: method.to_string(),
        url,
        headers,
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

fn prepare(
    sys: &ExternalSystem,
    kind: SystemType,
    report: &Report,
    red: &mut Redactor,
) -> Result<Prepared, SystemError> {
    if let Some(u) = &sys.url {
        red.add_url(u);
    }
    let tags: Vec<String> = sys.tags.clone().unwrap_or_default();
    let mut headers = with_headers(sys, red)?;
    let method = sys
        .method
        .as_deref()
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty());
    let (request, textfile) = match kind {
        SystemType::Slack => {
            let url = need_url(sys, kind)?;
            (
                Some(json_request("POST", url, headers, &slack::payload(report))),
                None,
            )
        }
        SystemType::Datadog | SystemType::DatadogEvents => {
            let has_key = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("dd-api-key"));
            if !has_key {
                match std::env::var("DD_API_KEY") {
                    Ok(k) if !k.trim().is_empty() => {
                        red.add(k.trim());
                        headers.push(("DD-API-KEY".into(), k.trim().to_string()));
                    }
                    _ => return Err(SystemError::NoApiKey),
                }
            }
            let url = sys.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
            if kind == SystemType::DatadogEvents {
                let endpoint = datadog::endpoint(url, sys.site.as_deref(), "/api/v1/events")?;
                let body = datadog::event(report, &tags);
                (Some(json_request("POST", endpoint, headers, &body)), None)
            } else {
                let v1 = match sys.api_version {
                    Some(1) => true,
                    Some(2) => false,
                    Some(other) => return Err(datadog::DatadogError::ApiVersion(other).into()),
                    None => {
                        url.is_some_and(|u| u.trim_end_matches('/').ends_with("/api/v1/series"))
                    }
                };
                let path = if v1 {
                    "/api/v1/series"
                } else {
                    "/api/v2/series"
                };
                let endpoint = datadog::endpoint(url, sys.site.as_deref(), path)?;
                let metrics = dd_metrics(report);
                let body = if v1 {
                    datadog::series_v1(report, &metrics, &tags)
                } else {
                    datadog::series_v2(report, &metrics, &tags)
                };
                let raw =
                    serde_json::to_vec(&body).map_err(|e| SystemError::Encode(e.to_string()))?;
                let (enc, bytes) = datadog::compress(&raw, sys.compression.as_deref())?;
                headers.push(("Content-Type".into(), "application/json".into()));
                if let Some(e) = enc {
                    headers.push(("Content-Encoding".into(), e.into()));
                }
                (
                    Some(HttpRequest {
                        method: "POST".into(),
                        url: endpoint,
                        headers,
                        body: bytes,
                    }),
                    None,
                )
            }
        }
        SystemType::PrometheusPushgateway => {
            let url = need_url(sys, kind)?;
            let target = prometheus::pushgateway_url(
                &url,
                sys.job.as_deref(),
                &report.host,
                &report.operation,
            );
            headers.push(("Content-Type".into(), "text/plain; version=0.0.4".into()));
            // PUT by default: the group (job, instance, operation) is replaced whole, so no
            // series of an earlier run (an attempt that no longer exists) lingers. POST only
            // when asked for explicitly.
            let m = match method.as_deref() {
                Some("POST") => "POST",
                _ => "PUT",
            };
            (
                Some(HttpRequest {
                    method: m.into(),
                    url: target,
                    headers,
                    body: pushgateway_body(report).into_bytes(),
                }),
                None,
            )
        }
        SystemType::PrometheusRemoteWrite => {
            let url = need_url(sys, kind)?;
            let job = sys.job.as_deref().unwrap_or("retryx");
            let req = prometheus::write_request(remote_write_series(report, job));
            let body = prometheus::encode_write_request(&req)
                .map_err(|e| SystemError::Encode(e.to_string()))?;
            for (k, v) in prometheus::REMOTE_WRITE_HEADERS {
                headers.push((k.into(), v.into()));
            }
            (
                Some(HttpRequest {
                    method: "POST".into(),
                    url,
                    headers,
                    body,
                }),
                None,
            )
        }
        SystemType::PrometheusTextfile => {
            let dir = sys
                .textfile_dir
                .as_deref()
                .ok_or(SystemError::MissingTextfileDir)?;
            (None, Some(PathBuf::from(dir)))
        }
        SystemType::Webhook => {
            let url = need_url(sys, kind)?;
            let m = match method.as_deref() {
                Some("PUT") => "PUT",
                Some("PATCH") => "PATCH",
                _ => "POST",
            };
            (Some(json_request(m, url, headers, &report.document)), None)
        }
    };
    let target = match (&request, &textfile) {
        (Some(r), _) => format!("{} {}", r.method, redact_url(&r.url)),
        (None, Some(dir)) => dir.join(prometheus::TEXTFILE_NAME).display().to_string(),
        _ => String::new(),
    };
    Ok(Prepared {
        kind,
        request,
        textfile,
        target,
    })
}

fn judge_for(kind: SystemType) -> fn(&Answer) -> Verdict {
    match kind {
        SystemType::Slack => slack::verdict,
        SystemType::Datadog | SystemType::DatadogEvents => datadog::verdict,
        _ => deliver::http_verdict,
    }
}

fn wanted(sys: &ExternalSystem, kind: SystemType, report: &Report, purpose: Purpose) -> bool {
    match purpose {
        Purpose::Test => true,
        Purpose::Metrics => is_metric_sink(kind) || kind == SystemType::Webhook,
        Purpose::Alerts => !is_metric_sink(kind) && !report.alerts.is_empty(),
        Purpose::Run => {
            let on = sys
                .notify_on
                .clone()
                .unwrap_or_else(|| default_notify_on(kind));
            report.events().iter().any(|e| on.contains(e))
        }
    }
}

fn deliver_one(
    sys: &ExternalSystem,
    report: &Report,
    purpose: Purpose,
    deadline: Instant,
) -> NotificationOutcome {
    let (kind, inferred) = infer_type(sys);
    let required = sys.required.unwrap_or(false);
    let mut out = NotificationOutcome {
        system: sys.name.clone(),
        kind: type_name(kind).to_string(),
        inferred: inferred.is_some(),
        inferred_from: inferred,
        status: "skipped".into(),
        http_status: None,
        attempts: 0,
        error: None,
        response: None,
        target: sys.url.as_deref().map(redact_url).unwrap_or_default(),
        required,
        duration: 0.0,
    };
    if sys.enabled == Some(false) {
        out.status = "disabled".into();
        return out;
    }
    if !wanted(sys, kind, report, purpose) {
        return out;
    }
    let started = Instant::now();
    let mut red = Redactor::new();
    let prepared = match prepare(sys, kind, report, &mut red) {
        Ok(p) => p,
        Err(e) => {
            out.status = "failed".into();
            out.error = Some(red.scrub(&e.to_string()));
            return out;
        }
    };
    out.target = prepared.target.clone();
    if let Some(dir) = &prepared.textfile {
        out.attempts = 1;
        let base = [("operation", report.operation.as_str())];
        let mut current = last_run_samples(report, &base);
        current.extend(counter_samples(report, &base));
        let families: Vec<PromFamily> = LAST_RUN.iter().chain(COUNTERS.iter()).cloned().collect();
        match prometheus::write_textfile(dir, &families, &report.operation, &current) {
            Ok(_) => out.status = "sent".into(),
            Err(e) => {
                out.status = "failed".into();
                out.error = Some(red.scrub(&e.to_string()));
            }
        }
        out.duration = started.elapsed().as_secs_f64();
        return out;
    }
    let Some(request) = prepared.request else {
        out.status = "failed".into();
        out.error = Some("nothing to send".into());
        return out;
    };
    let policy = DeliveryPolicy {
        timeout: sys.timeout.map(|t| t.get()).unwrap_or(DEFAULT_TIMEOUT),
        retry_count: sys.retry_count.unwrap_or(DEFAULT_RETRY_COUNT),
        retry_delay: sys
            .retry_delay
            .map(|t| t.get())
            .unwrap_or(DEFAULT_RETRY_DELAY),
        deadline,
    };
    let judge = judge_for(prepared.kind);
    let d: Delivery = deliver::deliver(&request, &policy, &judge, &red, &std::thread::sleep);
    out.status = if d.ok { "sent" } else { "failed" }.into();
    out.http_status = d.http_status;
    out.attempts = d.attempts;
    out.error = d.error;
    out.response = d.response;
    out.duration = d.duration;
    out
}

/// Notifies every configured system about `report`, in parallel, within `settings.budget`.
/// Never fails: problems are in the outcomes.
pub fn notify(settings: &NotifySettings<'_>, report: &Report, purpose: Purpose) -> NotifyResult {
    if settings.external_integration == Some(false) || settings.systems.is_empty() {
        return NotifyResult::default();
    }
    let deadline = Instant::now() + settings.budget;
    let outcomes: Vec<NotificationOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = settings
            .systems
            .iter()
            .map(|sys| s.spawn(move || deliver_one(sys, report, purpose, deadline)))
            .collect();
        handles
            .into_iter()
            .zip(settings.systems)
            .map(|(h, sys)| {
                h.join().unwrap_or_else(|_| NotificationOutcome {
                    system: sys.name.clone(),
                    kind: type_name(infer_type(sys).0).to_string(),
                    inferred: sys.system_type.is_none(),
                    inferred_from: None,
                    status: "failed".into(),
                    http_status: None,
                    attempts: 0,
                    error: Some("internal error while notifying".into()),
                    response: None,
                    target: sys.url.as_deref().map(redact_url).unwrap_or_default(),
                    required: sys.required.unwrap_or(false),
                    duration: 0.0,
                })
            })
            .collect()
    });
    let required_failed = outcomes.iter().any(|o| o.required && o.status == "failed");
    NotifyResult {
        outcomes,
        required_failed,
    }
}

impl<'a> NotifySettings<'a> {
    /// `external_systems`, `external_integration` and `notification_timeout` of a config.
    pub fn from_config(config: &'a Config) -> Self {
        NotifySettings {
            systems: config.external_systems.as_deref().unwrap_or(&[]),
            external_integration: config.external_integration,
            budget: config
                .notification_timeout
                .map(|d| d.get())
                .unwrap_or(DEFAULT_BUDGET),
        }
    }
}

impl Alert {
    /// An alert as the record's alert evaluation writes it into `retry.alerts`: an object
    /// with `name` (or `alert` / `metric`), `message` and `severity`, or a plain string.
    pub fn from_value(v: &Value) -> Option<Alert> {
        if let Some(s) = v.as_str() {
            return Some(Alert {
                name: "alert".into(),
                message: s.to_string(),
                severity: "warning".into(),
            });
        }
        let o = v.as_object()?;
        let get = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let name = get("name")
            .or_else(|| get("alert"))
            .or_else(|| get("metric"))?;
        let message = get("message").unwrap_or_else(|| v.to_string());
        let severity = get("severity").unwrap_or_else(|| "warning".into());
        Some(Alert {
            name,
            message,
            severity,
        })
    }
}

/// The hook the run calls after an operation: notifies the configured systems about
/// `record` (alerts read from `result.retry.alerts`), puts the outcomes in
/// `result.retry.notifications`, logs failed deliveries (redacted), and, only when a system
/// with `required: true` failed, marks the result failed (exit code 1 if the operation
/// itself succeeded). Returns the outcomes for the session record.
pub fn notify_after_operation(
    config: &Config,
    record: &OperationRecord,
    result: &mut Value,
    exit_code: &mut i32,
    log: &Logger,
) -> NotifyResult {
    let settings = NotifySettings::from_config(config);
    if settings.systems.is_empty() {
        return NotifyResult::default();
    }
    let alerts = result
        .pointer("/retry/alerts")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Alert::from_value).collect())
        .unwrap_or_default();
    let report = Report::from_operation(record, alerts);
    let res = notify(&settings, &report, Purpose::Run);
    log_outcomes(&res, log);
    if let Some(retry) = result.get_mut("retry") {
        retry["notifications"] = serde_json::to_value(&res.outcomes).unwrap_or_default();
    }
    if res.required_failed {
        let names: Vec<&str> = res
            .outcomes
            .iter()
            .filter(|o| o.required && o.status == "failed")
            .map(|o| o.system.as_str())
            .collect();
        result["failed"] = Value::Bool(true);
        let msg = result
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        result["msg"] = Value::String(format!(
            "{msg}{}required notification failed: {}",
            if msg.is_empty() { "" } else { "; " },
            names.join(", ")
        ));
        if *exit_code == 0 {
            *exit_code = 1;
        }
    }
    res
}

/// One log line per delivery that failed (already redacted).
pub fn log_outcomes(res: &NotifyResult, log: &Logger) {
    for o in &res.outcomes {
        if o.status == "failed" {
            log.warn(
                "notification failed",
                &[
                    ("system", o.system.clone()),
                    ("type", o.kind.clone()),
                    ("attempts", o.attempts.to_string()),
                    (
                        "http_status",
                        o.http_status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "none".into()),
                    ),
                    ("error", o.error.clone().unwrap_or_default()),
                ],
            );
        } else if o.status == "sent" {
            log.debug(
                "notification sent",
                &[("system", o.system.clone()), ("type", o.kind.clone())],
            );
        }
    }
}

/// The seed's four thresholds against a session's `final_statistics`, for a session record
/// that carries no `alerts` of its own: success_rate below `min_success_rate`,
/// average_retry_count above `max_average_retries`, total_execution_time above
/// `max_execution_time`, failure_rate above `max_error_rate`.
pub fn threshold_alerts(stats: &Value, t: &AlertThresholds) -> Vec<Alert> {
    let num = |k: &str| stats.get(k).and_then(Value::as_f64);
    let mut out = Vec::new();
    let mut check =
        |name: &str, value: Option<f64>, limit: Option<f64>, below: bool, unit: &str| {
            if let (Some(v), Some(l)) = (value, limit) {
                let breached = if below { v < l } else { v > l };
                if breached {
                    out.push(Alert {
                        name: name.to_string(),
                        message: format!(
                            "{v}{unit} is {} the threshold {l}{unit}",
                            if below { "below" } else { "above" }
                        ),
                        severity: "warning".into(),
                    });
                }
            }
        };
    check(
        "min_success_rate",
        num("success_rate"),
        t.min_success_rate,
        true,
        "%",
    );
    check(
        "max_average_retries",
        num("average_retry_count"),
        t.max_average_retries,
        false,
        "",
    );
    check(
        "max_execution_time",
        num("total_execution_time"),
        t.max_execution_time,
        false,
        "s",
    );
    check(
        "max_error_rate",
        num("failure_rate"),
        t.max_error_rate,
        false,
        "%",
    );
    out
}

/// `retryx notify test`: a test message to every enabled system.
pub fn notify_test(config: &Config) -> NotifyResult {
    let session = config
        .session_id
        .clone()
        .unwrap_or_else(|| crate::record::new_session_id(chrono::Utc::now().timestamp()));
    notify(
        &NotifySettings::from_config(config),
        &Report::test_message(&session),
        Purpose::Test,
    )
}

/// The module's `action: notify` (the role's "send retry metrics to external systems" with
/// `notify_kind: metrics`, "send retry alerts" with `notify_kind: alerts`, or `test`). Metrics
/// and alerts describe the session record `retry_session_<session_id>.json` in
/// `artifacts_dir`. Returns the module result; in check mode nothing is sent.
pub fn module_notify(config: &Config, check_mode: bool, log: &Logger) -> Value {
    let kind = config.notify_kind.as_deref().unwrap_or("metrics");
    let purpose = match kind {
        "metrics" => Purpose::Metrics,
        "alerts" => Purpose::Alerts,
        "test" => Purpose::Test,
        other => {
            return serde_json::json!({"failed": true, "changed": false,
                "msg": format!("notify_kind must be metrics, alerts or test, got {other:?}")});
        }
    };
    let settings = NotifySettings::from_config(config);
    if settings.systems.is_empty() || settings.external_integration == Some(false) {
        return serde_json::json!({"failed": false, "changed": false,
            "msg": "no external system to notify (external_systems empty or external_integration false)",
            "retry": {"notifications": []}});
    }
    let report = if purpose == Purpose::Test {
        let session = config
            .session_id
            .clone()
            .unwrap_or_else(|| crate::record::new_session_id(chrono::Utc::now().timestamp()));
        Report::test_message(&session)
    } else {
        let Some(session) = config.session_id.as_deref() else {
            return serde_json::json!({"failed": true, "changed": false,
                "msg": "action notify needs session_id (the role passes retry_session_id)"});
        };
        if session.is_empty() || session.contains(['/', '\\']) || session.starts_with('.') {
            return serde_json::json!({"failed": true, "changed": false,
                "msg": "session_id must be a plain name such as retry_1640995200_123456"});
        }
        let dir = config
            .artifacts_dir
            .as_deref()
            .unwrap_or("/tmp/ansible_retry");
        let path = std::path::Path::new(dir).join(format!("retry_session_{session}.json"));
        let doc = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => {
                return serde_json::json!({"failed": true, "changed": false,
                    "msg": format!("cannot read the session record {}: {e}", path.display())});
            }
        };
        match Report::from_session(&doc) {
            Some(mut r) => {
                let thresholds = config.monitoring.as_ref().and_then(|m| m.alerts.as_ref());
                if doc.get("alerts").is_none()
                    && let Some(t) = thresholds
                {
                    let stats = doc.get("final_statistics").cloned().unwrap_or(Value::Null);
                    r.alerts = threshold_alerts(&stats, t);
                }
                r
            }
            None => {
                return serde_json::json!({"failed": true, "changed": false,
                    "msg": format!("{} is not a session record (no session_id)", path.display())});
            }
        }
    };
    if check_mode {
        return serde_json::json!({"failed": false, "changed": false, "skipped": true,
            "msg": format!("would notify {} system(s) ({kind}) if not in check mode", settings.systems.len()),
            "retry": {"session_id": report.session_id, "notifications": []}});
    }
    let res = notify(&settings, &report, purpose);
    log_outcomes(&res, log);
    let sent = res.outcomes.iter().filter(|o| o.status == "sent").count();
    let failed = res.outcomes.iter().filter(|o| o.status == "failed").count();
    serde_json::json!({
        "failed": res.required_failed,
        "changed": sent > 0,
        "msg": format!("notify {kind}: {sent} sent, {failed} failed"),
        "retry": {
            "session_id": report.session_id,
            "notifications": res.outcomes,
        }
    })
}

/// A human line for `retryx notify test`.
pub fn describe(o: &NotificationOutcome) -> String {
    let mut s = format!("{} ({}", o.system, o.kind);
    if let Some(why) = &o.inferred_from {
        s.push_str(&format!(", inferred from {why}"));
    }
    s.push_str(&format!("): {}", o.status));
    if let Some(code) = o.http_status {
        s.push_str(&format!(" HTTP {code}"));
    }
    if let Some(r) = o.response.as_deref().filter(|r| !r.is_empty()) {
        s.push_str(&format!(" {r:?}"));
    }
    s.push_str(&format!(
        " after {} attempt(s) in {:.2}s -> {}",
        o.attempts, o.duration, o.target
    ));
    if let Some(e) = &o.error {
        s.push_str(&format!("; error: {e}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(name: &str, url: &str) -> ExternalSystem {
        ExternalSystem {
            name: name.into(),
            url: Some(url.into()),
            ..Default::default()
        }
    }

    #[test]
    fn types_are_inferred_from_url_and_name() {
        let cases = [
            (
                "slack_webhook",
                "https://hooks.slack.com/services/T/B/X",
                SystemType::Slack,
            ),
            (
                "datadog",
                "https://api.datadoghq.com/api/v1/series",
                SystemType::Datadog,
            ),
            (
                "dd",
                "https://api.datadoghq.eu/api/v1/events",
                SystemType::DatadogEvents,
            ),
            (
                "prometheus",
                "https://prometheus.example.com/api/v1/write",
                SystemType::PrometheusRemoteWrite,
            ),
            (
                "pg",
                "http://pg:9091/metrics/job/retryx",
                SystemType::PrometheusPushgateway,
            ),
            ("x", "http://127.0.0.1:1/services/T/B/X", SystemType::Slack),
            ("hook", "http://127.0.0.1:1/hook", SystemType::Webhook),
        ];
        for (name, url, want) in cases {
            let (got, why) = infer_type(&sys(name, url));
            assert_eq!(got, want, "{name} {url}");
            assert!(why.is_some());
        }
        let mut tf = sys("node", "");
        tf.textfile_dir = Some("/tmp".into());
        assert_eq!(infer_type(&tf).0, SystemType::PrometheusTextfile);
        let mut given = sys("slack", "http://x/api/v1/write");
        given.system_type = Some(SystemType::Webhook);
        assert_eq!(infer_type(&given), (SystemType::Webhook, None));
    }

    #[test]
    fn auth_headers_as_the_seed_writes_them() {
        assert_eq!(
            parse_auth_header("Bearer your-token-here"),
            Ok(("Authorization".into(), "Bearer your-token-here".into()))
        );
        assert_eq!(
            parse_auth_header("Basic dXNlcjpwdw=="),
            Ok(("Authorization".into(), "Basic dXNlcjpwdw==".into()))
        );
        assert_eq!(
            parse_auth_header("DD-API-KEY your-api-key"),
            Ok(("DD-API-KEY".into(), "your-api-key".into()))
        );
        assert_eq!(
            parse_auth_header("X-Auth: abc"),
            Ok(("X-Auth".into(), "abc".into()))
        );
        assert_eq!(
            parse_auth_header("justatoken"),
            Err(SystemError::AuthHeader)
        );
        assert_eq!(
            parse_auth_header("Bad! value"),
            Err(SystemError::AuthHeader)
        );
    }

    #[test]
    fn notify_on_selects_events() {
        let r = Report::sample(); // failed, 3 attempts
        let mut s = sys("s", "http://127.0.0.1:1/services/T/B/X");
        assert!(wanted(&s, SystemType::Slack, &r, Purpose::Run));
        s.notify_on = Some(vec![NotifyOn::Success]);
        assert!(!wanted(&s, SystemType::Slack, &r, Purpose::Run));
        s.notify_on = Some(vec![NotifyOn::Retry]);
        assert!(wanted(&s, SystemType::Slack, &r, Purpose::Run));
        let mut ok = Report::test_message("s");
        ok.kind = ReportKind::Operation;
        s.notify_on = None;
        assert!(!wanted(&s, SystemType::Slack, &ok, Purpose::Run));
        assert!(wanted(&s, SystemType::Datadog, &ok, Purpose::Run));
        assert!(!wanted(&s, SystemType::Slack, &ok, Purpose::Alerts));
    }

    #[test]
    fn seed_thresholds_raise_alerts() {
        let stats = serde_json::json!({"success_rate": 80.0, "average_retry_count": 0.6,
            "total_execution_time": 330, "failure_rate": 20.0});
        let t = AlertThresholds {
            min_success_rate: Some(85.0),
            max_average_retries: Some(2.5),
            max_execution_time: Some(1800.0),
            max_error_rate: Some(15.0),
        };
        let names: Vec<String> = threshold_alerts(&stats, &t)
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["min_success_rate", "max_error_rate"]);
        assert!(threshold_alerts(&stats, &AlertThresholds::default()).is_empty());
    }

    #[test]
    fn integration_off_sends_nothing() {
        let systems = vec![sys("s", "http://127.0.0.1:1/services/T/B/X")];
        let res = notify(
            &NotifySettings {
                systems: &systems,
                external_integration: Some(false),
                budget: DEFAULT_BUDGET,
            },
            &Report::sample(),
            Purpose::Test,
        );
        assert!(res.outcomes.is_empty());
    }

    #[test]
    fn config_errors_are_outcomes_without_secrets() {
        let mut s = sys(
            "dd",
            "https://api.datadoghq.com/api/v2/series?api_key=SECRETKEY123",
        );
        s.auth_header = Some("nonsense".into());
        let res = notify(
            &NotifySettings {
                systems: std::slice::from_ref(&s),
                external_integration: None,
                budget: DEFAULT_BUDGET,
            },
            &Report::sample(),
            Purpose::Test,
        );
        let o = &res.outcomes[0];
        assert_eq!(o.status, "failed");
        assert_eq!(o.attempts, 0);
        let json = serde_json::to_string(o).unwrap_or_default();
        assert!(!json.contains("SECRETKEY123"), "{json}");
        assert!(json.contains("auth_header"), "{json}");
    }
}
