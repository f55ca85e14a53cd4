//! The typed configuration: one schema for module args, the CLI `--config` file and the role's
//! `retry_manager` dict. Parsing, coercion, validation and defaults; pure (no I/O, no clock).

pub mod duration;
pub mod guards;
pub mod nesting;
pub mod notify;
mod resolve;
mod schema_check;
mod validate;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use duration::{DurationSpec, format_duration, parse_duration};
pub use resolve::{CommandLine, Plan, Resolved, StdinSpec};
pub use validate::{
    ConfigError, coerce_and_validate, coerced_for_schema, schema_accepts, schema_json,
    validator_errors,
};

use crate::classify::ErrorClass;
use crate::policy::{JitterKind, PolicyKind};
use guards::{
    AdaptiveConfig, BulkheadConfig, CircuitBreakerConfig, IntegrationConfig, RetryBudgetConfig,
};
use notify::{ExternalSystem, Monitoring};

/// Exit codes as `"1,75,100-110"` or a list of integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExitCodes {
    Text(String),
    List(Vec<i32>),
}

/// One or several regular expressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Patterns {
    pub fn as_slice(&self) -> Vec<&str> {
        match self {
            Patterns::One(p) => vec![p.as_str()],
            Patterns::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

// Hand-written schemas: a plain type list reads better in errors than an `anyOf`.
impl JsonSchema for ExitCodes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExitCodes".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Exit codes: a string such as \"1,75,100-110\" or a list of integers 0-255.",
            "type": ["string", "array"],
            "items": {"type": "integer", "minimum": 0, "maximum": 255}
        })
    }
}

impl JsonSchema for Patterns {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Patterns".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A regular expression or a list of them.",
            "type": ["string", "array"],
            "items": {"type": "string"}
        })
    }
}

/// A user pattern that gives output a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorPattern {
    /// Regular expression (case-sensitive; add `(?i)` for case-insensitive).
    pub pattern: String,
    pub class: ErrorClass,
}

/// What the module (or `retryx` subcommands) is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Run,
    Finalize,
    Cleanup,
    Compress,
    Notify,
    Download,
}

/// Declares a struct with the keys an operation may override, plus the extra fields given.
/// Both the top level and each `operation_configs` entry share these keys.
macro_rules! with_operation_keys {
    ($(#[$meta:meta])* pub struct $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            /// Attempts in all, first included (default 3).
            #[schemars(range(min = 1, max = 10000))]
            pub max_attempts: Option<u32>,
            /// exponential_backoff, linear_backoff, fixed_delay (or exponential, linear, fixed).
            pub retry_policy: Option<PolicyKind>,
            /// Base delay before the first retry (default 1s; the role's default is 5).
            pub base_delay: Option<DurationSpec>,
            /// Cap on any single wait (default 30s; the role's default is 300).
            pub max_delay: Option<DurationSpec>,
            /// Exponential multiplier (default 2.0).
            #[schemars(range(min = 1.0, max = 100.0))]
            pub backoff_multiplier: Option<f64>,
            /// Jitter on or off (default on: proportional ±25%).
            pub jitter_enabled: Option<bool>,
            /// Jitter kind: none, proportional, full, equal, decorrelated.
            pub jitter: Option<JitterKind>,
            /// Seed for reproducible jitter.
            pub jitter_seed: Option<u64>,
            /// Per-attempt timeout: the attempt's process group is killed and classed `timeout`.
            pub timeout: Option<DurationSpec>,
            /// Bound on the whole operation, waits and kill grace included (a stopped attempt
            /// gets TERM early enough that KILL lands at the deadline).
            pub deadline: Option<DurationSpec>,
            /// Grace between TERM and KILL when an attempt is stopped (default 2s).
            pub kill_grace: Option<DurationSpec>,
            /// Error classes that are retried (default: the seven retryable classes and unknown_error).
            pub retry_conditions: Option<Vec<ErrorClass>>,
            /// Exit codes that are retried (default: any non-zero).
            pub retry_on_exit: Option<ExitCodes>,
            /// Exit codes never retried (wins over everything).
            pub fail_on_exit: Option<ExitCodes>,
            /// Output patterns that make a failure retryable.
            pub retry_if: Option<Patterns>,
            /// Output patterns that make a failure final (wins over retry_if).
            pub fail_if: Option<Patterns>,
            /// Patterns that give output an error class.
            pub error_patterns: Option<Vec<ErrorPattern>>,
            /// `delay_from_output: 'Retry-After: (\d+)'`: one capture in seconds sets the next wait (still capped).
            pub delay_from_output: Option<String>,
            /// Command run by /bin/sh -c.
            pub command: Option<String>,
            /// Command as a list, run without a shell.
            pub argv: Option<Vec<String>>,
            /// Working directory of the command.
            pub chdir: Option<String>,
            /// Environment added for the command.
            pub env: Option<BTreeMap<String, String>>,
            /// Text fed to the command's stdin on every attempt.
            pub stdin: Option<String>,
            /// Skip the run when this path exists (as ansible.builtin.command).
            pub creates: Option<String>,
            /// Skip the run when this path does not exist (as ansible.builtin.command).
            pub removes: Option<String>,
            /// Idempotency check: exit 0 means the work is already done.
            pub check_command: Option<String>,
            /// Run check_command before the first attempt too.
            pub check_before_first: Option<bool>,
            pub circuit_breaker: Option<CircuitBreakerConfig>,
            pub bulkhead: Option<BulkheadConfig>,
            pub retry_budget: Option<RetryBudgetConfig>,
            pub adaptive: Option<AdaptiveConfig>,
            /// Before retrying a network-class failure, wait for the network.
            pub wait_for_network: Option<bool>,
            /// Interfaces that must be up (default: any non-loopback interface).
            pub required_interfaces: Option<Vec<String>>,
            /// `host:port` that must accept a TCP connection.
            pub network_probe: Option<String>,
            /// Longest wait for the network (default 300s).
            pub max_network_wait: Option<DurationSpec>,
            /// Policy by error class: `class_overrides.<class>` sets base_delay, max_delay,
            /// backoff_multiplier, max_attempts, timeout from the attempt that failed with that
            /// class (e.g. `rate_limit_exceeded: {base_delay: 30, max_delay: 600}`); an
            /// operation's map replaces the top level's.
            pub class_overrides: Option<BTreeMap<ErrorClass, ClassOverride>>,
            $($extra)*
        }
    };
}

