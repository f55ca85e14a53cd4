//! Datadog: metric series (v2 `/api/v2/series` by default, v1 `/api/v1/series` on request) and
//! events (`/api/v1/events`), the site → endpoint mapping, the API key header and body
//! compression (gzip, zlib deflate). Builds requests only; never logs the API key.

use std::io::Write;

use serde_json::{Value, json};

use super::deliver::{Answer, Verdict, first_line};
use super::{Metric, MetricKind, Report};

/// Datadog's event text limit.
pub const MAX_EVENT_TEXT: usize = 4000;
pub const MAX_EVENT_TITLE: usize = 100;
pub const MAX_AGGREGATION_KEY: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatadogError {
    #[error(
        "unknown Datadog site {0:?} (datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, ap1.datadoghq.com, ap2.datadoghq.com, uk1.datadoghq.com, ddog-gov.com, us2.ddog-gov.com; or give url)"
    )]
    UnknownSite(String),
    #[error("unknown compression {0:?} (none, gzip or deflate)")]
    UnknownCompression(String),
    #[error("api_version must be 1 or 2, got {0}")]
    ApiVersion(u8),
    #[error("compressing the body failed: {0}")]
    Compress(String),
}

/// Datadog's sites as its API reference lists them ("Submit metrics": one API host per site),
/// each with the short names people use for it.
pub const SITES: [(&str, &[&str]); 9] = [
    ("datadoghq.com", &["us1", "us"]),
    ("us3.datadoghq.com", &["us3"]),
    ("us5.datadoghq.com", &["us5"]),
    ("datadoghq.eu", &["eu", "eu1"]),
    ("ap1.datadoghq.com", &["ap1"]),
    ("ap2.datadoghq.com", &["ap2"]),
    ("uk1.datadoghq.com", &["uk1"]),
    ("ddog-gov.com", &["gov", "us1-fed"]),
    ("us2.ddog-gov.com", &["us2-fed"]),
];

/// Datadog's tag limit: "Tags can be up to 200 characters long".
pub const MAX_TAG: usize = 200;

/// `https://api.<site>` for a site: its name (`us5.datadoghq.com`), the web app's host
/// (`app.datadoghq.eu`), the API host, or a short name (`us5`, `eu`, `us1-fed`).
pub fn site_base(site: &str) -> Result<String, DatadogError> {
    let s = site.trim().trim_end_matches('/').to_ascii_lowercase();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(&s);
    let bare = s
        .strip_prefix("app.")
        .or_else(|| s.strip_prefix("api."))
        .unwrap_or(s);
    let host = if bare.is_empty() {
        Some(SITES[0].0)
    } else {
        SITES
            .iter()
            .find(|(name, short)| *name == bare || short.contains(&bare))
            .map(|(name, _)| *name)
    };
    match host {
        Some(h) => Ok(format!("https://api.{h}")),
        None => Err(DatadogError::UnknownSite(site.trim().to_string())),
    }
}

/// The endpoint: `url` as given when it already names the endpoint, `url` + path when it is a
/// base (e.g. a proxy or VictoriaMetrics' `/datadog`), else the site's API host + path.
pub fn endpoint(url: Option<&str>, site: Option<&str>, path: &str) -> Result<String, DatadogError> {
    match url {
        Some(u) => {
            let base = u.trim_end_matches('/');
            let bare = base.split('?').next().unwrap_or(base);
            if ["/api/v1/series", "/api/v2/series", "/api/v1/events"]
                .iter()
                .any(|p| bare.ends_with(p))
            {
                if bare.ends_with(path) {
                    Ok(base.to_string())
                } else {
                    // Same host, the other endpoint (e.g. events next to series).
                    let root = bare.rsplit_once("/api/").map(|(r, _)| r).unwrap_or(bare);
                    Ok(format!("{root}{path}"))
                }
            } else {
                Ok(format!("{base}{path}"))
            }
        }
        None => Ok(format!(
            "{}{path}",
            site_base(site.unwrap_or("datadoghq.com"))?
        )),
    }
}

/// Content-Encoding and compressed body.
pub fn compress(
    body: &[u8],
    how: Option<&str>,
) -> Result<(Option<&'static str>, Vec<u8>), DatadogError> {
    let how = how.unwrap_or("gzip").trim().to_ascii_lowercase();
    let err = |e: std::io::Error| DatadogError::Compress(e.to_string());
    match how.as_str() {
        "none" | "identity" | "" => Ok((None, body.to_vec())),
        "gzip" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(body).map_err(err)?;
            Ok((Some("gzip"), enc.finish().map_err(err)?))
        }
        "deflate" | "zlib" => {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(body).map_err(err)?;
            Ok((Some("deflate"), enc.finish().map_err(err)?))
        }
        other => Err(DatadogError::UnknownCompression(other.to_string())),
    }
}

/// Cuts a tag to Datadog's 200 characters (on a character boundary; a cut that would end on
/// `:` loses it too, as Datadog refuses a tag ending with a colon).
pub fn cut_tag(tag: &str) -> String {
    if tag.chars().count() <= MAX_TAG {
        return tag.to_string();
    }
    let cut: String = tag.chars().take(MAX_TAG).collect();
    cut.trim_end_matches(':').to_string()
}

