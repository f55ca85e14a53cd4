//! What a CLI run promises its caller about output, set up before the run and closed after it:
//! where the result document and the event stream go (`-` is stdout, which then holds only that
//! one document or stream while the command's own stdout goes to stderr), which observers watch
//! (the `--events` writer, the live progress line), and the `end` line that closes every
//! stream. It never decides an exit code and never builds the result document.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::config::Resolved;
use crate::front::progress::{Progress, ProgressWhen};
use crate::log::Logger;
use crate::log::events::Event;
use crate::record::events::JsonLines;

/// What the caller asked for.
pub struct Outputs<'a> {
    pub result_json: Option<&'a str>,
    pub events: Option<&'a str>,
    pub progress: ProgressWhen,
    /// -2 silent (`-qq`), -1 errors and reasons (`-q`), 0 info, 1 per-attempt detail (`-v`),
    /// 2 also the resolved config (`-vv`).
    pub verbosity: i8,
}

enum ResultTo {
    Nowhere,
    Stdout(std::fs::File),
    File(String),
}

/// The run's logger with its observers, and where the result document goes.
pub struct RunIo {
    pub log: Logger,
    result: ResultTo,
    verbosity: i8,
}

impl RunIo {
    /// Checks the outputs and opens them. Errors are bad usage (125), before anything runs.
    pub fn open(o: &Outputs) -> Result<RunIo, String> {
        let result_stdout = o.result_json == Some("-");
        let events_stdout = o.events == Some("-");
        if result_stdout && events_stdout {
            return Err(
                "--result-json - and --events - cannot both have stdout: give one of them a file"
                    .into(),
            );
        }
        let mut doc_out = if result_stdout || events_stdout {
            Some(
                crate::sys::stdout_doc::take_stdout()
                    .map_err(|e| format!("cannot keep stdout for the document: {e}"))?,
            )
        } else {
            None
        };
        let mut log = Logger::stderr(o.verbosity.min(1));
        if let Some(target) = o.events {
            let sink = match doc_out.take() {
                Some(out) if events_stdout => JsonLines::new(Box::new(out)),
                other => {
                    doc_out = other;
                    JsonLines::create(Path::new(target))
                        .map_err(|e| format!("--events {target}: cannot create it: {e}"))?
                }
            };
            log = log.with_observer(Box::new(sink));
        }
        if let Some(colour) = crate::front::progress::decide(o.progress, o.verbosity < 0) {
            log = log.with_observer(Box::new(Progress::new(colour)));
        }
        let result = match (o.result_json, doc_out) {
            (Some("-"), Some(out)) => ResultTo::Stdout(out),
            (Some(path), _) => ResultTo::File(path.to_string()),
            (None, _) => ResultTo::Nowhere,
        };
        Ok(RunIo {
            log,
            result,
            verbosity: o.verbosity,
        })
    }

    /// Someone reads the result document.
    pub fn wants_result(&self) -> bool {
        !matches!(self.result, ResultTo::Nowhere)
    }

    /// `-vv`: the config as resolved, without the command, its environment or any receiver's
    /// address (those may hold secrets).
    pub fn show_resolved(&self, r: &Resolved) {
        if self.verbosity < 2 {
            return;
        }
        let p = &r.plan;
        let shown = json!({
            "operation": p.operation,
            "max_attempts": p.max_attempts,
            "policy": p.backoff,
            "jitter_seed": p.jitter_seed,
            "timeout": p.timeout.map(|d| d.as_secs_f64()),
            "deadline": p.deadline.map(|d| d.as_secs_f64()),
            "kill_grace": p.kill_grace.as_secs_f64(),
            "retry_conditions": p.classifier.retry_conditions,
            "retry_if": p.retry_if.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            "fail_if": p.fail_if.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            "artifacts_dir": r.config.artifacts_dir,
            "state_dir": r.config.state_dir,
            "session_id": r.config.session_id,
            "external_systems": r.config.external_systems.as_deref().unwrap_or(&[]).len(),
        });
        self.log
            .debug("config as resolved", &[("config", shown.to_string())]);
    }

    /// Writes the result document where it was asked for.
    pub fn write_result(&self, result: &Value) -> Result<(), String> {
        let text = serde_json::to_string_pretty(result).map_err(|e| e.to_string())?;
        match &self.result {
            ResultTo::Nowhere => Ok(()),
            // `&File` writes without `mut`.
            ResultTo::Stdout(file) => {
                let mut out: &std::fs::File = file;
                writeln!(out, "{text}")
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("writing stdout: {e}"))
            }
            // Atomic and 0600 (it holds output tails), never written through a planted link.
            ResultTo::File(path) => crate::sys::safe_fs::write_file_private(
                std::path::Path::new(path),
                format!("{text}\n").as_bytes(),
            )
            .map(drop)
            .map_err(|e| format!("writing {path}: {e}")),
        }
    }

    /// The last line of the event stream; nothing may be told after it.
    pub fn end(&self, event: &Event) {
        self.log.event(event);
    }
}