/// The policy keys one error class may override (`class_overrides.<class>`); unset keys keep
/// the operation's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassOverride {
    /// Base delay of the waits after a failure of this class.
    pub base_delay: Option<DurationSpec>,
    /// Cap on those waits.
    pub max_delay: Option<DurationSpec>,
    /// Exponential multiplier of those waits.
    #[schemars(range(min = 1.0, max = 100.0))]
    pub backoff_multiplier: Option<f64>,
    /// Attempts in all (first included) once a failure of this class happened.
    #[schemars(range(min = 1, max = 10000))]
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout of the attempts after a failure of this class.
    pub timeout: Option<DurationSpec>,
}

with_operation_keys! {
    /// Overrides for one operation (`operation_configs.<name>`).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct OperationConfig {}
}

with_operation_keys! {
    /// Module args = CLI `--config` file = the role's `retry_manager` dict.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(title = "retry_manager")]
    pub struct Config {
        /// What to do: run (default), finalize, cleanup, compress, notify, download.
        pub action: Option<Action>,
        /// Operation name: picks operation_configs, keys guards and records (default `command`).
        pub operation: Option<String>,
        /// Per-operation overrides of the keys above.
        pub operation_configs: Option<BTreeMap<String, OperationConfig>>,
        /// Context recorded with the operation (the role passes retry_component_context); never
        /// interpreted; nested at most 64 levels deep.
        pub context: Option<serde_json::Value>,
        /// Add the operation to this session (default: a new one).
        pub session_id: Option<String>,
        /// Where records go (module default /tmp/ansible_retry; the CLI writes none unless set).
        pub artifacts_dir: Option<String>,
        /// Where guard state goes (default <artifacts_dir>/state).
        pub state_dir: Option<String>,
        /// Where breakers, bulkheads, budgets and adaptive history are kept: `file` (default,
        /// under state_dir) or `redis://[user:password@]host:port/db` / `rediss://...` (shared
        /// by every host; the password is a secret).
        pub state_backend: Option<String>,
        /// When the state backend cannot be reached: `open` (default: warn, use the local file
        /// guards) or `closed` (refuse: exit 75, class backend_unavailable).
        pub state_backend_failure: Option<guards::BackendFailure>,
        /// Key prefix on Redis: keys are `<prefix>:<kind>:<key>` (default `retryx`).
        pub state_backend_prefix: Option<String>,
        /// Connect and read timeouts together, half each (default 1s).
        pub state_backend_timeout: Option<DurationSpec>,
        /// PEM file of extra CA certificates trusted for `rediss://`.
        pub state_backend_ca: Option<String>,
        /// One line per attempt in `retry.debug` (number, rc, class, matched text, time, wait;
        /// the role prints them) and the log lines in `retry.log`.
        pub debug_mode: Option<bool>,
        /// Write attempt_<operation_id>_<n>.json for every attempt.
        pub log_individual_attempts: Option<bool>,
        /// Bytes of stdout and of stderr kept for the result (default 65536).
        #[schemars(range(min = 0, max = 67108864))]
        pub output_tail_bytes: Option<u64>,
        /// Send to external_systems (default true when any is configured).
        pub external_integration: Option<bool>,
        pub external_systems: Option<Vec<ExternalSystem>>,
        /// Bound on all notification delivery of one run, every try of every receiver (default 10s).
        pub notification_timeout: Option<DurationSpec>,
        /// For action notify: metrics, alerts or test.
        pub notify_kind: Option<String>,
        pub monitoring: Option<Monitoring>,
        /// Seed 003's integration switches with other roles.
        pub integration: Option<IntegrationConfig>,
        /// Days records are kept by cleanup (default 30).
        #[schemars(range(min = 0, max = 36500))]
        pub retention_days: Option<u32>,
        /// Sessions kept by cleanup (default 100).
        #[schemars(range(min = 0, max = 1000000))]
        pub max_sessions: Option<u32>,
        /// Files above this many bytes are gzipped by compress (default 1 MiB).
        #[schemars(range(min = 0))]
        pub compress_threshold: Option<u64>,
        /// For action download: the URL.
        pub url: Option<String>,
        /// For action download: the destination file.
        pub dest: Option<String>,
        /// For action download: `sha256:<hex>`.
        pub checksum: Option<String>,
        /// For action download: request headers (values are secret).
        pub headers: Option<BTreeMap<String, String>>,
        /// For action download: download even when dest matches the checksum.
        pub force: Option<bool>,
    }
}
