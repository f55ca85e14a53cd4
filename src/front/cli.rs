//! The shell front door: clap flags turned once into config overrides, subcommands, and errors
//! mapped to exit codes at the top (ripgrep style). Knows nothing of Ansible.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use crate::app::Answer;
use crate::app::operation::RunOptions;
use crate::classify::ErrorClass;
use crate::config::{DurationSpec, Resolved, StdinSpec, schema_json};
use crate::exit::USAGE;
use crate::front::run_io::{Outputs, RunIo};
use crate::log::events::Event;
use crate::policy::{JitterKind, PolicyKind};
use crate::sys::clock::RealTimer;
use crate::sys::stop::Cancel;

#[derive(Parser, Debug)]
#[command(
    name = "retryx",
    version,
    about = "Run a command until it succeeds, under a stated retry policy",
    long_about = "Run a command until it succeeds: exponential, linear or fixed backoff with jitter and a cap; \
transient failures told from permanent ones; per-attempt timeout and overall deadline; records and guards.\n\n\
Exit codes: the last attempt's exit code; 124 last attempt timed out; 126/127 command not executable/not found; \
75 refused by a circuit breaker or bulkhead; 125 bad usage or config; 128+N stopped by signal N.",
    args_conflicts_with_subcommands = true,
    after_help = "Example: retryx -n 5 -d 500ms --retry-on-exit 1,75 -- curl -fsS https://example.com/health"
)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<Sub>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The policy flags of every command that retries (a run, `download`): defined once, so their
/// names, help and defaults cannot drift apart.
#[derive(Args, Debug, Default, Clone)]
pub struct PolicyFlags {
    /// Attempts in all, first included [default: 3]
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_attempts: Option<u32>,
    /// exponential, linear, fixed (or exponential_backoff, linear_backoff, fixed_delay) [default: exponential]
    #[arg(short = 'p', long = "policy", value_name = "P")]
    pub retry_policy: Option<PolicyKind>,
    /// Base delay: 250ms, 2s, 1m, or seconds [default: 1s]
    #[arg(short = 'd', long, value_name = "D")]
    pub base_delay: Option<DurationSpec>,
    /// Cap on any single wait [default: 30s]
    #[arg(short = 'M', long, value_name = "D")]
    pub max_delay: Option<DurationSpec>,
    /// Exponential multiplier [default: 2.0]
    #[arg(short = 'x', long, value_name = "F", value_parser = parse_multiplier)]
    pub multiplier: Option<f64>,
    /// none, proportional, full, equal, decorrelated [default: proportional]
    #[arg(short = 'j', long, value_name = "K")]
    pub jitter: Option<JitterKind>,
    /// Seed for reproducible jitter [default: random, recorded]
    #[arg(long, value_name = "N")]
    pub jitter_seed: Option<u64>,
    /// Per-attempt timeout: the attempt's process group is killed (TERM, grace, KILL) [default: none]
    #[arg(short = 't', long, value_name = "D")]
    pub timeout: Option<DurationSpec>,
    /// Bound on the whole operation, waits and kill grace included (a stopped attempt gets TERM early enough that KILL lands at it) [default: none]
    #[arg(long, value_name = "D")]
    pub deadline: Option<DurationSpec>,
    /// Error classes that are retried, comma-separated [default: the retryable classes and unknown_error]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub retry_conditions: Option<Vec<ErrorClass>>,
}

