//! What a run checks before anything runs or is written, as one function: the resolved
//! config, the guards' settings, a download's keys and the names records are written under.
//! `retryx validate` is exactly this, so a config a run refuses with 125 is refused here with
//! the same message (tests/cli.rs feeds the run's rejections to validate).

use crate::config::{Action, Config, Resolved};

/// Checks what the resolution itself cannot (it is pure): the guards as they would be built
/// (building writes and connects nothing), a download's keys, and the record names.
pub(crate) fn check(resolved: &Resolved) -> Result<(), String> {
    let config = &resolved.config;
    check_records(config)?;
    check_systems(config)?;
    let state_dir = crate::guards::state_dir_for(config);
    crate::guards::build(config, &resolved.plan, &state_dir).map_err(|e| e.to_string())?;
    if config.action == Some(Action::Download) {
        crate::download::DownloadSpec::from_config(config).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The names records and guard state are written under, refused before the command runs
/// rather than found unusable after it.
pub(crate) fn check_records(config: &Config) -> Result<(), String> {
    if let Some(id) = &config.session_id {
        crate::record::store::check_session_id(id).map_err(|e| format!("key 'session_id': {e}"))?;
    }
    for (key, dir) in [
        ("artifacts_dir", &config.artifacts_dir),
        ("state_dir", &config.state_dir),
    ] {
        if let Some(d) = dir {
            if d.trim().is_empty() {
                return Err(format!(
                    "key '{key}': expected a directory path, got an empty string"
                ));
            }
            if d.contains('\0') {
                return Err(format!(
                    "key '{key}': expected a directory path without NUL bytes"
                ));
            }
        }
    }
    Ok(())
}

/// `external_systems`: every URL has an http(s) scheme and a host, and every header (the
/// `auth_header`, `headers`) has a name and a value that can be sent, so a bad one is refused
/// here rather than retried at send time. Messages name the key, never the secret value.
pub(crate) fn check_systems(config: &Config) -> Result<(), String> {
    for (i, sys) in config.external_systems.iter().flatten().enumerate() {
        let key = |k: &str| format!("key 'external_systems[{i}].{k}' ({})", sys.name);
        if let Some(url) = &sys.url {
            let ok = url
                .split_once("://")
                .filter(|(scheme, _)| {
                    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
                })
                .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
                .map(|authority| authority.rsplit('@').next().unwrap_or(""))
                .is_some_and(|host| !host.is_empty() && !host.starts_with(':'))
                && sendable(url);
            if !ok {
                return Err(format!(
                    "{}: expected an http:// or https:// URL with a host",
                    key("url")
                ));
            }
        }
        if let Some(h) = &sys.auth_header {
            let parsed = crate::sinks::system::parse_auth_header(h);
            if parsed.is_err() || !sendable(h) {
                return Err(format!(
                    "{}: expected `Bearer <token>`, `Basic <base64>` or `<Header-Name> <value>`, on one line",
                    key("auth_header")
                ));
            }
        }
        // Datadog's own keys, checked as a delivery would (which would only log a failure).
        if let Some(site) = &sys.site
            && let Err(e) = crate::sinks::datadog::site_base(site)
        {
            return Err(format!("{}: {e}", key("site")));
        }
        if let Some(how) = &sys.compression
            && crate::sinks::datadog::compress(b"", Some(how)).is_err()
        {
            return Err(format!(
                "{}: expected none, gzip or deflate, got {how:?}",
                key("compression")
            ));
        }
        for (name, value) in sys.headers.iter().flatten() {
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
            if !name_ok || !sendable(value) {
                return Err(format!(
                    "{}: expected a header name of letters, digits and -, and a value on one line without control characters",
                    key(&format!("headers.{name}"))
                ));
            }
        }
    }
    Ok(())
}

/// Text an HTTP header (or request line) can carry: no control characters but tab.
fn sendable(text: &str) -> bool {
    text.chars().all(|c| c == '\t' || !c.is_control())
}
