//! One configured external system turned into something to deliver: its type (given or
//! inferred from name and URL), headers (`auth_header` as the seed writes it), endpoint and
//! body for each sink, and the verdict rule for its answers. Registers every secret it handles
//! with the system's `Redactor`; it never sends anything.

use std::path::PathBuf;

use serde_json::Value;

use super::deliver::{self, Answer, HttpRequest, Verdict};
use super::metrics::{
    TEST_SERIES, metrics, point_time_ms, pushgateway_body, remote_write_series, too_old,
    webhook_metrics,
};
use super::redact::{Redactor, redact_url};
use super::report::{Report, ReportKind};
use super::{datadog, prometheus, slack};
use crate::config::notify::{ExternalSystem, NotifyOn, SystemType};

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

pub(super) fn is_metric_sink(t: SystemType) -> bool {
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

pub(super) struct Prepared {
    pub(super) kind: SystemType,
    pub(super) request: Option<HttpRequest>,
    pub(super) textfile: Option<PathBuf>,
    pub(super) target: String,
    /// Not sent, and why (points the receiver would drop).
    pub(super) skip: Option<String>,
    /// Said beside the outcome (samples left out, how to remove a test series).
    pub(super) note: Option<String>,
    /// After a successful send: a request that removes what a `notify test` wrote.
    pub(super) cleanup: Option<HttpRequest>,
}

fn with_headers(
    sys: &ExternalSystem,
    red: &mut Redactor,
) -> Result<Vec<(String, String)>, SystemError> {
    let mut headers = Vec::new();
    if let Some(a) = &sys.auth_header {
        let (k, v) = parse_auth_header(a)?;
        red.add_header_value(&v);
        headers.push((k, v));
    }
    for (k, v) in sys.headers.iter().flatten() {
        red.add_header_value(v);
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

/// One request per receiver type, from one match: long (~200 lines) because each arm is the
/// receiver's own wire format (with what it refuses: points too old, and for `notify test` its
/// own series and how it goes away), and splitting them would scatter the shared redaction.
pub(super) fn prepare(
    sys: &ExternalSystem,
    kind: SystemType,
    report: &Report,
    red: &mut Redactor,
    now_ms: i64,
) -> Result<Prepared, SystemError> {
    if let Some(u) = &sys.url {
        red.add_url(u);
    }
    let tags = datadog::tags(
        report,
        &sys.tags.clone().unwrap_or_default(),
        sys.session_tag.unwrap_or(false),
    );
    let test = report.kind == ReportKind::Test;
    let mut skip = None;
    let mut note = None;
    let mut cleanup = None;
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
                let metrics = metrics(report);
                let ts = point_time_ms(report, now_ms).div_euclid(1000);
                skip = too_old(report, now_ms);
                if test {
                    note = Some(format!(
                        "test metric {}, outside retry.*; Datadog cannot delete points: it stops reporting by itself",
                        metrics.first().map(|m| m.dd_name).unwrap_or(TEST_SERIES)
                    ));
                }
                let body = if v1 {
                    datadog::series_v1(report, &metrics, &tags, ts)
                } else {
                    datadog::series_v2(report, &metrics, &tags, ts)
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
            // A test goes to its own group (job retryx_notify_test), removed right after.
            let job = if test {
                Some(TEST_SERIES)
            } else {
                sys.job.as_deref()
            };
            let target = prometheus::pushgateway_url(&url, job, &report.host, &report.operation);
            if test {
                cleanup = Some(HttpRequest {
                    method: "DELETE".into(),
                    url: target.clone(),
                    headers: headers.clone(),
                    body: Vec::new(),
                });
            }
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
            let job = if test {
                TEST_SERIES
            } else {
                sys.job.as_deref().unwrap_or("retryx")
            };
            let (series, dropped) = remote_write_series(report, job, now_ms);
            if series.iter().all(|s| s.samples.is_empty()) {
                skip = too_old(report, now_ms)
                    .or_else(|| Some("not sent: no sample recent enough".to_string()));
            } else if dropped > 0 {
                note = Some(format!(
                    "{dropped} sample(s) older than 55m left out (the receiver answers `out of bounds` for samples more than an hour old)"
                ));
            }
            if test {
                note = Some(format!(
                    "test series {TEST_SERIES}{{job=\"{TEST_SERIES}\"}}; remove it with the admin API: POST <prometheus>/api/v1/admin/tsdb/delete_series?match[]={TEST_SERIES} (Prometheus needs --web.enable-admin-api)"
                ));
            }
            let req = prometheus::write_request(series);
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
            let mut doc = report.document.clone();
            if let Some(o) = doc.as_object_mut() {
                o.insert("metrics".into(), webhook_metrics(report));
            }
            (Some(json_request(m, url, headers, &doc)), None)
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
        skip,
        note,
        cleanup,
    })
}

pub(super) fn judge_for(kind: SystemType) -> fn(&Answer) -> Verdict {
    match kind {
        SystemType::Slack => slack::verdict,
        SystemType::Datadog | SystemType::DatadogEvents => datadog::verdict,
        _ => deliver::http_verdict,
    }
}
