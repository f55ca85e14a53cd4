//! Session statistics in the seed's vocabulary ("Session Statistics": the 13 `final_statistics`
//! fields), computed from operation summaries. Pure: no I/O, no clock.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::OperationStatus;

/// What the session keeps of each operation (enough for the statistics and for finding the
/// operation's own record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OperationSummary {
    pub operation_id: String,
    pub operation_name: String,
    pub status: OperationStatus,
    pub attempt_count: u32,
    /// Seconds, waits included.
    pub execution_time: f64,
    pub start_time: String,
    pub end_time: String,
    pub final_error_type: Option<String>,
}

impl OperationSummary {
    pub fn succeeded(&self) -> bool {
        matches!(
            self.status,
            OperationStatus::Completed | OperationStatus::Skipped
        )
    }
}

/// The seed's `final_statistics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FinalStatistics {
    pub total_operations: u64,
    pub successful_operations: u64,
    pub failed_operations: u64,
    /// Operations that needed more than one attempt.
    pub retried_operations: u64,
    /// Attempts beyond the first, over all operations.
    pub total_retry_attempts: u64,
    pub average_retry_count: f64,
    pub max_retry_count: u64,
    /// Seconds: the operations' execution times added up.
    pub total_execution_time: f64,
    pub average_execution_time: f64,
    /// Percent.
    pub success_rate: f64,
    pub failure_rate: f64,
    pub retry_rate: f64,
    /// Operations per minute of session time (first start to last end).
    pub operations_per_minute: f64,
}

fn round2(x: f64) -> f64 {
    if x.is_finite() {
        (x * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Statistics of `ops` over a session that lasted `span_secs`.
pub fn final_statistics(ops: &[OperationSummary], span_secs: f64) -> FinalStatistics {
    let total = ops.len() as u64;
    let successful = ops.iter().filter(|o| o.succeeded()).count() as u64;
    let retries: Vec<u64> = ops
        .iter()
        .map(|o| u64::from(o.attempt_count.saturating_sub(1)))
        .collect();
    let total_retry_attempts: u64 = retries.iter().sum();
    let total_time: f64 = ops.iter().map(|o| o.execution_time).sum();
    let per = |n: f64| if total == 0 { 0.0 } else { n / total as f64 };
    FinalStatistics {
        total_operations: total,
        successful_operations: successful,
        failed_operations: total - successful,
        retried_operations: retries.iter().filter(|&&r| r > 0).count() as u64,
        total_retry_attempts,
        average_retry_count: round2(per(total_retry_attempts as f64)),
        max_retry_count: retries.iter().copied().max().unwrap_or(0),
        total_execution_time: round2(total_time),
        average_execution_time: round2(per(total_time)),
        success_rate: round2(per(successful as f64) * 100.0),
        failure_rate: round2(per((total - successful) as f64) * 100.0),
        retry_rate: round2(per(retries.iter().filter(|&&r| r > 0).count() as f64) * 100.0),
        operations_per_minute: if span_secs > 0.0 {
            round2(total as f64 / (span_secs / 60.0))
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op(status: OperationStatus, attempts: u32, secs: f64) -> OperationSummary {
        OperationSummary {
            operation_id: "x".into(),
            operation_name: "x".into(),
            status,
            attempt_count: attempts,
            execution_time: secs,
            start_time: String::new(),
            end_time: String::new(),
            final_error_type: None,
        }
    }

    #[test]
    fn the_seed_example_comes_out() {
        // seed 003: 5 operations, 4 succeeded, 2 retried, 3 retry attempts, 330 s
        use OperationStatus::*;
        let ops = vec![
            op(Completed, 1, 66.0),
            op(Completed, 3, 66.0),
            op(Completed, 2, 66.0),
            op(Completed, 1, 66.0),
            op(Failed, 1, 66.0),
        ];
        let s = final_statistics(&ops, 330.0);
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
    fn an_empty_session_has_zero_statistics() {
        assert_eq!(final_statistics(&[], 0.0), FinalStatistics::default());
    }

    proptest! {
        #[test]
        fn rates_are_percentages_that_add_up(attempts in proptest::collection::vec((1u32..20, any::<bool>()), 1..50)) {
            let ops: Vec<_> = attempts.iter().map(|&(a, ok)| op(if ok { OperationStatus::Completed } else { OperationStatus::Failed }, a, 1.0)).collect();
            let s = final_statistics(&ops, 60.0);
            prop_assert!((s.success_rate + s.failure_rate - 100.0).abs() < 0.02);
            prop_assert!(s.retry_rate <= 100.0 && s.retried_operations <= s.total_operations);
            prop_assert_eq!(s.successful_operations + s.failed_operations, s.total_operations);
        }
    }
}
