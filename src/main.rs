//! Picks the front door: an Ansible binary module (one argument, the JSON args file) or the CLI.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = if retryx::module::is_module_invocation(&args) {
        retryx::module::main(args)
    } else {
        retryx::cli::main(args)
    };
    std::process::exit(code);
}