/// The tags of every series and event: operation, status, host, the last error class, the
/// session only when `session_tag` asks for it (a new value each run: a new tag combination,
/// which Datadog bills as custom metrics), then the system's own tags; each cut to 200
/// characters.
pub fn tags(report: &Report, extra: &[String], session_tag: bool) -> Vec<String> {
    let mut t = vec![
        format!("operation:{}", report.operation),
        format!("status:{}", report.status),
    ];
    if session_tag {
        t.push(format!("session:{}", report.session_id));
    }
    t.push(format!("host:{}", report.host));
    if let Some(c) = &report.last_error_class {
        t.push(format!("error_class:{c}"));
    }
    t.extend(extra.iter().cloned());
    t.iter().map(|x| cut_tag(x)).collect()
}

/// v2 series body (`type` 1 count, 3 gauge; resources name the host), points at `ts`.
pub fn series_v2(report: &Report, metrics: &[Metric], tags: &[String], ts: i64) -> Value {
    let series: Vec<Value> = metrics
        .iter()
        .map(|m| {
            let mut s = json!({
                "metric": m.dd_name,
                "type": match m.kind { MetricKind::Count => 1, MetricKind::Gauge => 3 },
                "points": [{"timestamp": ts, "value": m.value}],
                "tags": tags,
                "resources": [{"name": report.host, "type": "host"}],
            });
            if let Some(unit) = m.dd_unit {
                s["unit"] = json!(unit);
            }
            s
        })
        .collect();
    json!({ "series": series })
}

/// v1 series body (`type` "count"/"gauge", points `[[ts, value]]`, `host`).
pub fn series_v1(report: &Report, metrics: &[Metric], tags: &[String], ts: i64) -> Value {
    let series: Vec<Value> = metrics
        .iter()
        .map(|m| {
            json!({
                "metric": m.dd_name,
                "type": match m.kind { MetricKind::Count => "count", MetricKind::Gauge => "gauge" },
                "points": [[ts, m.value]],
                "tags": tags,
                "host": report.host,
            })
        })
        .collect();
    json!({ "series": series })
}

fn cut(s: &str, max: usize) -> String {
    super::slack::truncate(s, max)
}

/// An event for alerts and failures: `alert_type` error on failure, warning for alerts on a
/// success, success/info otherwise; `aggregation_key` groups one operation's events.
pub fn event(report: &Report, tags: &[String]) -> Value {
    let alert_type = match report.kind {
        super::ReportKind::Test => "info",
        _ if !report.succeeded => "error",
        _ if !report.alerts.is_empty() => "warning",
        _ => "success",
    };
    let title = cut(
        &format!("retryx: {} {}", report.operation, report.status),
        MAX_EVENT_TITLE,
    );
    let mut text = format!(
        "Operation {} {} {} in {:.2}s.\nSession {} on host {}.",
        report.operation,
        report.status,
        report.outcome_words(),
        report.duration_secs,
        report.session_id,
        report.host
    );
    if let Some(c) = &report.last_error_class {
        text.push_str(&format!("\nLast error class: {c}"));
    }
    for a in &report.alerts {
        text.push_str(&format!("\nAlert {}: {}", a.name, a.message));
    }
    if let Some(m) = &report.last_error_message {
        text.push_str(&format!("\nLast error message:\n{m}"));
    }
    json!({
        "title": title,
        "text": cut(&text, MAX_EVENT_TEXT),
        "alert_type": alert_type,
        "aggregation_key": cut(&format!("retryx:{}", report.operation), MAX_AGGREGATION_KEY),
        "tags": tags,
        "host": report.host,
        "date_happened": report.end_epoch,
    })
}