impl PolicyFlags {
    /// Puts the flags given into `m` under their config keys.
    fn overlay(&self, m: &mut Map<String, Value>) {
        let secs = |d: &DurationSpec| json!(d.get().as_secs_f64());
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("max_attempts", self.max_attempts.map(|v| json!(v)));
        put("retry_policy", self.retry_policy.map(|v| json!(v)));
        put("base_delay", self.base_delay.as_ref().map(secs));
        put("max_delay", self.max_delay.as_ref().map(secs));
        put("backoff_multiplier", self.multiplier.map(|v| json!(v)));
        put("jitter", self.jitter.map(|v| json!(v)));
        put("jitter_seed", self.jitter_seed.map(|v| json!(v)));
        put("timeout", self.timeout.as_ref().map(secs));
        put("deadline", self.deadline.as_ref().map(secs));
        put(
            "retry_conditions",
            self.retry_conditions.as_ref().map(|v| json!(v)),
        );
    }
}

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Grace between TERM and KILL [default: 2s]
    #[arg(long, value_name = "D")]
    pub kill_grace: Option<DurationSpec>,
    /// Exit codes that are retried, e.g. 1,75,100-110 [default: any non-zero]
    #[arg(long, value_name = "CODES")]
    pub retry_on_exit: Option<String>,
    /// Exit codes never retried (wins over everything) [default: none]
    #[arg(long, value_name = "CODES")]
    pub fail_on_exit: Option<String>,
    /// Retry when the output matches (repeatable) [default: none]
    #[arg(long, value_name = "REGEX")]
    pub retry_if: Vec<String>,
    /// Never retry when the output matches (repeatable; wins over --retry-if) [default: none]
    #[arg(long, value_name = "REGEX")]
    pub fail_if: Vec<String>,
    /// Wait the seconds captured by this pattern in the output (e.g. 'Retry-After: (\d+)'), capped [default: none]
    #[arg(long, value_name = "REGEX")]
    pub delay_from_output: Option<String>,
    /// Operation name: picks operation_configs, keys guards and records [default: command]
    #[arg(long, value_name = "NAME")]
    pub operation: Option<String>,
    /// The old spelling of --operation, kept for one release with a warning (-o will mean --output)
    #[arg(short = 'o', value_name = "NAME", hide = true)]
    pub operation_short: Option<String>,
    /// JSON config, same schema as the module args [default: none]
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write records there [default: none, then $RETRYX_ARTIFACTS_DIR; no records without one]
    #[arg(long, value_name = "DIR")]
    pub artifacts_dir: Option<String>,
    /// Where guard state lives [default: <artifacts-dir>/state]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Guard state backend: file, or redis://[user:password@]host:port/db, rediss://... [env: RETRYX_STATE_BACKEND] [default: file]
    #[arg(long, value_name = "URL")]
    pub state_backend: Option<String>,
    /// Add this operation to an existing session (needs an artifacts directory) [default: a new session]
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Leave the session this run opens open for more operations [default: closed at the end]
    #[arg(long)]
    pub keep_open: bool,
    /// Write the result document to PATH; with -, stdout holds only it (the command's stdout goes to stderr) [default: none]
    #[arg(long, value_name = "PATH")]
    pub result_json: Option<String>,
    /// Write the event stream (JSON Lines: start, attempt_start, attempt_end, wait, guard, notification, end) to PATH, or - for stdout [default: none]
    #[arg(long, value_name = "PATH")]
    pub events: Option<String>,
    /// The live progress line on stderr during waits
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub progress: crate::front::progress::ProgressWhen,
    /// Run the command through /bin/sh -c (the arguments joined by spaces)
    #[arg(long)]
    pub shell: bool,
    /// Capture stdin once and replay it to every attempt
    #[arg(long)]
    pub stdin_replay: bool,
    /// Most stdin --stdin-replay keeps (e.g. 64MiB, 512k) [default: 64MiB]
    #[arg(long, value_name = "SIZE", value_parser = crate::sys::spool::parse_size)]
    pub stdin_max: Option<u64>,
    /// Fewer lines on stderr: no progress, errors and the reason the run failed only (-qq: none)
    #[arg(short = 'q', long, action = ArgAction::Count)]
    pub quiet: u8,
    /// More lines on stderr (-v: each attempt's exit, class, matched text, guard decisions; -vv: also the resolved config)
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    /// The command and its arguments, after --
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Check a config file against the schema
    Validate {
        /// The JSON config file
        file: PathBuf,
        /// The operation whose merged config to check [default: none, the top level]
        #[arg(long, value_name = "NAME")]
        operation: Option<String>,
        /// The old spelling of --operation, kept for one release with a warning
        #[arg(short = 'o', value_name = "NAME", hide = true)]
        operation_short: Option<String>,
    },
    /// Print the JSON Schema of module args and config files, or of a record or the event stream
    Schema {
        /// Another document's schema: session, operation, attempt, performance, session_error, records_pack, events [default: the module args]
        #[arg(long, value_name = "NAME")]
        document: Option<String>,
    },
    /// Print a completion script: retryx completions bash > /etc/bash_completion.d/retryx
    Completions {
        /// bash, zsh or fish
        shell: crate::front::shell::Shell,
    },
    /// Print the man page (roff): retryx man | man -l -
    Man,
    /// Sessions of records: list, show (json, text, svg, html), finalize
    Session(crate::front::session_cmd::SessionArgs),
    /// Remove old records (retention_days, max_sessions; never an open session or a file not
    /// ours); with --session-id, close that session as failed
    Cleanup(crate::front::session_cmd::CleanupArgs),
    /// Gzip finished sessions and record files above a size threshold
    Compress(crate::front::session_cmd::CompressArgs),
    /// Download URL to FILE, resuming with HTTP Range requests after transient failures
    Download(Box<DownloadArgs>),
    /// Notifications to external systems
    Notify {
        #[command(subcommand)]
        action: NotifySub,
    },
    /// Show, reset or open a circuit breaker (shared by every process using the state backend)
    Breaker {
        #[command(subcommand)]
        action: BreakerCmd,
        #[command(flatten)]
        place: super::guard_cmd::StateArgs,
    },
    /// Show or reset a retry budget (shared by every process using the state backend)
    Budget {
        #[command(subcommand)]
        action: super::guard_cmd::BudgetCmd,
        #[command(flatten)]
        place: super::guard_cmd::StateArgs,
    },
}

