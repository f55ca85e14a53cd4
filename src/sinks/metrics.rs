//! The metrics a report becomes: Datadog's `retry.*` series and the Prometheus families
//! (`retryx_*`, named by Prometheus conventions) with their samples for the Pushgateway, remote
//! write and the textfile. Pure: no I/O.

use std::collections::BTreeMap;

use super::prometheus;
use super::report::Report;

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
pub(super) fn last_run_samples(
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

pub(super) fn counter_samples(
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
