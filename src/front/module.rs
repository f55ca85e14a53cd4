//! The Ansible front door: one argument, the JSON args file (or `-`: the args on stdin, how the
//! collection's action plugin runs its cached copy in one round trip, keeping secrets out of
//! argv). Reads `_ansible_*` keys (check mode, no_log, verbosity), validates and coerces the
//! rest, dispatches on `action`, and prints exactly one JSON object on stdout whatever happens
//! (a panic included). It must not build a result anywhere but here.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::document;
use crate::app::operation::RunOptions;
use crate::config::{Action, Resolved, StdinSpec};
use crate::log::Logger;
use crate::sys::clock::RealTimer;
use crate::sys::stop::Cancel;

/// Ansible's own keys the module reads.
#[derive(Debug, Default, Clone)]
pub struct AnsibleFlags {
    pub check_mode: bool,
    pub no_log: bool,
    pub verbosity: i64,
}

/// Args files larger than this are refused: the cap config files have too.
const MAX_ARGS_BYTES: u64 = crate::sys::safe_fs::MAX_INPUT_BYTES;

/// The one argument that says "the args document is on stdin" (as with `cat -`).
const ARGS_ON_STDIN: &str = "-";

/// Whether this process was started as an Ansible binary module: exactly one argument, either
/// `-` (args on stdin) or an existing file (not a flag, not a subcommand) that holds a JSON
/// object. Under the module's name (`retry_manager`, `AnsiballZ_*`) any one argument but a flag
/// or a subcommand is the args file, whatever it is (missing, a directory, a FIFO): the answer
/// is then JSON that says what is wrong with it, never the CLI's usage text.
pub fn is_module_invocation(args: &[OsString]) -> bool {
    if args.len() != 2 {
        return false;
    }
    if args[1] == ARGS_ON_STDIN {
        return true;
    }
    let arg = Path::new(&args[1]);
    let text = args[1].to_string_lossy();
    if text.starts_with('-') {
        return false;
    }
    let named = Path::new(&args[0])
        .file_name()
        .map(|n| {
            let n = n.to_string_lossy();
            n.contains("retry_manager") || n.contains("AnsiballZ")
        })
        .unwrap_or(false);
    if named {
        return arg.exists() || text.contains('/') || !is_subcommand(&text);
    }
    arg.is_file()
        && std::fs::File::open(arg)
            .ok()
            .and_then(|mut f| {
                let mut buf = [0u8; 64];
                std::io::Read::read(&mut f, &mut buf)
                    .ok()
                    .map(|n| buf[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
            })
            .unwrap_or(false)
}

/// Whether `word` is one of the CLI's subcommands (`retry_manager man` is still the CLI).
fn is_subcommand(word: &str) -> bool {
    use clap::CommandFactory;
    super::cli::Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
}

fn failure(msg: impl Into<String>) -> Value {
    document::failure(msg)
}

/// Splits Ansible's `_ansible_*` keys from the task's args (unknown ones are ignored).
pub fn split_ansible_keys(args: &mut Map<String, Value>) -> AnsibleFlags {
    let truthy = |v: Option<&Value>| match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on")
        }
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    };
    let flags = AnsibleFlags {
        check_mode: truthy(args.get("_ansible_check_mode")),
        no_log: truthy(args.get("_ansible_no_log")),
        verbosity: args
            .get("_ansible_verbosity")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    };
    args.retain(|k, _| !k.starts_with("_ansible_"));
    flags
}

/// Folds the optional `config` arg (a dict of module args, e.g. the role's merged
/// `retry_manager`) under the task's explicit args: an explicit arg wins, and an explicit
/// `command` or `argv` displaces both of config's. One dict arg is how the
/// role passes its settings, because templating fifty `... | default(omit)` args costs Ansible
/// about a millisecond each.
pub fn merge_config_arg(args: &mut Map<String, Value>) -> Result<(), String> {
    let base = match args.remove("config") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(m)) => m,
        // `k=v` task syntax and some templating hand over a dict as its JSON text.
        Some(Value::String(text)) => match serde_json::from_str(&text) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(
                    "key 'config': expected a dict of module args (or its JSON text), got a string"
                        .into(),
                );
            }
        },
        Some(other) => {
            let got = match other {
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "a list",
            };
            return Err(format!(
                "key 'config': expected a dict of module args, got {got}"
            ));
        }
    };
    if base.contains_key("config") {
        return Err("key 'config.config': config cannot be nested".into());
    }
    // The command is one thing: an explicit `command` or `argv` displaces both of config's.
    let explicit_command = args.contains_key("command") || args.contains_key("argv");
    for (key, value) in base {
        if explicit_command && (key == "command" || key == "argv") {
            continue;
        }
        if key.starts_with("_ansible_") {
            return Err(format!(
                "key 'config.{key}': Ansible's own keys cannot be set in config"
            ));
        }
        args.entry(key).or_insert(value);
    }
    Ok(())
}

/// Reads the args document from stdin, up to MAX_ARGS_BYTES. A terminal is refused rather than
/// waited on: `retryx -` typed by hand would otherwise hang.
fn read_args_from_stdin() -> Result<String, String> {
    use std::io::{IsTerminal, Read};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(
            "'-' reads the module args (a JSON object) from stdin, and stdin is a terminal".into(),
        );
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_ARGS_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the module args from stdin: {e}"))?;
    if buf.len() as u64 > MAX_ARGS_BYTES {
        return Err(format!(
            "the args on stdin are more than the {MAX_ARGS_BYTES} bytes allowed"
        ));
    }
    String::from_utf8(buf).map_err(|_| "the module args on stdin are not UTF-8".into())
}