/// `retryx notify ...`
#[derive(Subcommand, Debug)]
pub enum NotifySub {
    /// Send a test message to every configured external system and print each answer
    Test {
        /// The JSON config file (its external_systems)
        #[arg(short = 'c', long)]
        config: PathBuf,
        /// Print the outcomes as JSON instead of one line per system
        #[arg(long)]
        json: bool,
    },
}

/// `retryx notify test`: exit 0 when every enabled system answered success, 1 otherwise.
fn notify_test(config: &std::path::Path, as_json: bool) -> Result<i32, Usage> {
    let raw = read_config(config)?;
    let resolved = Resolved::from_value(raw, Map::new(), true)
        .map_err(|e| Usage(format!("{}: {e}", config.display())))?;
    let cfg = &resolved.config;
    if cfg.external_systems.as_deref().unwrap_or(&[]).is_empty() {
        return Err(Usage(format!(
            "{}: no external_systems configured",
            config.display()
        )));
    }
    if cfg.external_integration == Some(false) {
        println!("external_integration is false: nothing sent");
        return Ok(0);
    }
    let res = crate::app::notify::test(cfg);
    if as_json {
        let text = serde_json::to_string_pretty(&res.outcomes).map_err(|e| Usage(e.to_string()))?;
        println!("{text}");
    } else {
        for o in &res.outcomes {
            println!("{}", crate::sinks::describe(o));
        }
    }
    let bad = res.outcomes.iter().any(|o| o.status == "failed");
    Ok(if bad { 1 } else { 0 })
}

/// `retryx download URL -o FILE`: the policy flags of a run plus what to fetch.
#[derive(Args, Debug)]
#[command(
    after_help = "Example: retryx download -n 5 -d 1s --checksum sha256:<hex> https://example.com/disk.vmdk -o disk.vmdk"
)]
pub struct DownloadArgs {
    /// The http:// or https:// URL
    #[arg(value_name = "URL")]
    pub url: String,
    /// Destination file (an existing directory takes the URL's file name); written as FILE.part first
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: String,
    /// Expected checksum, sha256:<hex>: verified before FILE is put in place; FILE already matching means nothing to do [default: none]
    #[arg(long, value_name = "sha256:HEX")]
    pub checksum: Option<String>,
    /// Request header 'Name: value' (repeatable; values are never logged or recorded) [default: none]
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub header: Vec<String>,
    /// Download even when FILE exists (or matches the checksum)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Operation name: picks operation_configs, keys guards and records [default: download <file name>]
    #[arg(long, value_name = "NAME")]
    pub operation: Option<String>,
    /// JSON config, same schema as the module args [default: none]
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write records there [default: none, then $RETRYX_ARTIFACTS_DIR; no records without one]
    #[arg(long, value_name = "DIR")]
    pub artifacts_dir: Option<String>,
    /// Where guard state lives [default: <artifacts-dir>/state]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Add this operation to an existing session (needs an artifacts directory) [default: a new session]
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Write the result document to PATH; with -, stdout holds only it [default: none]
    #[arg(long, value_name = "PATH")]
    pub result_json: Option<String>,
    /// Fewer log lines on stderr (-qq: none)
    #[arg(short = 'q', long, action = ArgAction::Count)]
    pub quiet: u8,
    /// More log lines on stderr (-v shows the seed's "resuming download" line)
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
}