/// Datadog's answer: 202 (and 200) success; 400/403/413 and other 4xx recorded, not retried;
/// 408, 429 and 5xx retried.
pub fn verdict(answer: &Answer) -> Verdict {
    match answer {
        Answer::Http { status, body, .. } => {
            let errors = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("errors").cloned())
                .and_then(|e| e.as_array().cloned())
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| first_line(body));
            match status {
                200 | 202 => Verdict::Success,
                408 | 429 | 500..=599 => Verdict::Retry(format!("HTTP {status}: {errors}")),
                _ => Verdict::Permanent(format!("HTTP {status}: {errors}")),
            }
        }
        t => super::deliver::http_verdict(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sites_map_to_api_hosts() {
        assert_eq!(
            site_base("datadoghq.com"),
            Ok("https://api.datadoghq.com".into())
        );
        assert_eq!(
            site_base("datadoghq.eu"),
            Ok("https://api.datadoghq.eu".into())
        );
        assert_eq!(site_base("us3"), Ok("https://api.us3.datadoghq.com".into()));
        assert_eq!(
            site_base("us5.datadoghq.com"),
            Ok("https://api.us5.datadoghq.com".into())
        );
        assert_eq!(site_base("ap1"), Ok("https://api.ap1.datadoghq.com".into()));
        for (site, api) in [
            ("datadoghq.com", "https://api.datadoghq.com"),
            ("us3.datadoghq.com", "https://api.us3.datadoghq.com"),
            ("us5.datadoghq.com", "https://api.us5.datadoghq.com"),
            ("datadoghq.eu", "https://api.datadoghq.eu"),
            ("app.datadoghq.eu", "https://api.datadoghq.eu"),
            ("ap1.datadoghq.com", "https://api.ap1.datadoghq.com"),
            ("ap2.datadoghq.com", "https://api.ap2.datadoghq.com"),
            ("uk1.datadoghq.com", "https://api.uk1.datadoghq.com"),
            ("ddog-gov.com", "https://api.ddog-gov.com"),
            ("app.ddog-gov.com", "https://api.ddog-gov.com"),
            ("us2.ddog-gov.com", "https://api.us2.ddog-gov.com"),
            ("US2-FED", "https://api.us2.ddog-gov.com"),
        ] {
            assert_eq!(site_base(site), Ok(api.to_string()), "{site}");
        }
        assert!(site_base("example.com").is_err());
        assert!(site_base("us9.datadoghq.com").is_err());
    }

    #[test]
    fn tags_are_cut_and_the_session_is_opt_in() {
        let mut r = Report::sample();
        r.operation = "o".repeat(413);
        let t = tags(&r, &["team:".repeat(60)], false);
        assert!(t.iter().all(|x| x.chars().count() <= MAX_TAG), "{t:?}");
        assert!(t.iter().all(|x| !x.ends_with(':')), "{t:?}");
        assert!(t[0].starts_with("operation:ooo"));
        assert!(!t.iter().any(|x| x.starts_with("session:")));
        assert!(
            tags(&r, &[], true)
                .iter()
                .any(|x| x == &format!("session:{}", r.session_id))
        );
        assert_eq!(cut_tag(&"é".repeat(250)).chars().count(), MAX_TAG);
    }

    #[test]
    fn endpoints_from_url_or_site() {
        assert_eq!(
            endpoint(
                Some("https://api.datadoghq.com/api/v1/series"),
                None,
                "/api/v1/series"
            ),
            Ok("https://api.datadoghq.com/api/v1/series".into())
        );
        assert_eq!(
            endpoint(
                Some("https://api.datadoghq.com/api/v1/series"),
                None,
                "/api/v1/events"
            ),
            Ok("https://api.datadoghq.com/api/v1/events".into())
        );
        assert_eq!(
            endpoint(
                Some("http://127.0.0.1:8428/datadog"),
                None,
                "/api/v1/series"
            ),
            Ok("http://127.0.0.1:8428/datadog/api/v1/series".into())
        );
        assert_eq!(
            endpoint(None, Some("eu"), "/api/v2/series"),
            Ok("https://api.datadoghq.eu/api/v2/series".into())
        );
    }

    #[test]
    fn compression_round_trips() {
        let body = br#"{"series":[]}"#;
        let (enc, gz) = compress(body, Some("gzip")).unwrap_or((None, vec![]));
        assert_eq!(enc, Some("gzip"));
        let mut out = Vec::new();
        let _ = flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out);
        assert_eq!(out, body);
        let (enc, z) = compress(body, Some("deflate")).unwrap_or((None, vec![]));
        assert_eq!(enc, Some("deflate"));
        let mut out = Vec::new();
        let _ = flate2::read::ZlibDecoder::new(&z[..]).read_to_end(&mut out);
        assert_eq!(out, body);
        assert!(compress(body, Some("zstd")).is_err());
    }

    #[test]
    fn event_text_is_bounded() {
        let mut r = Report::sample();
        r.last_error_message = Some("x".repeat(9000));
        r.operation = "o".repeat(300);
        let e = event(&r, &tags(&r, &[], false));
        assert!(e["text"].as_str().map(|s| s.chars().count()).unwrap_or(0) <= MAX_EVENT_TEXT);
        assert!(e["title"].as_str().map(|s| s.chars().count()).unwrap_or(0) <= MAX_EVENT_TITLE);
        assert!(
            e["aggregation_key"]
                .as_str()
                .map(|s| s.chars().count())
                .unwrap_or(0)
                <= MAX_AGGREGATION_KEY
        );
        assert_eq!(e["alert_type"], "error");
    }

    #[test]
    fn datadog_answers() {
        let a = |status: u16, body: &str| Answer::Http {
            status,
            body: body.into(),
            retry_after: None,
        };
        assert_eq!(verdict(&a(202, r#"{"errors":[]}"#)), Verdict::Success);
        assert_eq!(
            verdict(&a(403, r#"{"errors":["Forbidden"]}"#)),
            Verdict::Permanent("HTTP 403: Forbidden".into())
        );
        assert!(matches!(verdict(&a(413, "")), Verdict::Permanent(_)));
        assert!(matches!(verdict(&a(400, "{}")), Verdict::Permanent(_)));
        assert!(matches!(verdict(&a(429, "")), Verdict::Retry(_)));
        assert!(matches!(verdict(&a(503, "")), Verdict::Retry(_)));
        assert!(matches!(verdict(&a(408, "")), Verdict::Retry(_)));
    }
}