fn read_args_file(path: &Path) -> Result<String, String> {
    if path.as_os_str() == ARGS_ON_STDIN {
        return read_args_from_stdin();
    }
    use std::io::Read;
    let shown = path.display();
    let bytes = open_args_file(path)
        .and_then(|f| {
            let mut buf = Vec::new();
            f.take(MAX_ARGS_BYTES + 1)
                .read_to_end(&mut buf)
                .map(|_| buf)
        })
        .map_err(|e| format!("cannot read the module args file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_ARGS_BYTES {
        return Err(format!(
            "the args file {shown} is larger than the {MAX_ARGS_BYTES} bytes allowed"
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "the module args file {shown} is empty: expected a JSON object"
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("the module args file {shown} is not UTF-8 text"))
}

/// Opens the args file without blocking on a FIFO (`O_NONBLOCK`), then refuses anything but a
/// regular file: reading a FIFO that something holds open, or a terminal, would block forever.
fn open_args_file(path: &Path) -> std::io::Result<std::fs::File> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else {
            "a socket or another special file"
        };
        return Err(std::io::Error::other(format!(
            "it is {what}: expected a regular file; use - for stdin"
        )));
    }
    // A regular file never blocks; plain reads are simpler to reason about.
    fcntl(&file, FcntlArg::F_SETFL(OFlag::empty())).map_err(std::io::Error::from)?;
    Ok(file)
}

fn run_module(path: &Path) -> Value {
    let text = match read_args_file(path) {
        Ok(t) => t,
        Err(msg) => return failure(msg),
    };
    let mut args: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            return failure(format!(
                "module args: expected a JSON object, got {}",
                other
            ));
        }
        Err(e) => {
            return failure(
                crate::config::nesting::explain_parse_error(text.as_bytes(), &e)
                    .unwrap_or_else(|| format!("module args are not valid JSON: {e}")),
            );
        }
    };
    let flags = split_ansible_keys(&mut args);
    let no_log = flags.no_log;
    if let Err(msg) = merge_config_arg(&mut args) {
        return failure(msg);
    }
    // Issue 14: the role's retry_tasks calls the module around each attempt.
    if let Some(step) = crate::front::module_tasks::take_action(&mut args) {
        return crate::front::module_tasks::run(step, args, &flags);
    }
    // A download without an operation name gets the seed's `download <file name>`.
    if args.get("action").and_then(Value::as_str) == Some("download")
        && !args.contains_key("operation")
        && let Some(dest) = args.get("dest").and_then(Value::as_str)
    {
        let url = args.get("url").and_then(Value::as_str).unwrap_or_default();
        let name = crate::download::default_operation(dest, url);
        args.insert("operation".into(), json!(name));
    }
    // "cleanup retry session on error": what the handler knew of the play's failure
    // (ansible_failed_task / ansible_failed_result), kept out of the config.
    let failed_task = (args.get("action").and_then(Value::as_str) == Some("cleanup"))
        .then(|| crate::front::module_tasks::take_failed_task(&mut args));
    let mut resolved = match Resolved::from_value(Value::Object(args), Map::new(), true) {
        Ok(r) => r,
        Err(e) => return failure(e.to_string()),
    };
    let action = resolved.config.action.unwrap_or_default();
    let answer = match action {
        Action::Run | Action::Download => {
            // The module's stdin is Ansible's, never the user's: attempts get nothing unless asked.
            if resolved.plan.stdin == StdinSpec::Inherit {
                resolved.plan.stdin = StdinSpec::Null;
            }
            let debug = resolved.config.debug_mode.unwrap_or(false) || flags.verbosity >= 3;
            let log = Logger::memory(if debug { 1 } else { 0 });
            let cancel = Cancel::new();
            let _ = cancel.install_signal_handlers();
            let timer = RealTimer::new();
            let opts = RunOptions {
                passthrough: false,
                no_log,
                check_mode: flags.check_mode,
                records_by_default: true,
                want_result: true,
                // The role's finalize handler closes its session.
                close_own_session: false,
            };
            let mut answer = crate::app::run_command::run(&resolved, &opts, &log, &cancel, &timer);
            if !no_log {
                answer.retry_mut().insert("log".into(), json!(log.lines()));
            }
            answer
        }
        // Issue 5: the role's "send retry metrics to external systems" / "send retry alerts".
        Action::Notify => {
            let log = Logger::memory(0);
            crate::app::notify::action(&resolved.config, flags.check_mode, &log)
        }
        // Issue 4: the role's finalize / cleanup / compress handlers.
        a @ (Action::Finalize | Action::Cleanup | Action::Compress) => {
            let play_error = match failed_task
                .map(|t| crate::front::module_tasks::play_error(t, &resolved, no_log))
                .transpose()
            {
                Ok(e) => e.flatten(),
                Err(msg) => return failure(msg),
            };
            crate::app::session::action(a, &resolved.config, flags.check_mode, play_error)
        }
    };
    let mut out = document::of(&answer);
    if resolved.config.debug_mode.unwrap_or(false) {
        document::add_attempt_detail(&mut out);
    }
    out
}

/// Runs the module and prints its one JSON object. Always exits 0 when the result was printed
/// (Ansible reads `failed` from the JSON, not the exit code), 1 if even printing failed.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::exec::limit_malloc_arenas();
    // A panic must still end in valid JSON: keep its text off stdout and report it in the result.
    std::panic::set_hook(Box::new(|_| {}));
    let path = std::path::PathBuf::from(&args[1]);
    let result = std::panic::catch_unwind(|| run_module(&path)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown".into());
        failure(format!("internal error in retryx (please report): {what}"))
    });
    let text = serde_json::to_string(&result).unwrap_or_else(|_| {
        // serde_json cannot fail on a Value with string keys; this is the last resort anyway.
        r#"{"failed": true, "changed": false, "msg": "retryx could not serialise its result"}"#
            .to_string()
    });
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