fn parse_multiplier(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number from 1 to 100, got {s:?}"))?;
    if (1.0..=100.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("expected a number from 1 to 100, got {s}"))
    }
}

#[derive(Subcommand, Debug)]
pub enum BreakerCmd {
    /// Print the breaker's state as JSON (changes nothing)
    Status { key: String },
    /// Close the breaker and forget its window
    Reset { key: String },
    /// Open the breaker: until `reset`, or for the time given with --for
    Open {
        key: String,
        /// Open for this long (e.g. 10m) instead of until reset [default: until reset]
        #[arg(long = "for", value_name = "D")]
        for_: Option<DurationSpec>,
    },
}

/// Bad usage: message and exit 125.
struct Usage(String);

fn read_config(path: &std::path::Path) -> Result<Value, Usage> {
    // One cap for config files and module args files: `-c /dev/zero` is refused, not read.
    let text = crate::sys::safe_fs::read_input(path, crate::sys::safe_fs::MAX_INPUT_BYTES)
        .map_err(|e| Usage(format!("cannot read config {}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| {
        Usage(
            match crate::config::nesting::explain_parse_error(&text, &e) {
                Some(msg) => format!("config {}: {msg}", path.display()),
                None => format!("config {} is not valid JSON: {e}", path.display()),
            },
        )
    })
}

fn flags_to_overrides(a: &RunArgs) -> Result<Map<String, Value>, Usage> {
    let mut m = Map::new();
    a.policy.overlay(&mut m);
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    let secs = |d: &DurationSpec| json!(d.get().as_secs_f64());
    if let Some(v) = &a.kill_grace {
        put("kill_grace", secs(v));
    }
    if let Some(v) = &a.retry_on_exit {
        put("retry_on_exit", json!(v));
    }
    if let Some(v) = &a.fail_on_exit {
        put("fail_on_exit", json!(v));
    }
    if !a.retry_if.is_empty() {
        put("retry_if", json!(a.retry_if));
    }
    if !a.fail_if.is_empty() {
        put("fail_if", json!(a.fail_if));
    }
    if let Some(v) = &a.delay_from_output {
        put("delay_from_output", json!(v));
    }
    if let Some(v) = &a.operation {
        put("operation", json!(v));
    }
    if let Some(v) = &a.artifacts_dir {
        put("artifacts_dir", json!(v));
    }
    if let Some(v) = &a.state_dir {
        put("state_dir", json!(v));
    }
    if let Some(v) = super::guard_cmd::backend_from(a.state_backend.clone()) {
        put("state_backend", json!(v));
    }
    if let Some(v) = &a.session_id {
        put("session_id", json!(v));
    }
    if !a.command.is_empty() {
        if a.shell {
            put("command", json!(a.command.join(" ")));
        } else {
            put("argv", json!(a.command));
        }
    } else if a.shell {
        return Err(Usage("--shell needs a command after --".into()));
    }
    Ok(m)
}

/// `-o` on a run or `validate` was `--operation`; it is becoming `--output`. A value that looks
/// like a file is refused rather than guessed at; a plain name still works, with a warning.
fn operation_from_short(
    long: Option<String>,
    short: Option<String>,
    warn: bool,
) -> Result<Option<String>, Usage> {
    let Some(name) = short else {
        return Ok(long);
    };
    if long.is_some() {
        return Err(Usage(
            "-o and --operation both given: use --operation NAME".into(),
        ));
    }
    if name.contains('/') || name.contains('.') {
        return Err(Usage(format!(
            "-o {name:?} is ambiguous: -o was --operation and is becoming --output; use --operation NAME, or --result-json PATH for the result document"
        )));
    }
    if warn {
        eprintln!(
            "retryx: warning: -o for --operation is deprecated (-o will mean --output): use --operation {}",
            crate::log::escape_controls(&name)
        );
    }
    Ok(Some(name))
}

fn verbosity(verbose: u8, quiet: u8) -> i8 {
    i8::try_from(i16::from(verbose) - i16::from(quiet)).unwrap_or(0)
}

fn run_command(mut a: RunArgs) -> Result<i32, Usage> {
    let io = RunIo::open(&Outputs {
        result_json: a.result_json.as_deref(),
        events: a.events.as_deref(),
        progress: a.progress,
        verbosity: verbosity(a.verbose, a.quiet),
    })
    .map_err(Usage)?;
    // From here on every way out writes the stream's `end` line.
    match prepare_run(&mut a, &io) {
        Ok(resolved) => Ok(run_prepared(&a, resolved, &io)),
        Err(Usage(msg)) => {
            io.end(&Event::not_started(USAGE, &msg));
            Err(Usage(msg))
        }
    }
}

/// `RETRYX_ARTIFACTS_DIR`, the one default artifacts directory (an empty value is none).
fn artifacts_from_env() -> Option<String> {
    std::env::var(crate::front::session_cmd::ARTIFACTS_ENV)
        .ok()
        .filter(|d| !d.is_empty())
}

/// `--session-id` and `--keep-open` are about records: without a directory for them they
/// would be silently ignored, so they are refused.
fn records_for_session(resolved: &Resolved, keep_open: bool) -> Result<(), Usage> {
    // The names themselves first, with the message `validate` gives.
    crate::app::validate::check_records(&resolved.config).map_err(Usage)?;
    if crate::app::session::artifacts_dir(&resolved.config, false).is_some() {
        return Ok(());
    }
    let env = crate::front::session_cmd::ARTIFACTS_ENV;
    let flag = if resolved.config.session_id.is_some() {
        "--session-id"
    } else if keep_open {
        "--keep-open"
    } else {
        return Ok(());
    };
    Err(Usage(format!(
        "{flag} needs an artifacts directory: give --artifacts-dir DIR or set {env}"
    )))
}

/// Flags and config resolved into what will run, every check made before anything runs.
fn prepare_run(a: &mut RunArgs, io: &RunIo) -> Result<Resolved, Usage> {
    if a.command.is_empty() && a.config.is_none() {
        return Err(Usage(
            "no command: usage is `retryx [OPTIONS] -- COMMAND [ARGS...]` (see --help)".into(),
        ));
    }
    a.operation = operation_from_short(a.operation.take(), a.operation_short.take(), a.quiet < 2)?;
    if a.artifacts_dir.is_none() {
        a.artifacts_dir = artifacts_from_env();
    }
    let raw = match &a.config {
        Some(p) => read_config(p)?,
        None => json!({}),
    };
    let overrides = flags_to_overrides(a)?;
    let resolved = Resolved::from_value(raw, overrides, true).map_err(|e| Usage(e.to_string()))?;
    if a.stdin_max.is_some() && !a.stdin_replay {
        return Err(Usage("--stdin-max: only with --stdin-replay".into()));
    }
    records_for_session(&resolved, a.keep_open)?;
    io.show_resolved(&resolved);
    Ok(resolved)
}

/// Runs what `prepare_run` resolved; the session it opened is closed with it, and the event
/// stream's `end` line is the last thing told.
fn run_prepared(a: &RunArgs, mut resolved: Resolved, io: &RunIo) -> i32 {
    let log = &io.log;
    let cancel = Cancel::new();
    // Before the stdin copy, so a stop request ends that too (and the spool goes with it).
    if let Err(e) = cancel.install_signal_handlers() {
        log.warn("signals will not be forwarded", &[("error", e)]);
    }
    let _spool = if a.stdin_replay {
        let max = a.stdin_max.unwrap_or(crate::sys::spool::DEFAULT_STDIN_MAX);
        match crate::sys::spool::capture(max, &cancel) {
            Ok(spool) => {
                resolved.plan.stdin = StdinSpec::ReplayFile(spool.path());
                Some(spool)
            }
            Err(crate::sys::spool::SpoolError::Stopped(sig)) => {
                let code = crate::exit::of_operation(crate::exit::End::Aborted(sig));
                io.end(&Event::not_started(code, "stopped while reading stdin"));
                return code;
            }
            Err(e) => {
                let msg = format!("retryx: {e}");
                io.log
                    .error("operation not started", &[("error", e.to_string())]);
                io.end(&Event::not_started(USAGE, &msg));
                return USAGE;
            }
        }
    } else {
        None
    };
    let timer = RealTimer::new();
    let opts = RunOptions {
        passthrough: true,
        want_result: io.wants_result(),
        close_own_session: !a.keep_open,
        ..Default::default()
    };
    let answer = crate::app::run_command::run(&resolved, &opts, log, &cancel, &timer);
    stopped_exit(&cancel, present(&answer, io, "operation not started"))
}

/// A stop request that came after the last attempt (while the records waited for a lock, say)
/// is not lost: retryx still ends with 128+N.
fn stopped_exit(cancel: &Cancel, code: i32) -> i32 {
    match cancel.signal() {
        Some(sig) => {
            let stopped = crate::exit::of_operation(crate::exit::End::Aborted(sig));
            if code == stopped { code } else { stopped }
        }
        None => code,
    }
}

/// Logs why an operation did not start, writes the result document when asked, and ends the
/// event stream of a run that did not start (one that ran ended it after its notifications).
/// The answer's exit code is the process's.
fn present(answer: &Answer, io: &RunIo, not_started: &str) -> i32 {
    if !answer.ran && answer.failed() {
        io.log.error(not_started, &[("error", answer.msg.clone())]);
    } else if !answer.ran && !answer.msg.is_empty() {
        io.log.info(&answer.msg, &[]);
    }
    if let Err(e) = io.write_result(&super::document::of(answer)) {
        io.log
            .error("cannot write the result document", &[("error", e)]);
    }
    if !answer.ran {
        io.end(&Event::not_started(answer.exit_code, &answer.msg));
    }
    answer.exit_code
}

/// `Name: value` into a header pair; the value is never echoed in an error.
fn parse_header(text: &str) -> Result<(String, String), Usage> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(Usage(format!(
            "--header: expected 'Name: value' (got a header of {} characters without a name)",
            text.len()
        ))),
    }
}

