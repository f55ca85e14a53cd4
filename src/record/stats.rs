//! Session statistics in the seed's "Session Statistics" vocabulary (the 13 `final_statistics`
//! fields), folded one operation at a time so finalize is linear and memory stays flat. Pure: no
//! I/O, no clock; times come in as numbers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{OperationRecord, OperationStatus};
use crate::classify::ErrorClass;

/// One line of a session's operation list: what finalize, `session list` and the picture need,
/// without the attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OperationSummary {
    pub operation_id: String,
    pub operation_name: String,
    pub status: OperationStatus,
    pub start_time: String,
    pub end_time: String,
    pub attempt_count: u32,
    pub max_attempts: u32,
    /// Seconds, waits included.
    pub execution_time: f64,
    pub final_error_type: Option<ErrorClass>,
    /// Alerts raised for this operation alone.
    pub alert_count: u32,
}

impl OperationSummary {
    pub fn of(r: &OperationRecord, alert_count: u32) -> Self {
        OperationSummary {
            operation_id: r.operation_id.clone(),
            operation_name: r.operation_name.clone(),
            status: r.status,
            start_time: r.start_time.clone(),
            end_time: r.end_time.clone(),
            attempt_count: r.attempt_count,
            max_attempts: r.max_attempts,
            execution_time: r.execution_time,
            final_error_type: r.final_error_type,
            alert_count,
        }
    }
}

pub fn is_success(s: OperationStatus) -> bool {
    matches!(s, OperationStatus::Completed | OperationStatus::Skipped)
}

/// The seed's 13 `final_statistics` fields. Rates are percent; times seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FinalStatistics {
    pub total_operations: u64,
    pub successful_operations: u64,
    pub failed_operations: u64,
    /// Operations that needed more than one attempt.
    pub retried_operations: u64,
    /// Attempts beyond each operation's first, summed.
    pub total_retry_attempts: u64,
    pub average_retry_count: f64,
    pub max_retry_count: u64,
    /// Sum of the operations' execution times (waits included); with concurrent operations it
    /// can exceed the session's wall-clock duration.
    pub total_execution_time: f64,
    pub average_execution_time: f64,
    pub success_rate: f64,
    pub failure_rate: f64,
    pub retry_rate: f64,
    /// Operations per minute of session duration (0 when the duration is 0).
    pub operations_per_minute: f64,
}

/// The additive part of the statistics: fold operations in any order, then `finish`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsAcc {
    pub total: u64,
    pub successful: u64,
    pub retried: u64,
    pub retry_attempts: u64,
    pub max_retry: u64,
    pub execution_time: f64,
}

fn round(x: f64, places: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round(part as f64 * 100.0 / whole as f64, 2)
    }
}

impl StatsAcc {
    pub fn add(&mut self, status: OperationStatus, attempt_count: u32, execution_time: f64) {
        let retries = u64::from(attempt_count.saturating_sub(1));
        self.total += 1;
        if is_success(status) {
            self.successful += 1;
        }
        if retries > 0 {
            self.retried += 1;
        }
        self.retry_attempts += retries;
        self.max_retry = self.max_retry.max(retries);
        if execution_time.is_finite() && execution_time > 0.0 {
            self.execution_time += execution_time;
        }
    }

    /// Back from the statistics of an open session (they carry every additive part).
    pub fn from_statistics(s: &FinalStatistics) -> Self {
        StatsAcc {
            total: s.total_operations,
            successful: s.successful_operations.min(s.total_operations),
            retried: s.retried_operations,
            retry_attempts: s.total_retry_attempts,
            max_retry: s.max_retry_count,
            execution_time: s.total_execution_time.max(0.0),
        }
    }

    /// The 13 fields; `session_duration` in seconds.
    pub fn finish(&self, session_duration: f64) -> FinalStatistics {
        let n = self.total;
        let avg = |x: f64, places| {
            if n == 0 {
                0.0
            } else {
                round(x / n as f64, places)
            }
        };
        FinalStatistics {
            total_operations: n,
            successful_operations: self.successful,
            failed_operations: n - self.successful,
            retried_operations: self.retried,
            total_retry_attempts: self.retry_attempts,
            average_retry_count: avg(self.retry_attempts as f64, 2),
            max_retry_count: self.max_retry,
            total_execution_time: round(self.execution_time, 3),
            average_execution_time: avg(self.execution_time, 3),
            success_rate: pct(self.successful, n),
            failure_rate: pct(n - self.successful, n),
            retry_rate: pct(self.retried, n),
            operations_per_minute: if session_duration > 0.0 {
                round(n as f64 * 60.0 / session_duration, 2)
            } else {
                0.0
            },
        }
    }
}

