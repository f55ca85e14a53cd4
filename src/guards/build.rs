//! Builds an operation's `GuardSet` from its merged config: checks the guard keys (bad values are
//! usage errors naming the key), applies defaults, picks the state directory and orders the
//! guards, and picks where their state lives (`state_backend`: one `Store` shared by the
//! operation's guards). A guard that is not configured (or has `enabled: false`) is not built
//! and touches no file; building touches no file and opens no connection either. This file
//! must not run anything.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::adaptive::{self, Adaptive};
use super::backend::{BackendSpec, DEFAULT_PREFIX, DEFAULT_TIMEOUT, Store};
use super::breaker::{self, Breaker};
use super::budget::{self, Budget};
use super::bulkhead::{self, Bulkhead};
use super::idempotency::{self, Idempotency};
use super::network::{self, NetworkWait, SysLinks};
use super::{Guard, GuardSet};
use crate::config::{Config, Plan};

/// Where guard state lives when nothing says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/tmp/ansible_retry/state";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GuardError {
    #[error("key '{key}': {message}")]
    Config { key: String, message: String },
}

fn bad(key: &str, message: impl Into<String>) -> GuardError {
    GuardError::Config {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The state directory: `state_dir`, else `<artifacts_dir>/state`, else the default.
pub fn state_dir_for(config: &Config) -> PathBuf {
    match (&config.state_dir, &config.artifacts_dir) {
        (Some(s), _) => PathBuf::from(s),
        (None, Some(a)) => Path::new(a).join("state"),
        (None, None) => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

fn on(enabled: Option<bool>) -> bool {
    enabled.unwrap_or(true)
}

fn key_for(given: &Option<String>, plan: &Plan, name: &str) -> Result<String, GuardError> {
    match given {
        Some(k) if k.trim().is_empty() => Err(bad(
            &format!("{name}.key"),
            "expected a non-empty key (default: the operation name)",
        )),
        Some(k) => Ok(k.clone()),
        None => Ok(plan.operation.clone()),
    }
}

/// Checks `host:port` (a name or an address; IPv6 in brackets).
pub fn parse_probe(text: &str) -> Result<(), String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("expected host:port, got {text:?}"));
    };
    if host.trim_matches(['[', ']']).is_empty() {
        return Err(format!("expected host:port with a host, got {text:?}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "expected host:port with a port 1-65535, got {text:?}"
        )),
    }
}

/// Where guard state lives, from `state_backend` and its companions (checked; a bad URL is a
/// usage error naming the key, never quoting the password).
pub fn backend_spec(config: &Config, state_dir: &Path) -> Result<BackendSpec, GuardError> {
    let prefix = config
        .state_backend_prefix
        .as_deref()
        .unwrap_or(DEFAULT_PREFIX);
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        return Err(bad(
            "state_backend_prefix",
            "expected a non-empty prefix without spaces",
        ));
    }
    let timeout = config
        .state_backend_timeout
        .map(|d| d.get())
        .unwrap_or(DEFAULT_TIMEOUT);
    if timeout < Duration::from_millis(2) || timeout > Duration::from_secs(60) {
        return Err(bad(
            "state_backend_timeout",
            "expected a duration from 2ms to 60s (connect and read timeouts, half each)",
        ));
    }
    let text = config.state_backend.as_deref().unwrap_or("file");
    let spec = BackendSpec::parse(
        text,
        state_dir.to_path_buf(),
        prefix,
        timeout,
        config.state_backend_ca.clone(),
    )
    .map_err(|e| bad("state_backend", e))?;
    if let (BackendSpec::File(_), Some(_)) = (&spec, &config.state_backend_ca) {
        return Err(bad("state_backend_ca", "needs a rediss:// state_backend"));
    }
    Ok(spec)
}

/// The store the guards of one operation share.
pub fn store_for(config: &Config, state_dir: &Path) -> Result<Rc<Store>, GuardError> {
    Ok(Rc::new(Store::new(
        backend_spec(config, state_dir)?,
        state_dir.to_path_buf(),
        config.state_backend_failure.unwrap_or_default(),
    )))
}

