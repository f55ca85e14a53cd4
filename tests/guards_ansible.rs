//! Breaker and bulkhead through ansible-playbook (8 local hosts, forks 8): runs
//! `tests/ansible_guards/run.sh` with the freshly built binary. Without an ansible-playbook
//! (the repo's `.venv`, `$ANSIBLE_PLAYBOOK` or PATH) it says SKIPPED on stderr; with
//! RETRYX_REQUIRE_ANSIBLE=1 that is a failure instead.

use std::process::Command;

#[test]
fn breaker_and_bulkhead_hold_across_ansible_forks() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ansible_guards/run.sh");
    let out = Command::new(script)
        .arg(env!("CARGO_BIN_EXE_retryx"))
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(77) {
        assert_ne!(
            std::env::var("RETRYX_REQUIRE_ANSIBLE").as_deref(),
            Ok("1"),
            "{text}"
        );
        eprintln!("{}", text.trim());
        return;
    }
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("bulkhead: 8 runs, at most 2 at once"),
        "{text}"
    );
}
