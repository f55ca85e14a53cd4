//! The Ansible binary-module front door: the built binary run with one argument, a JSON args
//! file, as Ansible runs it. Whatever the args, exactly one valid JSON object comes out.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn run_module_text(text: &str) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let args = dir.path().join("args");
    std::fs::write(&args, text).unwrap();
    // Ansible copies the module to the target under this name and runs it with the args file.
    let module = dir.path().join("AnsiballZ_retry_manager");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_retryx"), &module).unwrap();
    let out = Command::new(&module)
        .arg(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the module exits 0 once it printed its result"
    );
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object, one line: {stdout}"
    );
    let v: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert!(v.is_object());
    (v, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn run_module(args: Value) -> Value {
    let mut args = args;
    args["_ansible_check_mode"] = json!(false);
    args["_ansible_no_log"] = args.get("_ansible_no_log").cloned().unwrap_or(json!(false));
    args["_ansible_verbosity"] = json!(0);
    args["_ansible_version"] = json!("2.19.0");
    args["_ansible_some_future_key"] = json!({"x": 1});
    run_module_text(&args.to_string()).0
}

#[test]
fn runs_the_command_with_retries_and_returns_a_command_like_result() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("n");
    let cmd = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ] || {{ echo 'connection reset by peer' >&2; exit 1; }}; echo done",
        c = counter.display()
    );
    let r = run_module(
        json!({"command": cmd, "max_attempts": "5", "base_delay": "0.01", "jitter_enabled": "no", "operation": "vmware_vm_create", "context": {"vm_name": "web01"}}),
    );
    assert_eq!(r["failed"], false, "{r}");
    assert_eq!(r["changed"], true);
    assert_eq!(r["rc"], 0);
    assert_eq!(r["stdout"], "done");
    assert_eq!(r["stdout_lines"], json!(["done"]));
    assert_eq!(r["retry"]["attempt_count"], 3);
    assert_eq!(r["retry"]["operation"], "vmware_vm_create");
    assert!(
        r["retry"]["operation_id"]
            .as_str()
            .unwrap()
            .starts_with("vmware_vm_create_")
    );
    assert!(
        r["retry"]["session_id"]
            .as_str()
            .unwrap()
            .starts_with("retry_")
    );
    assert_eq!(r["retry"]["attempts"][0]["error_type"], "connection_error");
    assert_eq!(r["retry"]["attempts"][0]["delay_before_retry"], 0.01);
    assert!(
        r["retry"]["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("operation failed, retrying"))
    );
}

#[test]
fn failure_says_failed_true_with_a_useful_msg() {
    let r = run_module(
        json!({"argv": ["sh", "-c", "echo 'HTTP/1.1 404 Not Found' >&2; exit 22"], "max_attempts": 3}),
    );
    assert_eq!(r["failed"], true);
    assert_eq!(r["rc"], 22);
    assert_eq!(r["retry"]["attempt_count"], 1);
    assert_eq!(r["retry"]["status"], "failed");
    let msg = r["msg"].as_str().unwrap();
    assert!(
        msg.contains("resource_not_found") && msg.contains("404"),
        "{msg}"
    );
    assert_eq!(
        r["cmd"],
        json!(["sh", "-c", "echo 'HTTP/1.1 404 Not Found' >&2; exit 22"])
    );
}

#[test]
fn bad_args_fail_with_a_message_naming_the_key() {
    for (args, want) in [
        (
            json!({"command": "true", "max_attempts": "lots"}),
            "'max_attempts': expected an integer, got \"lots\"",
        ),
        (
            json!({"command": "true", "colour": "blue"}),
            "unknown key 'colour'",
        ),
        (
            json!({"command": "true", "retry_policy": "nonsense"}),
            "'retry_policy': expected one of",
        ),
        (json!({"command": "true", "base_delay": -5}), "'base_delay'"),
        (
            json!({"argv": "not-a-list-but-a-string-is-split", "command": "true"}),
            "'command' and 'argv'",
        ),
        (json!({"argv": {"a": 1}}), "'argv': expected a list"),
        (
            json!({"command": "true", "max_attempts": 1e9}),
            "max_attempts",
        ),
        (json!({}), "no command to run"),
        (
            json!({"command": "true", "operation_configs": {"x": {"base_delay": "soon"}}}),
            "'operation_configs.x.base_delay'",
        ),
    ] {
        let r = run_module(args.clone());
        assert_eq!(r["failed"], true, "{args}: {r}");
        let msg = r["msg"].as_str().unwrap();
        assert!(
            msg.contains(want),
            "{args}: {msg:?} should contain {want:?}"
        );
    }
}

#[test]
fn malformed_args_files_still_give_valid_json() {
    for text in [
        "",
        "{",
        "[1,2]",
        "null",
        "\"just a string\"",
        "{\"command\": \"true\",}",
        "\u{0}\u{1}binary",
    ] {
        let (r, _) = run_module_text(text);
        assert_eq!(r["failed"], true, "{text:?}: {r}");
        assert!(
            r["msg"].as_str().unwrap().contains("JSON")
                || r["msg"].as_str().unwrap().contains("expected"),
            "{r}"
        );
    }
}

