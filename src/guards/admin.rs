//! `retryx breaker status|reset|open KEY` and `retryx budget status|reset KEY`: where the state
//! lives (`--state-backend`, else `RETRYX_STATE_BACKEND`, else the file backend under
//! `--state-dir` / `<artifacts-dir>/state`), then the guard's own admin action on that backend.
//! Prints nothing and decides no exit code (the front door does); errors never hold a password.

use serde_json::Value;

use super::backend::{BackendError, DEFAULT_TIMEOUT};
use crate::config::{Config, DurationSpec};

/// The environment variable naming the state backend when no flag does.
pub const BACKEND_ENV: &str = "RETRYX_STATE_BACKEND";

/// The backend named by the flag, else by `RETRYX_STATE_BACKEND` (empty means unset).
pub fn backend_from(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var(BACKEND_ENV).ok())
        .filter(|v| !v.is_empty())
}

/// Where guard state lives, as the admin subcommands are told.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct StatePlace {
    /// Where guard state lives [default: <artifacts-dir>/state, else /tmp/ansible_retry/state]
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<String>,
    /// Records directory (its state/ subdirectory holds guard state when --state-dir is not given)
    #[arg(long, value_name = "DIR", global = true)]
    pub artifacts_dir: Option<String>,
    /// file, or redis://[user:password@]host:port/db, rediss://... [env: RETRYX_STATE_BACKEND]
    #[arg(long, value_name = "URL", global = true)]
    pub state_backend: Option<String>,
    /// Key prefix on Redis [default: retryx]
    #[arg(long, value_name = "PREFIX", global = true)]
    pub state_backend_prefix: Option<String>,
    /// PEM file of CA certificates trusted for rediss://
    #[arg(long, value_name = "FILE", global = true)]
    pub state_backend_ca: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

fn open(
    place: &StatePlace,
    key: &str,
) -> Result<Box<dyn super::backend::StateBackend>, AdminError> {
    if key.is_empty() {
        return Err(AdminError::Usage("expected a non-empty KEY".into()));
    }
    let config = Config {
        state_dir: place.state_dir.clone(),
        artifacts_dir: place.artifacts_dir.clone(),
        state_backend: backend_from(place.state_backend.clone()),
        state_backend_prefix: place.state_backend_prefix.clone(),
        state_backend_ca: place.state_backend_ca.clone(),
        state_backend_timeout: Some(DurationSpec::from(DEFAULT_TIMEOUT)),
        ..Default::default()
    };
    let dir = super::state_dir_for(&config);
    let spec = super::backend_spec(&config, &dir).map_err(|e| AdminError::Usage(e.to_string()))?;
    Ok(spec.open())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn breaker(
    place: &StatePlace,
    key: &str,
    action: super::breaker::AdminAction,
) -> Result<Value, AdminError> {
    let b = open(place, key)?;
    Ok(super::breaker::admin(b.as_ref(), key, action, now())?)
}

pub fn budget(
    place: &StatePlace,
    key: &str,
    action: super::budget::AdminAction,
) -> Result<Value, AdminError> {
    let b = open(place, key)?;
    Ok(super::budget::admin(b.as_ref(), key, action, now())?)
}
