//! Config shapes of the guards (circuit breaker, bulkhead, retry budget, adaptive retry,
//! network-aware waiting, idempotency check) and of where their state lives (`state_backend`).
//! Shapes only: behaviour lives in `src/guards/`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::DurationSpec;
use crate::classify::ErrorClass;

/// What guards do when the shared state backend (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendFailure {
    /// Warn (naming the backend) and go on with the local file guards; the exit code is the
    /// command's.
    #[default]
    Open,
    /// Refuse to run: exit 75, class `backend_unavailable`.
    Closed,
}

/// How a circuit breaker's window counts calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowType {
    /// The last `window_size` calls.
    Count,
    /// The calls of the last `window_duration`.
    Time,
}

/// Circuit breaker (closed / open / half-open, as in resilience4j), per key, shared across
/// processes through the state backend (`state_dir`, or Redis).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Switch a configured breaker off with `false` (default true when the object is given).
    pub enabled: Option<bool>,
    /// Breaker key (default: the operation name).
    pub key: Option<String>,
    pub window_type: Option<WindowType>,
    /// Calls in a count window (default 20).
    #[schemars(range(min = 1, max = 100000))]
    pub window_size: Option<u32>,
    /// Length of a time window (default 60s).
    pub window_duration: Option<DurationSpec>,
    /// Failure rate in percent that opens the breaker (default 50; above 0).
    #[schemars(range(max = 100.0), extend("exclusiveMinimum" = 0))]
    pub failure_rate_threshold: Option<f64>,
    /// Calls needed in the window before the rate counts (default 5).
    #[schemars(range(min = 1, max = 100000))]
    pub minimum_calls: Option<u32>,
    /// Open after this many failures in a row, whatever the rate.
    #[schemars(range(min = 1, max = 100000))]
    pub consecutive_failures: Option<u32>,
    /// A call slower than this counts as slow.
    pub slow_call_duration: Option<DurationSpec>,
    /// Slow-call rate in percent that opens the breaker (above 0).
    #[schemars(range(max = 100.0), extend("exclusiveMinimum" = 0))]
    pub slow_call_rate_threshold: Option<f64>,
    /// How long the breaker stays open before letting trial calls through (default 30s).
    pub open_duration: Option<DurationSpec>,
    /// Trial calls allowed while half-open (default 1).
    #[schemars(range(min = 1, max = 1000))]
    pub half_open_max_calls: Option<u32>,
    /// Error classes that count as failures (default: the retryable classes and
    /// unknown_error; spawn_error and configuration errors do not count).
    pub record_classes: Option<Vec<ErrorClass>>,
    /// Error classes that never count, not even as calls (wins over record_classes).
    pub ignore_classes: Option<Vec<ErrorClass>>,
    /// How long a half-open trial permit lasts unless renewed while its call runs (default 15s):
    /// a holder that dies frees it after this long.
    pub lease_duration: Option<DurationSpec>,
}

/// Bulkhead: at most `max_concurrent` runs per key at once across processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkheadConfig {
    pub enabled: Option<bool>,
    /// Bulkhead key (default: the operation name).
    pub key: Option<String>,
    /// Runs allowed at once (default 1).
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent: Option<u32>,
    /// How long to wait for a slot before giving up with `bulkhead_full` (default 0).
    pub max_wait: Option<DurationSpec>,
    /// On Redis, how long a slot lasts unless renewed while its command runs (default 15s): a
    /// holder that dies frees its slot after this long.
    pub lease_duration: Option<DurationSpec>,
}

/// Retry budget: a token bucket per key shared across processes (gRPC retryThrottling style).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    pub enabled: Option<bool>,
    pub key: Option<String>,
    /// Bucket size (default 10).
    #[schemars(range(min = 1.0, max = 1000000.0))]
    pub max_tokens: Option<f64>,
    /// Tokens given back by each success (default 0.1; above 0, else the bucket never refills).
    #[schemars(range(max = 1000.0), extend("exclusiveMinimum" = 0))]
    pub token_ratio: Option<f64>,
}

/// Adaptive retry: adjusts delays and attempts from the key's recent history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    pub enabled: Option<bool>,
    pub key: Option<String>,
    /// Operations remembered (default 20).
    #[schemars(range(min = 1, max = 10000))]
    pub window: Option<u32>,
    /// Success rate in percent below which delays grow and attempts shrink (default 50).
    #[schemars(range(min = 0.0, max = 100.0))]
    pub success_rate_floor: Option<f64>,
    /// Largest factor applied to delays (default 4).
    #[schemars(range(min = 1.0, max = 100.0))]
    pub max_delay_factor: Option<f64>,
    /// Fewest attempts adaptive may cut down to (default 1).
    #[schemars(range(min = 1, max = 10000))]
    pub min_attempts: Option<u32>,
}

/// Seed 003's integration switches with other roles; recorded, and `idempotency_checker`
/// turns on the idempotency check when `check_command` is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    pub call_stack_manager: Option<bool>,
    pub output_manager: Option<bool>,
    pub idempotency_checker: Option<bool>,
    pub aap_state_manager: Option<bool>,
}