fn download(a: DownloadArgs) -> Result<i32, Usage> {
    let mut raw = match &a.config {
        Some(p) => read_config(p)?,
        None => json!({}),
    };
    let policy = RunArgs {
        policy: a.policy.clone(),
        operation: a.operation.clone(),
        artifacts_dir: a.artifacts_dir.clone().or_else(artifacts_from_env),
        state_dir: a.state_dir.clone(),
        session_id: a.session_id.clone(),
        ..Default::default()
    };
    let mut overrides = flags_to_overrides(&policy)?;
    overrides.insert("action".into(), json!("download"));
    overrides.insert("url".into(), json!(a.url));
    overrides.insert("dest".into(), json!(a.output));
    if let Some(c) = &a.checksum {
        overrides.insert("checksum".into(), json!(c));
    }
    if a.force {
        overrides.insert("force".into(), json!(true));
    }
    if !a.header.is_empty() {
        let mut headers = Map::new();
        if let Some(Value::Object(from_config)) = raw.get("headers") {
            headers.extend(from_config.clone());
        }
        for h in &a.header {
            let (k, v) = parse_header(h)?;
            headers.insert(k, json!(v));
        }
        overrides.insert("headers".into(), Value::Object(headers));
    }
    if a.operation.is_none()
        && let Some(obj) = raw.as_object_mut()
        && !obj.contains_key("operation")
    {
        obj.insert(
            "operation".into(),
            json!(crate::download::default_operation(&a.output, &a.url)),
        );
    }
    let resolved = Resolved::from_value(raw, overrides, true).map_err(|e| Usage(e.to_string()))?;
    records_for_session(&resolved, false)?;
    // The stdout contract of a run (`--result-json -`: stdout holds only the document); the
    // download has its own progress bar.
    let io = RunIo::open(&Outputs {
        result_json: a.result_json.as_deref(),
        events: None,
        progress: crate::front::progress::ProgressWhen::Never,
        verbosity: verbosity(a.verbose, a.quiet),
    })
    .map_err(Usage)?;
    let log = &io.log;
    let cancel = Cancel::new();
    if let Err(e) = cancel.install_signal_handlers() {
        log.warn("signals will not be handled", &[("error", e)]);
    }
    let timer = RealTimer::new();
    let opts = RunOptions {
        passthrough: true,
        want_result: io.wants_result(),
        close_own_session: true,
        ..Default::default()
    };
    let answer = crate::app::run_command::run(&resolved, &opts, log, &cancel, &timer);
    Ok(present(&answer, &io, "download not started"))
}

