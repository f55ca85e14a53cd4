//! Picks the front door: an Ansible binary module (one argument, the JSON args file) or the CLI.
//! `no_main`: std's start-up is replaced by `retryx::startup`, which skips the stack-guard
//! set-up that costs every run ~0.15 ms (see there).
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    retryx::startup::run(|| {
        // glibc hands std the arguments before `main` (an .init_array hook), so this works here.
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if retryx::module::is_module_invocation(&args) {
            retryx::module::main(args)
        } else {
            retryx::cli::main(args)
        }
    })
}
