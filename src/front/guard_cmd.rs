//! The shell's side of `retryx breaker ...` and `retryx budget ...`: their flags (where guard
//! state lives), `RETRYX_STATE_BACKEND` when no flag names a backend, and printing the answer
//! (JSON on stdout, exit 0; an error on stderr, exit 1). The actions live in
//! `app::guard_admin`; this file must not touch guard state itself.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::app::guard_admin::{AdminError, StatePlace};

/// The environment variable naming the state backend when no flag does.
pub(crate) const BACKEND_ENV: &str = "RETRYX_STATE_BACKEND";

/// The backend named by the flag, else by `RETRYX_STATE_BACKEND` (empty means unset).
pub(crate) fn backend_from(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var(BACKEND_ENV).ok())
        .filter(|v| !v.is_empty())
}

/// Where guard state lives, for the admin subcommands.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct StateArgs {
    /// Where guard state lives [default: <artifacts-dir>/state, else /tmp/ansible_retry/state]
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) state_dir: Option<String>,
    /// Records directory (its state/ subdirectory holds guard state when --state-dir is not given) [default: none]
    #[arg(long, value_name = "DIR", global = true, env = crate::front::session_cmd::ARTIFACTS_ENV)]
    pub(crate) artifacts_dir: Option<String>,
    /// file, or redis://[user:password@]host:port/db, rediss://... [env: RETRYX_STATE_BACKEND] [default: file]
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) state_backend: Option<String>,
    /// Key prefix on Redis [default: retryx]
    #[arg(long, value_name = "PREFIX", global = true)]
    pub(crate) state_backend_prefix: Option<String>,
    /// PEM file of extra CA certificates trusted for rediss:// [default: none]
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) state_backend_ca: Option<String>,
}

impl StateArgs {
    pub(crate) fn place(self) -> StatePlace {
        StatePlace {
            state_dir: self.state_dir,
            artifacts_dir: self.artifacts_dir,
            state_backend: backend_from(self.state_backend),
            state_backend_prefix: self.state_backend_prefix,
            state_backend_ca: self.state_backend_ca,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum BudgetCmd {
    /// Print the bucket as JSON (changes nothing)
    Status { key: String },
    /// Refill the bucket and zero its counters
    Reset { key: String },
}

/// Prints what `retryx breaker|budget` answered; `Err` is bad usage (the caller exits 125).
pub(crate) fn print_answer(
    what: &str,
    key: &str,
    answer: Result<Value, AdminError>,
) -> Result<i32, String> {
    match answer {
        Ok(v) => {
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            Ok(0)
        }
        Err(AdminError::Usage(m)) => Err(format!("{what}: {m}")),
        Err(e) => {
            let line = format!("{what} {key}: {e}");
            eprintln!("retryx: {}", crate::log::escape_controls(&line));
            Ok(1)
        }
    }
}

/// `retryx budget status|reset KEY`
pub(crate) fn budget(action: BudgetCmd, place: StateArgs) -> Result<i32, String> {
    use crate::guards::budget::AdminAction;
    let (key, what) = match action {
        BudgetCmd::Status { key } => (key, AdminAction::Status),
        BudgetCmd::Reset { key } => (key, AdminAction::Reset),
    };
    let answer = crate::app::guard_admin::budget(&place.place(), &key, what);
    print_answer("budget", &key, answer)
}
