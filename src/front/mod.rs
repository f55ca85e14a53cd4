//! The front doors: the shell (`cli`) and the Ansible binary module (`module`). Each turns its
//! input into an `app::Request` and an `app::Answer` into an exit code, stdout/stderr, or the
//! Ansible result document (`document`, the only place that writes failed/changed/msg).

pub(crate) mod cli;
pub(crate) mod document;
pub(crate) mod guard_cmd;
pub(crate) mod module;
pub(crate) mod module_tasks;
pub(crate) mod progress;
pub(crate) mod run_io;
pub(crate) mod session_cmd;
pub(crate) mod shell;

use std::ffi::OsString;

/// Picks the front door: an Ansible binary module (one argument, the JSON args file) or the CLI.
pub fn main(args: Vec<OsString>) -> i32 {
    if module::is_module_invocation(&args) {
        module::main(args)
    } else {
        cli::main(args)
    }
}