fn validate(file: &std::path::Path, operation: Option<String>) -> Result<i32, Usage> {
    let raw = read_config(file)?;
    let mut flags = Map::new();
    if let Some(op) = operation {
        flags.insert("operation".into(), json!(op));
    }
    let resolved = Resolved::from_value(raw, flags, true)
        .map_err(|e| Usage(format!("{}: {e}", file.display())))?;
    crate::app::validate::check(&resolved)
        .map_err(|e| Usage(format!("{}: {e}", file.display())))?;
    println!(
        "{}: valid",
        crate::log::escape_controls(&file.display().to_string())
    );
    Ok(0)
}

/// Flags whose answer is about the whole CLI (subcommands included), never a run.
fn asks_about_cli(arg: &std::ffi::OsStr) -> bool {
    let a = arg.as_encoded_bytes();
    a == b"-h" || a == b"--help" || a == b"-V" || a == b"--version"
}

/// Parses the command line. A plain run (`retryx [FLAGS] -- CMD`, the hot path) is parsed by a
/// command holding only the run flags: building the whole tree of subcommands and their flags
/// costs more than the rest of a run's own work. Help, version, subcommands and any parse error
/// go through the full command, so their output and messages are the full CLI's.
fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    // Subcommand names never start with `-`; every run does (its command comes after `--`).
    let plain_run = args.get(1).is_some_and(|first| {
        first.as_encoded_bytes().starts_with(b"-")
            && !args[1..]
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| asks_about_cli(a))
    });
    if plain_run {
        // `retryx -- CMD ARGS`: no flag to parse, every option at its default. (Non-UTF-8 words
        // go to clap, which rejects them for a `String` as it always has.)
        if args[1] == "--" && args.len() > 2 {
            let words: Option<Vec<String>> = args[2..]
                .iter()
                .map(|a| a.to_str().map(String::from))
                .collect();
            if let Some(command) = words {
                let run = RunArgs {
                    command,
                    ..RunArgs::default()
                };
                return Ok(Cli { sub: None, run });
            }
        }
        let run_only = RunArgs::augment_args(clap::Command::new("retryx"));
        if let Ok(run) = run_only
            .try_get_matches_from(&args)
            .and_then(|m| RunArgs::from_arg_matches(&m))
        {
            return Ok(Cli { sub: None, run });
        }
    }
    Cli::try_parse_from(args)
}

