//! Config shapes of the notification sinks (seed 003 "External Systems Integration") and of
//! monitoring thresholds. Shapes only: delivery lives in `src/sinks/`, alert evaluation in
//! `src/record/`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::DurationSpec;

/// What kind of receiver an external system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemType {
    Slack,
    Datadog,
    DatadogEvents,
    PrometheusPushgateway,
    PrometheusRemoteWrite,
    PrometheusTextfile,
    Webhook,
}

/// When a system is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    Failure,
    Alert,
    Success,
    Retry,
}

/// One entry of `external_systems` (the seed's keys plus retryx's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalSystem {
    pub name: String,
    /// Receiver URL (secret: never echoed).
    pub url: Option<String>,
    /// HTTP method: webhooks POST (default), PUT or PATCH; Pushgateway PUT unless POST is
    /// asked for; the other types always POST.
    pub method: Option<String>,
    /// `Bearer x` / `Basic x` → Authorization; `Name value` → header Name (secret).
    pub auth_header: Option<String>,
    /// Per-request timeout in seconds (default 10).
    pub timeout: Option<DurationSpec>,
    pub enabled: Option<bool>,
    /// Retries of a failed delivery (default 2).
    #[schemars(range(min = 0, max = 20))]
    pub retry_count: Option<u32>,
    /// Wait between delivery retries (default 1s).
    pub retry_delay: Option<DurationSpec>,
    /// Receiver kind; inferred from name and URL when absent.
    #[serde(rename = "type")]
    pub system_type: Option<SystemType>,
    /// When to notify (default: every run for metric sinks; failure and alert for Slack,
    /// Datadog events and webhooks).
    pub notify_on: Option<Vec<NotifyOn>>,
    /// A failed delivery fails the operation.
    pub required: Option<bool>,
    /// Datadog API version: 1 or 2 (default 2).
    #[schemars(range(min = 1, max = 2))]
    pub api_version: Option<u8>,
    /// Datadog site: datadoghq.com (default), us3.datadoghq.com, us5.datadoghq.com,
    /// datadoghq.eu, ap1.datadoghq.com, ap2.datadoghq.com, uk1.datadoghq.com, ddog-gov.com,
    /// us2.ddog-gov.com (or the short names us1, us3, us5, eu, ap1, ap2, uk1, us1-fed, us2-fed).
    pub site: Option<String>,
    /// Datadog: tag every series and event with `session:<id>` (default false: the id is new
    /// each run, so each run would be a new tag combination, billed as custom metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tag: Option<bool>,
    /// Datadog series body compression: gzip (default), deflate (zlib) or none.
    pub compression: Option<String>,
    /// Directory for the node_exporter textfile collector.
    pub textfile_dir: Option<String>,
    /// Pushgateway job name (default retryx).
    pub job: Option<String>,
    /// Extra headers (values are secret).
    pub headers: Option<BTreeMap<String, String>>,
    /// Extra tags or labels, `key:value`.
    pub tags: Option<Vec<String>>,
}

/// Alert thresholds (seed 003 "Monitoring and Alerting"). The seed's four are session-level:
/// evaluated at finalize over the whole session. The `operation_*` ones are evaluated on every
/// run, records or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertThresholds {
    /// Percent.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub min_success_rate: Option<f64>,
    #[schemars(range(min = 0.0))]
    pub max_average_retries: Option<f64>,
    /// Seconds, the session's total execution time.
    #[schemars(range(min = 0.0))]
    pub max_execution_time: Option<f64>,
    /// Percent.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_error_rate: Option<f64>,
    /// Seconds, one operation's execution time (evaluated on every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub operation_max_execution_time: Option<f64>,
    /// Retries of one operation (attempts - 1; evaluated on every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub operation_max_retries: Option<f64>,
}

/// `monitoring` (seed 003).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    pub enabled: Option<bool>,
    /// Metric names the seed lists (success_rate, average_retry_count, ...); recorded.
    pub metrics: Option<Vec<String>>,
    pub alerts: Option<AlertThresholds>,
}
