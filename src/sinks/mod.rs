//! Notification sinks: Slack, Datadog (series and events), Prometheus (Pushgateway, remote
//! write, node_exporter textfile) and a generic JSON webhook. Turns a `Report` (one operation,
//! a session, or a test message) into requests for every configured system, delivers them in
//! parallel under per-system timeouts, bounded retries and one time budget for the run, and
//! returns a redacted outcome per system. It must never change an operation's result (unless a
//! system says `required: true`, which the caller reads from `NotifyResult::required_failed`),
//! never talk HTTP from anywhere else, and never log or record a secret.

pub mod datadog;
pub mod deliver;
pub mod metrics;
pub mod prometheus;
pub mod redact;
pub mod report;
pub mod slack;
pub mod system;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::config::notify::{ExternalSystem, SystemType};
use crate::log::Logger;
use deliver::{Delivery, DeliveryPolicy};
use redact::{Redactor, redact_url};

use metrics::{TEST_SERIES, counter_samples, gauge_samples, textfile_families};
use system::{is_metric_sink, judge_for, prepare};

pub use metrics::{Metric, MetricKind, PromFamily, PromKind};
pub use report::{Alert, Report, ReportKind, threshold_alerts};
pub use system::{default_notify_on, infer_type, type_name};

/// Default per-request timeout (seed: `timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default delivery retries (seed: `retry_count`).
pub const DEFAULT_RETRY_COUNT: u32 = 2;
/// Default wait between delivery retries (seed: `retry_delay`).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Default bound on all notification delivery of one run, every try of every receiver included
/// (config `notification_timeout`): a receiver that hangs costs a run whose command already
/// succeeded at most this much (it was 30 s: three tries of the 10 s timeout).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

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
    /// Why it was not sent (`skipped`: points the receiver would drop), what was left out,
    /// or how to remove what `notify test` wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// Seconds, waits included.
    #[serde(default)]
    pub duration: f64,
}

/// A delivery as the event stream tells it.
impl From<&NotificationOutcome> for crate::log::events::NotificationData {
    fn from(o: &NotificationOutcome) -> Self {
        crate::log::events::NotificationData {
            system: o.system.clone(),
            kind: o.kind.clone(),
            status: o.status.clone(),
            http_status: o.http_status,
            attempts: o.attempts,
            error: o.error.clone(),
        }
    }
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
        note: None,
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
    let now_ms = chrono::Utc::now().timestamp_millis();
    let prepared = match prepare(sys, kind, report, &mut red, now_ms) {
        Ok(p) => p,
        Err(e) => {
            out.status = "failed".into();
            out.error = Some(red.scrub(&e.to_string()));
            return out;
        }
    };
    out.target = prepared.target.clone();
    out.note = prepared.note.as_deref().map(|n| red.scrub(n));
    if let Some(why) = &prepared.skip {
        out.note = Some(red.scrub(why));
        return out;
    }
    if let Some(dir) = &prepared.textfile {
        out.attempts = 1;
        let written = if report.kind == ReportKind::Test {
            // A test proves the directory takes our file, then removes it: nothing of the
            // real retryx.prom is touched.
            prometheus::probe_textfile(dir).map(|p| {
                out.target = p.display().to_string();
                out.note = Some(format!("wrote and removed {}", p.display()));
            })
        } else {
            let base = [("operation", report.operation.as_str())];
            let mut current = gauge_samples(report, &base);
            current.extend(counter_samples(report, &base));
            prometheus::write_textfile(dir, &textfile_families(), &report.operation, &current)
                .map(|_| ())
        };
        match written {
            Ok(()) => out.status = "sent".into(),
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
    if !d.ok
        && let Some(del) = &prepared.cleanup
    {
        // The push may have landed though its answer did not reach us.
        out.note = Some(format!(
            "the test push may have landed; remove its group (job {TEST_SERIES}) with a DELETE on {}/metrics/job/{TEST_SERIES}/...",
            redact_url(&del.url)
        ));
    }
    if d.ok
        && let Some(del) = &prepared.cleanup
    {
        // The test group is removed as soon as it has been accepted.
        let gone = deliver::deliver(del, &policy, &judge, &red, &std::thread::sleep);
        out.note = Some(if gone.ok {
            format!(
                "test group (job {TEST_SERIES}) deleted afterwards: DELETE on {}",
                redact_url(&del.url)
            )
        } else {
            format!(
                "could not delete the test group ({}); remove it (job {TEST_SERIES}) with a DELETE on {}/metrics/job/{TEST_SERIES}/...",
                gone.error.unwrap_or_default(),
                redact_url(&del.url)
            )
        });
    }
    out.duration = started.elapsed().as_secs_f64().max(d.duration);
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
                    note: None,
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

/// Whether any external system would be told about a run.
pub fn notifications_configured(config: &Config) -> bool {
    !NotifySettings::from_config(config).systems.is_empty()
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

/// A human line for `retryx notify test`, its control characters escaped (a receiver's answer
/// must not drive the terminal).
pub fn describe(o: &NotificationOutcome) -> String {
    crate::log::escape_controls(&describe_raw(o))
}

fn describe_raw(o: &NotificationOutcome) -> String {
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
    if let Some(n) = &o.note {
        s.push_str(&format!("; {n}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notify::{AlertThresholds, NotifyOn};
    use system::{SystemError, parse_auth_header};

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
            ..Default::default()
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
    fn points_too_old_for_the_receiver_are_skipped_with_the_reason() {
        // A run that ended three hours ago: Datadog would drop every point, remote write
        // answer `out of bounds`. Nothing is sent (port 1 is never dialled), nothing `sent`.
        let mut r = Report::sample();
        r.end_epoch -= 3 * 3600;
        for a in &mut r.attempts {
            a.end_ms -= 3 * 3600 * 1000;
        }
        let mut dd = sys("dd", "http://127.0.0.1:1/api/v2/series");
        dd.system_type = Some(SystemType::Datadog);
        dd.auth_header = Some("DD-API-KEY k3y".into());
        let mut rw = sys("rw", "http://127.0.0.1:1/api/v1/write");
        rw.system_type = Some(SystemType::PrometheusRemoteWrite);
        let systems = vec![dd, rw];
        let res = notify(
            &NotifySettings {
                systems: &systems,
                external_integration: None,
                budget: DEFAULT_BUDGET,
            },
            &r,
            Purpose::Metrics,
        );
        assert_eq!(res.outcomes.len(), 2, "{:?}", res.outcomes);
        for o in &res.outcomes {
            assert_eq!((o.status.as_str(), o.attempts), ("skipped", 0), "{o:?}");
            let note = o.note.as_deref().unwrap_or("");
            assert!(
                note.contains("3h0m0s ago") && note.contains("older than an hour"),
                "{note}"
            );
            assert!(describe(o).contains("older than an hour"));
        }
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
