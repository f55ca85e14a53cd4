//! Picks the front door: an Ansible binary module (one argument, the JSON args file) or the CLI.
//! `no_main`: std's start-up is replaced by `retryx::sys::startup`, which skips the stack-guard
//! set-up that costs every run ~0.15 ms (see there).
//! Only on glibc Linux, where std gets the arguments before `main` without its start-up.
#![cfg_attr(all(not(test), target_os = "linux", target_env = "gnu"), no_main)]

#[cfg_attr(test, allow(dead_code))] // the test harness brings its own main
fn front_door() -> i32 {
    retryx::main(std::env::args_os().collect())
}

#[cfg(all(not(test), target_os = "linux", target_env = "gnu"))]
#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // glibc hands std the arguments before `main` (an .init_array hook), so they are there.
    retryx::sys::startup::run(front_door)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    std::process::exit(front_door());
}
