//! The breaker and budget actions (`retryx breaker status|reset|open KEY`, `retryx budget
//! status|reset KEY`): where the state lives (a backend URL, else the file backend under
//! `state_dir` / `<artifacts_dir>/state`), then the guard's own admin action on that backend.
//! Prints nothing and decides no exit code (the front door does); errors never hold a password.

use serde_json::Value;

use crate::config::{Config, DurationSpec};
use crate::guards::backend::{BackendError, DEFAULT_TIMEOUT};

/// Where guard state lives, as the front door was told.
#[derive(Debug, Default, Clone)]
pub(crate) struct StatePlace {
    pub(crate) state_dir: Option<String>,
    pub(crate) artifacts_dir: Option<String>,
    /// `file` or a Redis URL (already taken from the flag or the environment).
    pub(crate) state_backend: Option<String>,
    pub(crate) state_backend_prefix: Option<String>,
    pub(crate) state_backend_ca: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

fn open(
    place: &StatePlace,
    key: &str,
) -> Result<Box<dyn crate::guards::backend::StateBackend>, AdminError> {
    if key.is_empty() {
        return Err(AdminError::Usage("expected a non-empty KEY".into()));
    }
    let config = Config {
        state_dir: place.state_dir.clone(),
        artifacts_dir: place.artifacts_dir.clone(),
        state_backend: place.state_backend.clone(),
        state_backend_prefix: place.state_backend_prefix.clone(),
        state_backend_ca: place.state_backend_ca.clone(),
        state_backend_timeout: Some(DurationSpec::from(DEFAULT_TIMEOUT)),
        ..Default::default()
    };
    let dir = crate::guards::state_dir_for(&config);
    let spec =
        crate::guards::backend_spec(&config, &dir).map_err(|e| AdminError::Usage(e.to_string()))?;
    Ok(spec.open())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn breaker(
    place: &StatePlace,
    key: &str,
    action: crate::guards::breaker::AdminAction,
) -> Result<Value, AdminError> {
    let b = open(place, key)?;
    Ok(crate::guards::breaker::admin(
        b.as_ref(),
        key,
        action,
        now(),
    )?)
}

pub(crate) fn budget(
    place: &StatePlace,
    key: &str,
    action: crate::guards::budget::AdminAction,
) -> Result<Value, AdminError> {
    let b = open(place, key)?;
    Ok(crate::guards::budget::admin(
        b.as_ref(),
        key,
        action,
        now(),
    )?)
}