/// `retryx ls -l`: a command given without `--` reads as an unknown subcommand or argument.
/// The hint shows the same words with `--` put before the command.
fn command_without_dashes(e: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand
    ) {
        return None;
    }
    let Some(ContextValue::String(word)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if word.starts_with('-') || args.iter().any(|a| a == "--") {
        return None;
    }
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let at = words.iter().position(|w| w == word)?;
    let mut fixed = vec!["retryx".to_string()];
    fixed.extend(words[..at].iter().cloned());
    fixed.push("--".into());
    fixed.extend(words[at..].iter().cloned());
    use clap::CommandFactory;
    let near = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .find(|name| word.len() > 3 && edit_distance(word, name) <= 2);
    // The words are the user's: escaped, so a control character in them cannot drive the
    // terminal.
    let hint = match near {
        Some(name) => format!(
            "retryx: no subcommand '{word}' (did you mean '{name}'?); to run a command, put it after --: {}",
            fixed.join(" ")
        ),
        None => format!("retryx: put the command after --: {}", fixed.join(" ")),
    };
    Some(crate::log::escape_controls(&hint))
}

/// Levenshtein distance, for "did you mean" (words are a few characters long).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Runs the CLI; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::exec::limit_malloc_arenas();
    let cli = match parse(args.clone()) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { USAGE } else { 0 };
            // clap quotes the user's words as given: with a control character among them the
            // message is printed plain and escaped, line by line.
            let plain = e.render().to_string();
            if plain.chars().any(|c| c.is_control() && c != '\n') {
                let escaped: String = plain
                    .lines()
                    .map(|l| crate::log::escape_controls(l) + "\n")
                    .collect();
                if e.use_stderr() {
                    eprint!("{escaped}");
                } else {
                    print!("{escaped}");
                }
            } else {
                let _ = e.print();
            }
            if let Some(hint) = command_without_dashes(&e, &args) {
                eprintln!("{hint}");
            }
            return code;
        }
    };
    let outcome = match cli.sub {
        Some(Sub::Schema { document }) => {
            let schema = match document.as_deref() {
                None => Some(schema_json()),
                Some(name) => crate::app::session::schemas()
                    .into_iter()
                    .find(|(n, _)| *n == format!("retry_{name}.schema.json"))
                    .map(|(_, v)| v),
            };
            match schema {
                Some(v) => serde_json::to_string_pretty(&v)
                    .map(|s| {
                        println!("{s}");
                        0
                    })
                    .map_err(|e| Usage(e.to_string())),
                None => Err(Usage(
                    "--document: expected session, operation, attempt, performance, session_error, records_pack or events".into(),
                )),
            }
        }
        Some(Sub::Validate {
            file,
            operation,
            operation_short,
        }) => operation_from_short(operation, operation_short, true)
            .and_then(|op| validate(&file, op)),
        Some(Sub::Completions { shell }) => {
            crate::front::shell::completions(shell, &mut std::io::stdout().lock());
            Ok(0)
        }
        Some(Sub::Man) => crate::front::shell::man(&mut std::io::stdout().lock())
            .map(|()| 0)
            .map_err(|e| Usage(format!("writing the man page: {e}"))),
        Some(Sub::Session(a)) => Ok(crate::front::session_cmd::session(a)),
        Some(Sub::Cleanup(a)) => Ok(crate::front::session_cmd::cleanup(a)),
        Some(Sub::Compress(a)) => Ok(crate::front::session_cmd::compress(a)),
        Some(Sub::Download(a)) => download(*a),
        Some(Sub::Notify {
            action: NotifySub::Test { config, json },
        }) => notify_test(&config, json),
        Some(Sub::Breaker { action, place }) => {
            use crate::guards::breaker::AdminAction;
            let (key, what) = match action {
                BreakerCmd::Status { key } => (key, AdminAction::Status),
                BreakerCmd::Reset { key } => (key, AdminAction::Reset),
                BreakerCmd::Open { key, for_ } => (key, AdminAction::Open(for_.map(|d| d.get()))),
            };
            let answer = crate::app::guard_admin::breaker(&place.place(), &key, what);
            super::guard_cmd::print_answer("breaker", &key, answer).map_err(Usage)
        }
        Some(Sub::Budget { action, place }) => {
            super::guard_cmd::budget(action, place).map_err(Usage)
        }
        None => run_command(cli.run),
    };
    match outcome {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("retryx: {}", crate::log::escape_controls(&msg));
            USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<OsString> {
        std::iter::once("retryx")
            .chain(s.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// `--help` shows the default of every flag that takes a value: clap's own
    /// `[default: ...]` or one written in the help text.
    #[test]
    fn help_shows_every_default() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let takes_value = matches!(a.get_action(), ArgAction::Set | ArgAction::Append);
                if !takes_value || a.is_positional() || a.is_hide_set() || a.is_required_set() {
                    continue;
                }
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                if a.get_default_values().is_empty() && !help.contains("[default:") {
                    missing.push(format!("{path} --{}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "retryx", &mut missing);
        assert!(missing.is_empty(), "no default shown: {missing:#?}");
    }

    /// The run-only fast path must parse exactly as the full command does, errors included.
    #[test]
    fn run_only_parse_agrees_with_the_full_command() {
        let cases: &[&[&str]] = &[
            &["--", "/bin/true"],
            &["--", "sh", "-c", "exit 1", "--", "-n"],
            &["--"],
            &["-qq", "--", "/bin/true"],
            &[
                "-n",
                "5",
                "-d",
                "250ms",
                "-M",
                "2s",
                "-j",
                "full",
                "--jitter-seed",
                "7",
                "--",
                "sh",
                "-c",
                "exit 1",
            ],
            &[
                "--retry-on-exit",
                "1,75",
                "--fail-if",
                "denied",
                "-t",
                "1s",
                "--deadline",
                "1m",
                "--",
                "x",
                "--help",
            ],
            &["-o", "api", "--", "session", "list"],
            &["-n", "0", "--", "x"],
            &["--no-such-flag", "--", "x"],
            &["-n", "3", "session", "list"],
            &["-n", "3"],
            &["--policy", "sideways", "--", "x"],
            &["-qh"],
            &["-n", "2", "--help"],
            &["--version"],
            &["session", "list"],
            &["sesion", "list"],
        ];
        for case in cases {
            let fast = parse(argv(case));
            let full = Cli::try_parse_from(argv(case));
            match (fast, full) {
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{case:?}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{case:?}");
                    assert_eq!(a.render().to_string(), b.render().to_string(), "{case:?}");
                }
                (a, b) => panic!("{case:?}: fast {a:?}, full {b:?}"),
            }
        }
        // A command word that is not UTF-8 is refused either way.
        use std::os::unix::ffi::OsStringExt;
        let odd = vec![
            "retryx".into(),
            "--".into(),
            OsString::from_vec(vec![b'x', 0xff]),
        ];
        assert!(parse(odd.clone()).is_err() && Cli::try_parse_from(odd).is_err());
    }
}
