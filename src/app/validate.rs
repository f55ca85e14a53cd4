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
