//! Run a command under the retry policy: the process attempter on the shared operation path
//! (`operation.rs`). Neither knows which front door called it.

use serde_json::{Value, json};

use super::Answer;
use super::operation::{Kind, Run, RunOptions, Shown};
use crate::config::{Action, CommandLine, Resolved};
use crate::engine::{Attempter, ProcessAttempter};
use crate::log::Logger;
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

/// The message when there is nothing to run.
pub(crate) const NO_COMMAND: &str = "no command to run: give 'command' (run by /bin/sh -c) or 'argv' (a list), at the top level or in operation_configs.<operation>";

struct Process<'a>(ProcessAttempter<'a>);

impl Kind for Process<'_> {
    fn attempter(&mut self) -> &mut dyn Attempter {
        &mut self.0
    }
}

fn cmd_value(c: &CommandLine) -> Value {
    match c {
        CommandLine::Shell(s) => json!(s),
        CommandLine::Argv(v) => json!(v),
    }
}

/// Runs the operation `resolved` describes: its command, or its download.
pub(crate) fn run(
    resolved: &Resolved,
    opts: &RunOptions,
    log: &Logger,
    cancel: &Cancel,
    timer: &dyn Timer,
) -> Answer {
    if resolved.config.action == Some(Action::Download) {
        return super::run_download::run(resolved, opts, log, cancel, timer);
    }
    let Some(command) = &resolved.plan.command else {
        return Answer::usage(NO_COMMAND);
    };
    let shown = Shown {
        cmd: cmd_value(command),
        line: Some(command.display()),
        would: "Command would have run if not in check mode",
        would_change: false,
    };
    let mut process = Process(ProcessAttempter {
        plan: &resolved.plan,
        passthrough: opts.passthrough,
    });
    Run::new(resolved, opts, log, cancel, timer).execute(shown, &mut process)
}