/// The guards for one operation, in the order the engine consults them: adaptive (tunes the
/// plan), retry budget and circuit breaker (may deny a retry), bulkhead then breaker before each
/// attempt (a slot first, so a half-open permit is never taken by someone stuck in the queue),
/// network wait, then the idempotency check (last, so it runs once the network is back).
pub fn build(config: &Config, plan: &Plan, state_dir: &Path) -> Result<GuardSet, GuardError> {
    let mut guards: Vec<Box<dyn Guard>> = Vec::new();
    let store = store_for(config, state_dir)?;

    if let Some(a) = config.adaptive.as_ref().filter(|a| on(a.enabled)) {
        let s = adaptive::Settings {
            window: a.window.unwrap_or(adaptive::DEFAULT_WINDOW),
            floor: a.success_rate_floor.unwrap_or(adaptive::DEFAULT_FLOOR),
            max_delay_factor: a
                .max_delay_factor
                .unwrap_or(adaptive::DEFAULT_MAX_DELAY_FACTOR),
            min_attempts: a.min_attempts.unwrap_or(adaptive::DEFAULT_MIN_ATTEMPTS),
        };
        let key = key_for(&a.key, plan, "adaptive")?;
        guards.push(Box::new(Adaptive::new(store.clone(), &key, s)));
    }

    if let Some(b) = config.retry_budget.as_ref().filter(|b| on(b.enabled)) {
        let key = key_for(&b.key, plan, "retry_budget")?;
        let max = b.max_tokens.unwrap_or(budget::DEFAULT_MAX_TOKENS);
        let ratio = b.token_ratio.unwrap_or(budget::DEFAULT_TOKEN_RATIO);
        if !(max.is_finite() && max >= 1.0) {
            return Err(bad("retry_budget.max_tokens", "expected a number ≥ 1"));
        }
        if !(ratio.is_finite() && ratio > 0.0) {
            // 0 would never refill the bucket: one outage would stop every retry for good.
            return Err(bad(
                "retry_budget.token_ratio",
                "expected a number above 0 (0 never refills the bucket)",
            ));
        }
        guards.push(Box::new(Budget::new(store.clone(), &key, max, ratio)));
    }

    if let Some(b) = config.bulkhead.as_ref().filter(|b| on(b.enabled)) {
        let key = key_for(&b.key, plan, "bulkhead")?;
        let lease = b.lease_duration.map(|d| d.get());
        if lease.is_some_and(|d| d < Duration::from_millis(100)) {
            return Err(bad("bulkhead.lease_duration", "expected at least 100ms"));
        }
        guards.push(Box::new(Bulkhead::new(
            store.clone(),
            &key,
            b.max_concurrent.unwrap_or(bulkhead::DEFAULT_MAX_CONCURRENT),
            b.max_wait.map(|d| d.get()).unwrap_or(Duration::ZERO),
            lease,
        )));
    }

    if let Some(c) = config.circuit_breaker.as_ref().filter(|c| on(c.enabled)) {
        let key = key_for(&c.key, plan, "circuit_breaker")?;
        let s = breaker::Settings::from_config(c);
        for (name, v) in [
            ("failure_rate_threshold", c.failure_rate_threshold),
            ("slow_call_rate_threshold", c.slow_call_rate_threshold),
        ] {
            if v.is_some_and(|t| !(t > 0.0 && t <= 100.0)) {
                // 0% would open the breaker on the first call, failed or not.
                return Err(bad(
                    &format!("circuit_breaker.{name}"),
                    "expected a percentage above 0 and at most 100",
                ));
            }
        }
        if c.lease_duration
            .is_some_and(|d| d.get() < Duration::from_millis(100))
        {
            return Err(bad(
                "circuit_breaker.lease_duration",
                "expected at least 100ms",
            ));
        }
        if c.window_duration.is_some_and(|d| d.get().is_zero()) {
            return Err(bad(
                "circuit_breaker.window_duration",
                "expected a duration above zero",
            ));
        }
        if c.slow_call_rate_threshold.is_some() && c.slow_call_duration.is_none() {
            return Err(bad(
                "circuit_breaker.slow_call_rate_threshold",
                "needs slow_call_duration (what counts as slow)",
            ));
        }
        if let breaker::Window::Count(n) = s.window
            && s.minimum_calls > n
            && s.failure_rate_threshold.is_some()
        {
            return Err(bad(
                "circuit_breaker.minimum_calls",
                format!("expected at most window_size ({n}), else the failure rate never counts"),
            ));
        }
        guards.push(Box::new(Breaker::new(store.clone(), &key, s)));
    }

    if config.wait_for_network == Some(true) {
        let ifaces = config.required_interfaces.clone().unwrap_or_default();
        if let Some(bad_name) = ifaces.iter().find(|n| {
            n.is_empty()
                || n.len() > 15
                || n.contains(['/', '\0'])
                || n.as_str() == "."
                || n.as_str() == ".."
        }) {
            return Err(bad(
                "required_interfaces",
                format!("{bad_name:?} is not an interface name"),
            ));
        }
        if let Some(p) = &config.network_probe {
            parse_probe(p).map_err(|e| bad("network_probe", e))?;
        }
        guards.push(Box::new(NetworkWait::new(
            Box::new(SysLinks::new(ifaces)),
            config.network_probe.clone(),
            config
                .max_network_wait
                .map(|d| d.get())
                .unwrap_or(network::DEFAULT_MAX_WAIT),
            plan.deadline,
        )));
    } else if config.required_interfaces.is_some()
        || config.network_probe.is_some()
        || config.max_network_wait.is_some()
    {
        return Err(bad(
            "wait_for_network",
            "required_interfaces, network_probe and max_network_wait need wait_for_network: true",
        ));
    }

    let checker_on = config
        .integration
        .as_ref()
        .and_then(|i| i.idempotency_checker)
        .unwrap_or(true);
    let check = config.check_command.clone().filter(|_| checker_on);
    if let Some(c) = &check
        && c.trim().is_empty()
    {
        return Err(bad("check_command", "expected a non-empty command"));
    }
    if config.check_before_first == Some(true) && config.check_command.is_none() {
        return Err(bad("check_before_first", "needs check_command"));
    }
    for (key, v) in [("creates", &config.creates), ("removes", &config.removes)] {
        if v.as_deref()
            .is_some_and(|p| p.is_empty() || p.contains('\0'))
        {
            return Err(bad(key, "expected a path or glob"));
        }
    }
    if config.creates.is_some() || config.removes.is_some() || check.is_some() {
        guards.push(Box::new(Idempotency::new(
            config.creates.clone(),
            config.removes.clone(),
            check,
            config.check_before_first.unwrap_or(false),
            plan.chdir.clone(),
            plan.env.clone(),
            plan.timeout.unwrap_or(idempotency::DEFAULT_CHECK_TIMEOUT),
        )));
    }

    Ok(GuardSet::new(guards))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Resolved;
    use serde_json::{Map, json};

    /// Builds the guards of `v`; an error from the schema or from building, as text.
    fn try_build(v: serde_json::Value) -> Result<GuardSet, String> {
        let r = Resolved::from_value(v, Map::new(), false).map_err(|e| e.to_string())?;
        build(&r.config, &r.plan, Path::new("/nonexistent/state")).map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_configured_builds_nothing_and_touches_nothing() {
        let set = try_build(json!({"command": "true"})).unwrap();
        assert!(set.is_empty());
        let set = try_build(json!({"command": "true", "circuit_breaker": {"enabled": false}, "bulkhead": {"enabled": false}})).unwrap();
        assert!(set.is_empty());
        assert!(!Path::new("/nonexistent").exists());
    }

    #[test]
    fn each_configured_guard_is_built() {
        let set = try_build(json!({
            "command": "true",
            "circuit_breaker": {}, "bulkhead": {"max_concurrent": 2}, "retry_budget": {},
            "adaptive": {}, "wait_for_network": true, "check_command": "true", "creates": "/x"
        }))
        .unwrap();
        let names: Vec<String> = set.report().keys().cloned().collect();
        for n in [
            "adaptive",
            "retry_budget",
            "bulkhead",
            "circuit_breaker",
            "network",
            "idempotency",
        ] {
            assert!(names.contains(&n.to_string()), "{n} in {names:?}");
        }
    }

    #[test]
    fn bad_guard_config_names_the_key() {
        for (v, key) in [
            (
                json!({"wait_for_network": true, "network_probe": "nohost"}),
                "network_probe",
            ),
            (
                json!({"wait_for_network": true, "network_probe": "h:0"}),
                "network_probe",
            ),
            (json!({"network_probe": "h:80"}), "wait_for_network"),
            (
                json!({"wait_for_network": true, "required_interfaces": ["../x"]}),
                "required_interfaces",
            ),
            (
                json!({"circuit_breaker": {"slow_call_rate_threshold": 50}}),
                "circuit_breaker.slow_call_rate_threshold",
            ),
            (
                json!({"circuit_breaker": {"window_size": 3, "minimum_calls": 5}}),
                "circuit_breaker.minimum_calls",
            ),
            (
                json!({"circuit_breaker": {"key": " "}}),
                "circuit_breaker.key",
            ),
            (json!({"check_before_first": true}), "check_before_first"),
            (
                json!({"circuit_breaker": {"failure_rate_threshold": 0}}),
                "circuit_breaker.failure_rate_threshold",
            ),
            (
                json!({"circuit_breaker": {"slow_call_duration": "1s", "slow_call_rate_threshold": 0}}),
                "circuit_breaker.slow_call_rate_threshold",
            ),
            (
                json!({"retry_budget": {"token_ratio": 0}}),
                "retry_budget.token_ratio",
            ),
            (json!({"state_backend": "http://h:1"}), "state_backend"),
            (
                json!({"state_backend": "redis://u:hunter2@h:0/0"}),
                "state_backend",
            ),
            (json!({"state_backend_prefix": ""}), "state_backend_prefix"),
            (json!({"state_backend_ca": "/ca.pem"}), "state_backend_ca"),
        ] {
            let err = try_build(v.clone())
                .err()
                .unwrap_or_else(|| panic!("{v} should fail"));
            assert!(err.contains(&format!("key '{key}'")), "{v}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn the_state_dir_follows_the_config() {
        let c: Config = serde_json::from_value(json!({"artifacts_dir": "/a"})).unwrap();
        assert_eq!(state_dir_for(&c), PathBuf::from("/a/state"));
        let c: Config =
            serde_json::from_value(json!({"artifacts_dir": "/a", "state_dir": "/s"})).unwrap();
        assert_eq!(state_dir_for(&c), PathBuf::from("/s"));
        assert_eq!(
            state_dir_for(&Config::default()),
            PathBuf::from(DEFAULT_STATE_DIR)
        );
    }
}