/// Seconds from `start` to `end` (RFC 3339); 0 when either does not parse or end < start.
pub fn seconds_between(start: &str, end: &str) -> f64 {
    match (
        chrono::DateTime::parse_from_rfc3339(start),
        chrono::DateTime::parse_from_rfc3339(end),
    ) {
        (Ok(a), Ok(b)) => ((b - a).num_milliseconds() as f64 / 1000.0).max(0.0),
        _ => 0.0,
    }
}

/// min/max/mean and percentiles of a sample (nearest rank), for the performance record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Distribution {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

pub fn distribution(mut xs: Vec<f64>) -> Distribution {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return Distribution::default();
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let rank = |p: f64| xs[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Distribution {
        count: n as u64,
        min: round(xs[0], 3),
        max: round(xs[n - 1], 3),
        mean: round(xs.iter().sum::<f64>() / n as f64, 3),
        p50: round(rank(0.5), 3),
        p90: round(rank(0.9), 3),
        p99: round(rank(0.99), 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn st(ok: bool) -> OperationStatus {
        if ok {
            OperationStatus::Completed
        } else {
            OperationStatus::Failed
        }
    }

    #[test]
    fn the_seed_example_comes_out_as_the_seed_shows() {
        // Five operations, four succeeded, two retried (1 and 2 retries), 330 s in all.
        let mut acc = StatsAcc::default();
        for (ok, attempts, t) in [
            (true, 1, 60.0),
            (true, 2, 70.0),
            (true, 3, 80.0),
            (true, 1, 50.0),
            (false, 1, 70.0),
        ] {
            acc.add(st(ok), attempts, t);
        }
        let s = acc.finish(330.0);
        assert_eq!(s.total_operations, 5);
        assert_eq!(s.successful_operations, 4);
        assert_eq!(s.failed_operations, 1);
        assert_eq!(s.retried_operations, 2);
        assert_eq!(s.total_retry_attempts, 3);
        assert_eq!(s.average_retry_count, 0.6);
        assert_eq!(s.max_retry_count, 2);
        assert_eq!(s.total_execution_time, 330.0);
        assert_eq!(s.average_execution_time, 66.0);
        assert_eq!(s.success_rate, 80.0);
        assert_eq!(s.failure_rate, 20.0);
        assert_eq!(s.retry_rate, 40.0);
        assert_eq!(s.operations_per_minute, 0.91);
    }

    #[test]
    fn empty_session_has_zeros_not_nans() {
        let s = StatsAcc::default().finish(0.0);
        assert_eq!(s, FinalStatistics::default());
        assert_eq!(distribution(vec![]).count, 0);
        assert_eq!(seconds_between("x", "2023-12-01T10:00:00Z"), 0.0);
        assert_eq!(
            seconds_between("2023-12-01T10:00:00Z", "2023-12-01T10:05:30Z"),
            330.0
        );
    }

    proptest! {
        #[test]
        fn statistics_hold_together(ops in proptest::collection::vec((any::<bool>(), 1u32..20, 0.0f64..1e4), 0..200), dur in 0.0f64..1e5) {
            let mut fwd = StatsAcc::default();
            let mut rev = StatsAcc::default();
            for (ok, a, t) in &ops { fwd.add(st(*ok), *a, *t); }
            for (ok, a, t) in ops.iter().rev() { rev.add(st(*ok), *a, *t); }
            let s = fwd.finish(dur);
            let r = rev.finish(dur);
            // Order of folding does not matter (up to float summation rounding).
            prop_assert_eq!(s.total_operations, r.total_operations);
            prop_assert_eq!(s.successful_operations, r.successful_operations);
            prop_assert!((s.total_execution_time - r.total_execution_time).abs() < 1e-3);
            prop_assert_eq!(s.successful_operations + s.failed_operations, s.total_operations);
            prop_assert!(s.retried_operations <= s.total_operations);
            prop_assert!(s.total_retry_attempts >= s.retried_operations);
            prop_assert!(s.max_retry_count <= s.total_retry_attempts);
            if s.total_operations > 0 {
                prop_assert!((s.success_rate + s.failure_rate - 100.0).abs() <= 0.011);
            }
            // Round-trip through an open session's statistics loses nothing additive.
            let back = StatsAcc::from_statistics(&s).finish(dur);
            prop_assert_eq!(back.total_operations, s.total_operations);
            prop_assert_eq!(back.failed_operations, s.failed_operations);
            prop_assert_eq!(back.max_retry_count, s.max_retry_count);
        }

        #[test]
        fn percentiles_are_ordered(xs in proptest::collection::vec(0.0f64..1e6, 1..300)) {
            let d = distribution(xs);
            prop_assert!(d.min <= d.p50 && d.p50 <= d.p90 && d.p90 <= d.p99 && d.p99 <= d.max);
        }
    }
}
