//! From a validated `Config` (plus the operation's overrides and the CLI's flags) to a `Plan`
//! with every default applied: what the engine runs. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};

use super::validate::{ConfigError, coerce_and_validate, overlay};
use super::{Config, ExitCodes, Patterns};
use crate::classify::{Classifier, ErrorClass, ExitCodeSet, UserPattern};
use crate::policy::{Backoff, ClassPolicy, JitterKind, PolicyKind};

/// The built-in defaults: the seeds' balanced ones.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
pub const DEFAULT_TAIL_BYTES: usize = 64 * 1024;
pub const DEFAULT_OPERATION: &str = "command";

/// How the command is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `/bin/sh -c TEXT`
    Shell(String),
    /// Program and arguments, no shell.
    Argv(Vec<String>),
}

impl CommandLine {
    /// The command as one line, for results and logs.
    pub fn display(&self) -> String {
        match self {
            CommandLine::Shell(s) => s.clone(),
            CommandLine::Argv(v) => v
                .iter()
                .map(|a| {
                    if a.is_empty()
                        || a.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>()*?".contains(c))
                    {
                        format!("'{}'", a.replace('\'', r"'\''"))
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Where an attempt's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StdinSpec {
    /// The CLI's own stdin, shared by attempts (the first one may consume it).
    #[default]
    Inherit,
    /// Nothing (`/dev/null`): the module's default.
    Null,
    /// The same text on every attempt.
    Text(String),
    /// The CLI's stdin captured once into this file and replayed to every attempt.
    ReplayFile(std::path::PathBuf),
}

/// Everything the engine needs, defaults applied.
#[derive(Debug, Clone)]
pub struct Plan {
    pub operation: String,
    pub command: Option<CommandLine>,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub jitter_seed: Option<u64>,
    pub timeout: Option<Duration>,
    pub deadline: Option<Duration>,
    pub kill_grace: Duration,
    pub classifier: Classifier,
    pub retry_if: Vec<Regex>,
    pub fail_if: Vec<Regex>,
    pub delay_from_output: Option<Regex>,
    pub chdir: Option<String>,
    pub env: Vec<(String, String)>,
    pub stdin: StdinSpec,
    pub output_tail_bytes: usize,
    /// `class_overrides`, resolved: the policy in force after a failure of each class.
    pub class_policies: BTreeMap<ErrorClass, ClassPolicy>,
}

/// The merged config (top level + the operation's overrides + flags) and its plan.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub plan: Plan,
}

fn compile_patterns(key: &str, p: &Option<Patterns>) -> Result<Vec<Regex>, ConfigError> {
    let list = matches!(p, Some(Patterns::Many(v)) if v.len() > 1);
    p.as_ref()
        .map(|p| p.as_slice())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, text)| match list {
            // an item of a longer list is named with its index, as the schema's messages name it
            true => compile(&format!("{key}.{i}"), text),
            false => compile(key, text),
        })
        .collect()
}

fn compile(key: &str, text: &str) -> Result<Regex, ConfigError> {
    regex::RegexBuilder::new(text)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            ConfigError::invalid(format!(
                "key '{key}': expected a regular expression, got {text:?}: {e}"
            ))
        })
}

fn exit_codes(key: &str, codes: &Option<ExitCodes>) -> Result<Option<ExitCodeSet>, ConfigError> {
    match codes {
        None => Ok(None),
        Some(ExitCodes::Text(t)) => ExitCodeSet::parse(t)
            .map(Some)
            .map_err(|e| ConfigError::invalid(format!("key '{key}': {e}"))),
        Some(ExitCodes::List(v)) => Ok(Some(ExitCodeSet::from_codes(v))),
    }
}