#[test]
fn string_values_from_k_equals_v_syntax_are_coerced() {
    let r = run_module(
        json!({"command": "exit 1", "max_attempts": "2", "base_delay": "0", "jitter_enabled": "false", "retry_conditions": "unknown_error,timeout"}),
    );
    assert_eq!(r["retry"]["attempt_count"], 2, "{r}");
}

#[test]
fn check_mode_runs_nothing_and_says_what_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let state = dir.path().join("state");
    let args = json!({"command": format!("touch {}", marker.display()), "_ansible_check_mode": true, "max_attempts": 4,
                      "bulkhead": {"max_concurrent": 2}, "state_dir": state.to_str().unwrap()});
    let (r, _) = run_module_text(&args.to_string());
    assert!(!marker.exists(), "check mode must not run the command");
    assert_eq!(r["skipped"], true);
    assert_eq!(r["changed"], false);
    assert_eq!(r["msg"], "Command would have run if not in check mode");
    assert_eq!(r["retry"]["plan"]["max_attempts"], 4);
    assert_eq!(r["retry"]["plan"]["guards"], json!(["bulkhead"]));
    assert!(
        !state.exists(),
        "check mode writes nothing, guard state included"
    );
}

#[test]
fn no_log_keeps_the_secret_out_of_the_result() {
    let r = run_module(json!({
        "command": "echo token=hunter2-SECRET; echo 'auth failed for hunter2-SECRET' >&2; exit 1",
        "max_attempts": 2, "base_delay": 0,
        "context": {"password": "hunter2-SECRET"},
        "env": {"API_TOKEN": "hunter2-SECRET"},
        "_ansible_no_log": true
    }));
    let text = r.to_string();
    assert!(!text.contains("hunter2"), "secret leaked: {text}");
    assert_eq!(r["failed"], true);
    assert_eq!(r["stdout"], "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER");
}

#[test]
fn unknown_actions_fail_loudly() {
    let r = run_module(json!({"action": "teleport", "command": "true"}));
    assert_eq!(r["failed"], true);
    assert!(r["msg"].as_str().unwrap().contains("'action'"));
}

#[test]
fn the_config_dict_is_folded_under_explicit_args() {
    let dir = tempfile::tempdir().unwrap();
    // The role passes its merged settings as one `config` dict; explicit args win over it.
    let r = run_module(json!({
        "command": "exit 3",
        "operation": "from_task",
        "artifacts_dir": dir.path(),
        "config": {"max_attempts": "2", "base_delay": 0, "jitter_enabled": false,
                   "argv": ["true"], "operation": "from_config"},
    }));
    assert_eq!(r["failed"], true, "{r}");
    assert_eq!(
        r["rc"], 3,
        "the explicit command displaces config's argv: {r}"
    );
    assert_eq!(
        r["retry"]["attempt_count"], 2,
        "max_attempts came from config: {r}"
    );
    assert_eq!(r["retry"]["operation"], "from_task");

    for (config, key) in [
        (json!({"max_attempts": "lots"}), "max_attempts"),
        (json!({"max_atempts": 2}), "max_atempts"),
        (json!([1, 2]), "config"),
        (json!("not json"), "config"),
        (json!({"config": {}}), "config.config"),
        (json!({"_ansible_no_log": false}), "config._ansible_no_log"),
    ] {
        let r = run_module(json!({"command": "true", "config": config}));
        assert_eq!(r["failed"], true, "{config}: {r}");
        let msg = r["msg"].as_str().unwrap();
        assert!(
            msg.contains(key),
            "{config}: the message names {key}: {msg}"
        );
    }
    // a dict handed over as its JSON text works like the dict
    let r = run_module(json!({"argv": ["true"], "artifacts_dir": dir.path(),
        "config": "{\"max_attempts\": 1}"}));
    assert_eq!(r["failed"], false, "{r}");
    assert_eq!(r["retry"]["max_attempts"], 1, "{r}");
}

/// `retry_manager -`: the args on stdin, as the action plugin runs the cached copy (the
/// binary's name there is its digest, so nothing but the `-` says "module").
#[test]
fn args_on_stdin_with_a_dash() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("0123abcd");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_retryx"), &copy).unwrap();
    let run = |input: &[u8]| -> Value {
        let mut child = Command::new(&copy)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
        serde_json::from_str(text.trim()).unwrap()
    };
    // the attempt's stdin is not the args stream: `cat` sees nothing and succeeds
    let args = json!({"argv": ["sh", "-c", "test -z \"$(cat)\" && echo ran"],
        "max_attempts": 1, "artifacts_dir": dir.path().join("a"), "_ansible_no_log": false});
    let r = run(args.to_string().as_bytes());
    assert_eq!(r["failed"], false, "{r}");
    assert_eq!(r["stdout"], "ran", "{r}");
    let r = run(b"[1, 2]");
    assert_eq!(r["failed"], true, "{r}");
    assert!(r["msg"].as_str().unwrap().contains("JSON object"), "{r}");
    let r = run(b"\xff\xfe");
    assert_eq!(r["failed"], true, "{r}");
}