impl Resolved {
    /// Resolves raw JSON config for `operation` (from the flags, else the config, else
    /// `command`), with `flags` (already-typed CLI values) overriding everything.
    pub fn from_value(
        raw: Value,
        flags: Map<String, Value>,
        coerce_strings: bool,
    ) -> Result<Resolved, ConfigError> {
        // Validate everything the user wrote first, so an error deep in operation_configs is
        // still reported. Nothing written (flags only) needs no schema: compiling the validator
        // costs tens of milliseconds, which a bare CLI run must not pay. Flags arrive typed and
        // range-checked by clap.
        let nothing_written = raw.as_object().is_some_and(|m| m.is_empty());
        let top = if nothing_written {
            Config::default()
        } else {
            coerce_and_validate(raw, coerce_strings)?
        };
        let operation = flags
            .get("operation")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| top.operation.clone())
            .unwrap_or_else(|| DEFAULT_OPERATION.to_string());
        // The default config has every key unset (a test holds it to that): nothing to merge.
        let mut merged = if nothing_written {
            Map::new()
        } else {
            match serde_json::to_value(&top) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            }
        };
        merged.retain(|_, v| !v.is_null());
        // The keys the operation's own entry sets: a cross-key error about one of them names
        // it where it was written (`operation_configs.<op>.max_delay`).
        let mut from_operation: Vec<String> = Vec::new();
        if let Some(over) = top
            .operation_configs
            .as_ref()
            .and_then(|o| o.get(&operation))
        {
            if let Ok(Value::Object(mut m)) = serde_json::to_value(over) {
                m.retain(|_, v| !v.is_null());
                from_operation = m.keys().cloned().collect();
                // A command given for the operation replaces a top-level argv and vice versa.
                if m.contains_key("command") || m.contains_key("argv") {
                    merged.remove("command");
                    merged.remove("argv");
                }
                overlay(&mut merged, &m);
            }
        }
        if flags.contains_key("command") || flags.contains_key("argv") {
            merged.remove("command");
            merged.remove("argv");
            from_operation.retain(|k| k != "command" && k != "argv");
        }
        // A key a flag sets is the flag's, not the operation's: an error about it must not send
        // the user to `operation_configs` (`-M 1s` under a longer base_delay).
        from_operation.retain(|k| !flags.contains_key(k));
        overlay(&mut merged, &flags);
        merged.insert("operation".into(), Value::from(operation.clone()));
        // Everything merged is already valid; serde only re-reads it (and flags' values).
        let config: Config = serde_json::from_value(Value::Object(merged))
            .map_err(|e| ConfigError::invalid(format!("invalid option: {e}")))?;
        let plan = plan_for(&config, operation.clone()).map_err(|ConfigError::Invalid(msg)| {
            let mut msg = msg;
            for k in &from_operation {
                for end in ["'", "."] {
                    msg = msg.replace(
                        &format!("key '{k}{end}"),
                        &format!("key 'operation_configs.{operation}.{k}{end}"),
                    );
                }
            }
            ConfigError::Invalid(msg)
        })?;
        Ok(Resolved { config, plan })
    }
}

/// Each `class_overrides` entry over the operation's policy, checked as the top level is (a cap
/// shorter than the base delay is refused, naming the class).
fn class_policies(
    c: &Config,
    backoff: &Backoff,
    max_attempts: u32,
    timeout: Option<Duration>,
) -> Result<BTreeMap<ErrorClass, ClassPolicy>, ConfigError> {
    let mut out = BTreeMap::new();
    for (class, o) in c.class_overrides.iter().flatten() {
        let mut b = backoff.clone();
        if let Some(d) = o.base_delay {
            b.base = d.get();
        }
        if let Some(d) = o.max_delay {
            b.max = d.get();
        }
        if let Some(m) = o.backoff_multiplier {
            b.multiplier = m;
        }
        if b.max < b.base {
            return Err(ConfigError::invalid(format!(
                "key 'class_overrides.{class}.max_delay': expected a cap at least as long as base_delay ({} < {})",
                crate::config::format_duration(b.max),
                crate::config::format_duration(b.base)
            )));
        }
        let policy = ClassPolicy {
            backoff: b,
            max_attempts: o.max_attempts.unwrap_or(max_attempts),
            timeout: match o.timeout {
                Some(d) => Some(d.get()).filter(|d| !d.is_zero()),
                None => timeout,
            },
        };
        out.insert(*class, policy);
    }
    Ok(out)
}

fn plan_for(c: &Config, operation: String) -> Result<Plan, ConfigError> {
    let base = c.base_delay.map(|d| d.get()).unwrap_or(DEFAULT_BASE_DELAY);
    let max = c.max_delay.map(|d| d.get()).unwrap_or(DEFAULT_MAX_DELAY);
    if max < base && c.max_delay.is_some() && c.base_delay.is_some() {
        return Err(ConfigError::invalid(format!(
            "key 'max_delay': expected a cap at least as long as base_delay ({} < {})",
            crate::config::format_duration(max),
            crate::config::format_duration(base)
        )));
    }
    let jitter = match (c.jitter, c.jitter_enabled) {
        (Some(kind), _) => kind,
        (None, Some(false)) => JitterKind::None,
        (None, _) => JitterKind::Proportional,
    };
    let backoff = Backoff {
        kind: c.retry_policy.unwrap_or(PolicyKind::Exponential),
        base,
        max: max.max(Duration::ZERO),
        multiplier: c.backoff_multiplier.unwrap_or(DEFAULT_MULTIPLIER),
        jitter,
    };
    let command = match (&c.command, &c.argv) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "keys 'command' and 'argv': expected one of them, not both",
            ));
        }
        (Some(cmd), None) if cmd.trim().is_empty() => {
            return Err(ConfigError::invalid(
                "key 'command': expected a non-empty command",
            ));
        }
        (Some(cmd), None) => Some(CommandLine::Shell(cmd.clone())),
        (None, Some(argv)) if argv.is_empty() || argv[0].is_empty() => {
            return Err(ConfigError::invalid(
                "key 'argv': expected a non-empty list whose first item is the program",
            ));
        }
        (None, Some(argv)) => Some(CommandLine::Argv(argv.clone())),
        (None, None) => None,
    };
    let retry_conditions: BTreeSet<ErrorClass> = match &c.retry_conditions {
        Some(list) => list.iter().copied().collect(),
        None => ErrorClass::default_retry_conditions(),
    };
    let user_patterns = c
        .error_patterns
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| {
            Ok(UserPattern {
                regex: compile(&format!("error_patterns.{i}.pattern"), &p.pattern)?,
                class: p.class,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let classifier = Classifier {
        retry_on_exit: exit_codes("retry_on_exit", &c.retry_on_exit)?,
        fail_on_exit: exit_codes("fail_on_exit", &c.fail_on_exit)?,
        user_patterns,
        retry_conditions,
    };
    let delay_from_output = match &c.delay_from_output {
        Some(p) => {
            let re = compile("delay_from_output", p)?;
            if re.captures_len() < 2 {
                return Err(ConfigError::invalid(format!(
                    "key 'delay_from_output': expected a regular expression with one capture group (the seconds), got {p:?}"
                )));
            }
            Some(re)
        }
        None => None,
    };
    let env = c
        .env
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<Vec<_>>();
    if let Some((k, _)) = env
        .iter()
        .find(|(k, _)| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return Err(ConfigError::invalid(format!(
            "key 'env': {k:?} is not a valid environment variable name"
        )));
    }
    let max_attempts = c.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    let timeout = c.timeout.map(|d| d.get()).filter(|d| !d.is_zero());
    let class_policies = class_policies(c, &backoff, max_attempts, timeout)?;
    Ok(Plan {
        operation,
        command,
        max_attempts,
        class_policies,
        backoff,
        jitter_seed: c.jitter_seed,
        timeout,
        deadline: c.deadline.map(|d| d.get()).filter(|d| !d.is_zero()),
        kill_grace: c.kill_grace.map(|d| d.get()).unwrap_or(DEFAULT_KILL_GRACE),
        classifier,
        retry_if: compile_patterns("retry_if", &c.retry_if)?,
        fail_if: compile_patterns("fail_if", &c.fail_if)?,
        delay_from_output,
        chdir: c.chdir.clone(),
        env,
        stdin: match &c.stdin {
            Some(text) => StdinSpec::Text(text.clone()),
            None => StdinSpec::Inherit,
        },
        output_tail_bytes: c
            .output_tail_bytes
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX))
            .unwrap_or(DEFAULT_TAIL_BYTES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_default_config_sets_no_key() {
        // from_value skips merging it when nothing was written: that must change nothing.
        let v = serde_json::to_value(Config::default()).unwrap();
        let set: Vec<_> = v
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.clone())
            .collect();
        assert!(set.is_empty(), "{set:?}");
    }

    #[test]
    fn defaults_are_the_seeds_balanced_ones() {
        let r = Resolved::from_value(json!({"command": "true"}), Map::new(), false).unwrap();
        assert_eq!(r.plan.max_attempts, 3);
        assert_eq!(r.plan.backoff.base, Duration::from_secs(1));
        assert_eq!(r.plan.backoff.max, Duration::from_secs(30));
        assert_eq!(r.plan.backoff.multiplier, 2.0);
        assert_eq!(r.plan.backoff.jitter, JitterKind::Proportional);
        assert_eq!(r.plan.operation, "command");
    }

    #[test]
    fn operation_configs_override_the_top_level_and_flags_override_both() {
        let raw = json!({
            "max_attempts": 2, "base_delay": 1, "argv": ["true"],
            "operation_configs": {"api_call": {"max_attempts": 5, "base_delay": 2, "command": "echo op"}}
        });
        let mut flags = Map::new();
        flags.insert("operation".into(), json!("api_call"));
        let r = Resolved::from_value(raw.clone(), flags.clone(), false).unwrap();
        assert_eq!(r.plan.max_attempts, 5);
        assert_eq!(r.plan.backoff.base, Duration::from_secs(2));
        assert_eq!(r.plan.command, Some(CommandLine::Shell("echo op".into())));
        flags.insert("max_attempts".into(), json!(9));
        let r = Resolved::from_value(raw.clone(), flags, false).unwrap();
        assert_eq!(r.plan.max_attempts, 9);
        // another operation gets the top level
        let r = Resolved::from_value(raw, Map::new(), false).unwrap();
        assert_eq!(r.plan.max_attempts, 2);
        assert_eq!(r.plan.command, Some(CommandLine::Argv(vec!["true".into()])));
    }

    #[test]
    fn inconsistent_settings_are_refused_with_the_key() {
        for (raw, key) in [
            (
                json!({"command": "a", "argv": ["b"]}),
                "'command' and 'argv'",
            ),
            (json!({"retry_if": "("}), "'retry_if'"),
            (json!({"retry_on_exit": "1-x"}), "'retry_on_exit'"),
            (
                json!({"delay_from_output": "Retry-After"}),
                "'delay_from_output'",
            ),
            (json!({"base_delay": 10, "max_delay": 1}), "'max_delay'"),
            (json!({"env": {"A=B": "c"}}), "'env'"),
            (json!({"argv": []}), "'argv'"),
        ] {
            let err = Resolved::from_value(raw.clone(), Map::new(), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{raw}: {err}");
        }
    }

    #[test]
    fn jitter_enabled_false_means_no_jitter() {
        let r = Resolved::from_value(json!({"jitter_enabled": false}), Map::new(), false).unwrap();
        assert_eq!(r.plan.backoff.jitter, JitterKind::None);
        let r = Resolved::from_value(
            json!({"jitter_enabled": false, "jitter": "full"}),
            Map::new(),
            false,
        )
        .unwrap();
        assert_eq!(r.plan.backoff.jitter, JitterKind::Full);
    }
}
