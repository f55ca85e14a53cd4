//! Records end to end: the built binary (CLI and module) writes session, operation, attempt,
//! performance and error documents; every document produced here is validated against its
//! schema in `schemas/`. Concurrency (50 writers, one session), SIGKILL at random moments,
//! hostile names, directory security, no_log, compression, retention.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_retryx");

fn schema_for(file_name: &str) -> &'static str {
    if file_name.starts_with("retry_session_error_") {
        "retry_session_error"
    } else if file_name.starts_with("retry_session_") {
        "retry_session"
    } else if file_name.starts_with("retry_performance_") {
        "retry_performance"
    } else if file_name.starts_with("attempt_") {
        "retry_attempt"
    } else if file_name.starts_with("operation_") {
        "retry_operation"
    } else {
        panic!("no schema for {file_name}")
    }
}

/// Validates `doc` against `schemas/<kind>.schema.json`.
fn validate(kind: &str, doc: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{kind}.schema.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{kind}: {errors:?}\n{doc:#}");
}

fn read_doc(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap();
    let bytes = if p.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
            .unwrap_or_else(|e| panic!("{}: bad gzip: {e}", p.display()));
        out
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display()))
}

/// Every JSON file under `dir` parses, is private, and matches its schema. Returns their names.
fn validate_all(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        assert_eq!(
            std::fs::metadata(&d).unwrap().mode() & 0o777,
            0o700,
            "{}",
            d.display()
        );
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            let ours = ["retry_", "attempt_", "operation_"]
                .iter()
                .any(|x| name.starts_with(x));
            if !ours {
                continue; // not ours: the guard state dir, someone's notes
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
                continue;
            }
            assert_eq!(e.metadata().unwrap().mode() & 0o777, 0o600, "{name}");
            if name.ends_with(".json") {
                validate(schema_for(&name), &read_doc(&p));
            } else if name.ends_with(".records.json.gz") {
                validate("retry_records_pack", &read_doc(&p));
            }
            names.push(name);
        }
    }
    names.sort();
    names
}

fn retryx(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = retryx(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn module(args: Value) -> Value {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("args.json");
    std::fs::write(&f, args.to_string()).unwrap();
    let o = Command::new(BIN)
        .arg(&f)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn cli_writes_records_only_when_asked_and_they_match_the_schemas() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("records");
    let flag = t.path().join("flag");
    // No --artifacts-dir: nothing written anywhere we can see, and the result lists no artifacts.
    let out = ok(&["-q", "--result-json", "-", "--", "true"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["retry"]["artifacts"], json!([]));

    let cfg = t.path().join("cfg.json");
    std::fs::write(
        &cfg,
        json!({"log_individual_attempts": true, "base_delay": 0, "jitter": "none",
               "monitoring": {"alerts": {"operation_max_retries": 0.5, "min_success_rate": 90}}})
        .to_string(),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let c = cfg.to_str().unwrap();
    let script = format!(
        "[ -e {0} ] || {{ touch {0}; echo 'connection reset by peer' >&2; exit 1; }}",
        flag.display()
    );
    let out = ok(&[
        "-q",
        "-c",
        c,
        "--artifacts-dir",
        d,
        "--session-id",
        "retry_1_test",
        "-o",
        "vmware_vm_create",
        "--result-json",
        "-",
        "--shell",
        "--",
        &script,
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    let arts = r["retry"]["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 4, "operation, two attempts, session: {arts:?}");
    // One retry is above operation_max_retries 0.5: an operation alert, returned ready to send.
    assert_eq!(r["retry"]["alerts"][0]["name"], "operation_max_retries");
    assert_eq!(r["retry"]["alerts"][0]["scope"], "operation");
    assert_eq!(r["retry"]["statistics"]["session"]["total_operations"], 1);
    let o = retryx(&[
        "-q",
        "-c",
        c,
        "--artifacts-dir",
        d,
        "--session-id",
        "retry_1_test",
        "-o",
        "broken",
        "-n",
        "2",
        "--",
        "sh",
        "-c",
        "echo 'permission denied' >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));

    let fin: Value = serde_json::from_str(&ok(&[
        "session",
        "finalize",
        "retry_1_test",
        "--artifacts-dir",
        d,
    ]))
    .unwrap();
    assert_eq!(fin["session_status"], "failed");
    let s = read_doc(&dir.join("retry_session_retry_1_test.json"));
    let f = &s["final_statistics"];
    assert_eq!(
        f.as_object().unwrap().len(),
        13,
        "the seed's 13 fields: {f}"
    );
    assert_eq!(f["total_operations"], 2);
    assert_eq!(f["successful_operations"], 1);
    assert_eq!(f["retried_operations"], 1);
    assert_eq!(f["success_rate"], 50.0);
    assert!(s["session_end"].is_string() && s["session_duration"].as_f64().unwrap() > 0.0);
    // Session alert (50% < 90%) plus the operation's own, kept from the operation run.
    let names: HashSet<&str> = s["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains("min_success_rate") && names.contains("operation_max_retries"),
        "{names:?}"
    );
    let err = read_doc(&dir.join("retry_session_error_retry_1_test.json"));
    assert_eq!(err["failed_operations"][0]["operation_name"], "broken");
    assert_eq!(
        err["failed_operations"][0]["final_error_type"],
        "permission_error"
    );
    let names = validate_all(&dir);
    for want in [
        "retry_session_retry_1_test.json",
        "retry_performance_retry_1_test.json",
        "retry_session_error_retry_1_test.json",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("attempt_vmware_vm_create_"))
            .count(),
        2
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("operation_")).count(),
        2
    );

    // list and show read it back.
    let list: Value = serde_json::from_str(&ok(&[
        "session",
        "list",
        "--artifacts-dir",
        d,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(list[0]["session_id"], "retry_1_test");
    let show: Value = serde_json::from_str(&ok(&[
        "session",
        "show",
        "retry_1_test",
        "--artifacts-dir",
        d,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(show["operation_details"].as_array().unwrap().len(), 2);
    assert_eq!(
        show["operation_details"][0]["attempts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let text = ok(&["session", "show", "retry_1_test", "--artifacts-dir", d]);
    assert!(
        text.contains("vmware_vm_create") && text.contains("ALERT"),
        "{text}"
    );
    // A missing session is a clear error, not a panic.
    let o = retryx(&["session", "show", "retry_nope", "--artifacts-dir", d]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no session retry_nope"));
    let o = retryx(&["session", "show", "../x", "--artifacts-dir", d]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not usable"));
}

#[test]
fn fifty_concurrent_runs_into_one_session_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let d = d.to_str().unwrap();
    let children: Vec<_> = (0..50)
        .map(|i| {
            Command::new(BIN)
                .args([
                    "-q",
                    "--artifacts-dir",
                    d,
                    "--session-id",
                    "retry_50_same",
                    "-o",
                    &format!("op{i}"),
                    "--",
                    "true",
                ])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // The running counts were added under the lock: all 50 before finalize too.
    let open = read_doc(&Path::new(d).join("retry_session_retry_50_same.json"));
    assert_eq!(open["session_status"], "open");
    assert_eq!(open["final_statistics"]["total_operations"], 50);
    ok(&["session", "finalize", "retry_50_same", "--artifacts-dir", d]);
    let s = read_doc(&Path::new(d).join("retry_session_retry_50_same.json"));
    assert_eq!(s["final_statistics"]["total_operations"], 50);
    assert_eq!(s["session_status"], "completed");
    let ops: HashSet<&str> = s["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation_name"].as_str().unwrap())
        .collect();
    assert_eq!(ops.len(), 50);
    for i in 0..50 {
        assert!(ops.contains(format!("op{i}").as_str()));
    }
    validate_all(Path::new(d));
}

#[test]
fn sigkill_at_random_moments_leaves_no_torn_json() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let ds = d.to_str().unwrap();
    let cfg = t.path().join("cfg.json");
    std::fs::write(
        &cfg,
        json!({"log_individual_attempts": true, "base_delay": 0, "max_attempts": 4}).to_string(),
    )
    .unwrap();
    let writer = |i: u32| {
        Command::new(BIN)
            .args([
                "-qq",
                "-c",
                cfg.to_str().unwrap(),
                "--artifacts-dir",
                ds,
                "--session-id",
                "retry_kill",
                "--operation",
                &format!("k{i}"),
                "--",
                "sh",
                "-c",
                "exit 1",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    // One run to its end measures how long a whole run takes on this machine now, so the
    // kill moments span "before anything" to "after everything" however loaded it is.
    let started = std::time::Instant::now();
    let whole = writer(1000).wait().unwrap();
    assert_eq!(whole.code(), Some(1));
    let span = (started.elapsed().as_micros() as u64 * 5 / 4).max(1);
    // A seeded walk of kill moments.
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for i in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut c = writer(i);
        // Where it is killed is what varies; nothing is asserted about timing.
        std::thread::sleep(std::time::Duration::from_micros(seed % span));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = c.wait();
        if d.exists() {
            validate_all(&d);
        }
    }
    // Whatever survived can be finalized (the whole run above at least), and the result is
    // valid too: every operation file that survived is counted.
    let ops = std::fs::read_dir(d.join("retry_session_retry_kill"))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("operation_") && n.ends_with(".json")
        })
        .count() as u64;
    let out: Value = serde_json::from_str(&ok(&[
        "session",
        "finalize",
        "retry_kill",
        "--artifacts-dir",
        ds,
    ]))
    .unwrap();
    assert_eq!(out["final_statistics"]["total_operations"], ops);
    assert!(ops >= 1);
    validate_all(&d);
}

#[test]
fn hostile_operation_names_give_safe_file_names_inside_the_directory() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let long = "x".repeat(300);
    for name in ["../../etc/passwd", "a\u{0}b\nc/../d", long.as_str()] {
        let r = module(
            json!({"argv": ["true"], "operation": name, "artifacts_dir": d, "session_id": "retry_hostile",
                              "log_individual_attempts": true}),
        );
        assert_eq!(r["failed"], false, "{r}");
        for a in r["retry"]["artifacts"].as_array().unwrap() {
            let p = PathBuf::from(a.as_str().unwrap());
            assert!(p.starts_with(&d), "{}", p.display());
            let f = p.file_name().unwrap().to_str().unwrap();
            assert!(
                f.len() < 255
                    && f.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                "{f:?}"
            );
            assert!(!f.starts_with('.'));
        }
    }
    assert!(!t.path().join("etc").exists());
    validate_all(&d);
}

#[test]
fn directory_is_private_and_refused_when_planted() {
    let t = tempfile::tempdir().unwrap();
    // A symlink someone planted where the records should go.
    let real = t.path().join("elsewhere");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let r = module(json!({"argv": ["true"], "artifacts_dir": link}));
    assert_eq!(r["failed"], false, "the operation's outcome stands: {r}");
    assert!(
        r["retry"]["record_error"]
            .as_str()
            .unwrap()
            .contains("symlink"),
        "{r}"
    );
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("records not written")
    );
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    // A directory owned by someone else (we may be root: chown it away).
    let theirs = t.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let r = module(json!({"argv": ["true"], "artifacts_dir": theirs}));
        assert!(
            r["retry"]["record_error"]
                .as_str()
                .unwrap()
                .contains("not by us"),
            "{r}"
        );
    }
    // An open directory of ours is tightened; files are 0600.
    let open = t.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    module(json!({"argv": ["true"], "artifacts_dir": open}));
    validate_all(&open);
    // A bad session id is refused by name, before the command runs (issue 17).
    let marker = t.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let r = module(json!({"command": touch, "artifacts_dir": open, "session_id": "../../x"}));
    assert_eq!(r["failed"], json!(true), "{r}");
    assert!(
        r["msg"].as_str().unwrap().contains("key 'session_id'"),
        "{r}"
    );
    assert!(!marker.exists(), "the command ran: {r}");
}

#[test]
fn module_records_no_log_redacted_and_check_mode_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let r = module(
        json!({"command": "echo hunter2-secret >&2; exit 1", "max_attempts": 2, "base_delay": 0,
                          "artifacts_dir": d, "session_id": "retry_nolog", "log_individual_attempts": true,
                          "context": {"password": "hunter2-secret"}, "_ansible_no_log": true}),
    );
    assert_eq!(r["failed"], true);
    let fin =
        module(json!({"action": "finalize", "session_id": "retry_nolog", "artifacts_dir": d}));
    assert_eq!(fin["retry"]["status"], "failed", "{fin}");
    validate_all(&d);
    let mut stack = vec![d.clone()];
    while let Some(x) = stack.pop() {
        for e in std::fs::read_dir(&x).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).to_string();
                assert!(!text.contains("hunter2"), "{} leaks: {text}", p.display());
            }
        }
    }
    let c = t.path().join("c");
    let r = module(json!({"argv": ["true"], "artifacts_dir": c, "_ansible_check_mode": true}));
    assert_eq!(r["skipped"], true);
    let r = module(
        json!({"action": "finalize", "session_id": "retry_x", "artifacts_dir": c, "_ansible_check_mode": true}),
    );
    assert_eq!(r["skipped"], true);
    assert!(!c.exists(), "check mode wrote nothing");
    // finalize of an unknown session and without a session id: clear failures.
    let r = module(json!({"action": "finalize", "session_id": "retry_none", "artifacts_dir": d}));
    assert!(
        r["msg"].as_str().unwrap().contains("no session retry_none"),
        "{r}"
    );
    let r = module(json!({"action": "finalize", "artifacts_dir": d}));
    assert!(
        r["msg"].as_str().unwrap().contains("needs session_id"),
        "{r}"
    );
}

#[test]
fn compress_and_cleanup_keep_what_is_not_theirs() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let ds = d.to_str().unwrap();
    for sid in ["retry_old_a", "retry_old_b", "retry_open_c"] {
        for i in 0..3 {
            let o = retryx(&[
                "-q",
                "--artifacts-dir",
                ds,
                "--session-id",
                sid,
                "-o",
                &format!("op{i}"),
                "-n",
                "2",
                "-d",
                "0",
                "--",
                "sh",
                "-c",
                &format!("exit {}", i % 2),
            ]);
            assert_eq!(o.status.code(), Some(i % 2));
        }
    }
    // attempts for one session, to see them packed
    let cfg = t.path().join("cfg.json");
    std::fs::write(&cfg, json!({"log_individual_attempts": true}).to_string()).unwrap();
    ok(&[
        "-q",
        "-c",
        cfg.to_str().unwrap(),
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_old_a",
        "--",
        "true",
    ]);
    ok(&["session", "finalize", "retry_old_a", "--artifacts-dir", ds]);
    ok(&["session", "finalize", "retry_old_b", "--artifacts-dir", ds]);
    let before: Value = serde_json::from_str(&ok(&[
        "session",
        "show",
        "retry_old_a",
        "--artifacts-dir",
        ds,
        "--format",
        "json",
    ]))
    .unwrap();
    std::fs::write(d.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir(d.join("state")).unwrap();
    std::fs::write(d.join("state/breaker.json"), "{}").unwrap();

    let rep: Value = serde_json::from_str(&ok(&[
        "compress",
        "--artifacts-dir",
        ds,
        "--threshold",
        "100",
    ]))
    .unwrap();
    let files: Vec<&str> = rep["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"retry_session_retry_old_a.records.json.gz"),
        "{rep}"
    );
    assert!(
        files.contains(&"retry_performance_retry_old_a.json.gz"),
        "{rep}"
    );
    assert!(rep["skipped"].to_string().contains("retry_open_c: open"));
    assert!(!d.join("retry_session_retry_old_a").exists());
    assert!(
        d.join("retry_session_retry_open_c").exists(),
        "open sessions are not compressed"
    );
    // The only attempt file (retry_old_a's) went into the pack.
    assert!(!std::fs::read_dir(&d).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("attempt_")
    }));
    // Read back transparently.
    let after: Value = serde_json::from_str(&ok(&[
        "session",
        "show",
        "retry_old_a",
        "--artifacts-dir",
        ds,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(before["operation_details"], after["operation_details"]);
    validate_all(&d);
    // Finalize again after compression still sees every operation.
    ok(&["session", "finalize", "retry_old_a", "--artifacts-dir", ds]);
    assert_eq!(
        read_doc(&d.join("retry_session_retry_old_a.json"))["final_statistics"]["total_operations"],
        4
    );

    // Count: keep one finished session; age: none is 1 day old yet.
    let rep: Value = serde_json::from_str(&ok(&[
        "cleanup",
        "--artifacts-dir",
        ds,
        "--max-sessions",
        "1",
    ]))
    .unwrap();
    assert_eq!(
        rep["removed_sessions"].as_array().unwrap().len(),
        1,
        "{rep}"
    );
    assert_eq!(rep["kept_open"], json!(["retry_open_c"]));
    // Age: retention 0 days removes every finished one, still never the open one.
    let rep: Value = serde_json::from_str(&ok(&[
        "cleanup",
        "--artifacts-dir",
        ds,
        "--retention-days",
        "0",
    ]))
    .unwrap();
    assert_eq!(
        rep["removed_sessions"].as_array().unwrap().len(),
        1,
        "{rep}"
    );
    let left: HashSet<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let want: HashSet<String> = [
        "notes.txt",
        "state",
        "retry_session_retry_open_c.json",
        "retry_session_retry_open_c.lock",
        "retry_session_retry_open_c",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(left, want);
    assert_eq!(
        std::fs::read_to_string(d.join("state/breaker.json")).unwrap(),
        "{}"
    );
}

/// Minimal PNG reader for the render check: size and the distinct colours of the pixels.
fn png_info(bytes: &[u8]) -> (u32, u32, HashSet<(u8, u8, u8)>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut pos, mut idat, mut w, mut h, mut ct) = (8, Vec::new(), 0u32, 0u32, 0u8);
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(data[8], 8, "8-bit");
                ct = data[9];
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    let bpp = match ct {
        2 => 3,
        6 => 4,
        other => panic!("colour type {other}"),
    };
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw).unwrap();
    let stride = w as usize * bpp;
    let mut prev = vec![0u8; stride];
    let mut colours = HashSet::new();
    for y in 0..h as usize {
        let f = raw[y * (stride + 1)];
        let mut line = raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)].to_vec();
        for i in 0..stride {
            let a = if i >= bpp { line[i - bpp] as i16 } else { 0 };
            let b = prev[i] as i16;
            let c = if i >= bpp { prev[i - bpp] as i16 } else { 0 };
            let pred = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                _ => panic!("filter {f}"),
            };
            line[i] = line[i].wrapping_add(pred as u8);
        }
        for px in line.chunks(bpp) {
            colours.insert((px[0], px[1], px[2]));
        }
        prev = line;
    }
    (w, h, colours)
}

#[test]
fn the_timeline_renders_in_headless_chromium() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let ds = d.to_str().unwrap();
    let cfg = t.path().join("cfg.json");
    std::fs::write(&cfg, json!({"monitoring": {"alerts": {"max_average_retries": 1, "min_success_rate": 99}}, "base_delay": "50ms", "jitter": "none"}).to_string()).unwrap();
    let c = cfg.to_str().unwrap();
    ok(&[
        "-q",
        "-c",
        c,
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_pic",
        "-o",
        "vmware_vm_create",
        "--",
        "sleep",
        "0.05",
    ]);
    let _ = retryx(&[
        "-q",
        "-c",
        c,
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_pic",
        "-o",
        "network_configuration",
        "-n",
        "3",
        "--",
        "sh",
        "-c",
        "sleep 0.05; echo 'connection refused' >&2; exit 1",
    ]);
    let _ = retryx(&[
        "-q",
        "-c",
        c,
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_pic",
        "-o",
        "api_call",
        "-n",
        "2",
        "--",
        "sh",
        "-c",
        "echo denied >&2; exit 2",
    ]);
    ok(&["session", "finalize", "retry_pic", "--artifacts-dir", ds]);
    let svg = t.path().join("s.svg");
    let html = t.path().join("s.html");
    ok(&[
        "session",
        "show",
        "retry_pic",
        "--artifacts-dir",
        ds,
        "--format",
        "svg",
        "-o",
        svg.to_str().unwrap(),
    ]);
    ok(&[
        "session",
        "show",
        "retry_pic",
        "--artifacts-dir",
        ds,
        "--format",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg")
            && text.contains("network_configuration")
            && text.contains("#d43c3c")
            && text.contains("#f0a030")
            && text.contains("#2e9e44")
    );
    let html_text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !html_text.contains("src=") && !html_text.contains("href="),
        "self-contained"
    );

    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    let Some(chromium) = chromium else {
        eprintln!(
            "\n\n!!!!! SKIPPED: chromium is not installed; the SVG/HTML render check did not run !!!!!\n\n"
        );
        return;
    };
    let width = 1100;
    for (src, name) in [(&svg, "svg"), (&html, "html")] {
        let png = t.path().join(format!("{name}.png"));
        let profile = tempfile::tempdir().unwrap();
        let o = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("--window-size={width},700"))
            .arg(format!("file://{}", src.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            png.exists(),
            "chromium made no PNG: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let bytes = std::fs::read(&png).unwrap();
        let (w, h, colours) = png_info(&bytes);
        assert_eq!((w, h), (width, 700));
        assert!(
            colours.len() > 20,
            "{name}: looks blank ({} colours)",
            colours.len()
        );
        // The bars were drawn: success green, retried orange, final red (render::COLOURS).
        for rgb in [(0x2e, 0x9e, 0x44), (0xf0, 0xa0, 0x30), (0xd4, 0x3c, 0x3c)] {
            assert!(colours.contains(&rgb), "{name}: no pixel of {rgb:?}");
        }
        if let Some(keep) = std::env::var_os("RETRYX_KEEP_PNG") {
            std::fs::copy(
                &png,
                PathBuf::from(keep).join(format!("timeline_{name}.png")),
            )
            .unwrap();
        }
    }
}

#[test]
fn a_compress_stopped_before_removing_the_originals_is_finished_by_the_next() {
    // The pack is written first, the originals removed after: a compress killed in between
    // leaves both. The next compress must pack each operation once and remove the originals.
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let ds = d.to_str().unwrap();
    for i in 0..3 {
        let op = format!("op{i}");
        let o = retryx(&[
            "-q",
            "--artifacts-dir",
            ds,
            "--session-id",
            "retry_resume",
            "-o",
            &op,
            "-n",
            "1",
            "--",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0));
    }
    ok(&["session", "finalize", "retry_resume", "--artifacts-dir", ds]);
    let sdir = d.join("retry_session_retry_resume");
    let originals: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&sdir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    assert_eq!(originals.len(), 3);
    ok(&[
        "compress",
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_resume",
    ]);
    assert!(!sdir.exists());
    // As if the first compress had died before its unlinks.
    std::fs::create_dir(&sdir).unwrap();
    std::fs::set_permissions(&sdir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for (p, bytes) in &originals {
        std::fs::write(p, bytes).unwrap();
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let rep: Value = serde_json::from_str(&ok(&[
        "compress",
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_resume",
    ]))
    .unwrap();
    assert!(!sdir.exists(), "the originals are removed: {rep}");
    let shown: Value = serde_json::from_str(&ok(&[
        "session",
        "show",
        "retry_resume",
        "--artifacts-dir",
        ds,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        shown["operation_details"].as_array().map(Vec::len),
        Some(3),
        "each operation once: {shown}"
    );
    // In the pack itself too (show would hide a duplicate).
    let gz = std::fs::read(d.join("retry_session_retry_resume.records.json.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let pack: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        pack["operations"].as_array().map(Vec::len),
        Some(3),
        "{pack}"
    );
    validate_all(&d);
}

/// `session finalize --config` reads its file as records are read: a FIFO (or a symlink) is
/// refused at once with a message naming it, exit 125, never waited on; a regular file is read.
#[test]
fn finalize_refuses_a_fifo_as_its_config_instead_of_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("records");
    let ds = d.to_str().unwrap();
    let o = retryx(&[
        "-q",
        "--artifacts-dir",
        ds,
        "--session-id",
        "retry_fifo",
        "--keep-open",
        "--",
        "true",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fifo = tmp.path().join("cfg.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let link = tmp.path().join("cfg-link.json");
    let real = tmp.path().join("cfg.json");
    std::fs::write(&real, "{}").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let finalize = |cfg: &Path| {
        let mut child = Command::new(BIN)
            .args(["session", "finalize", "retry_fifo", "--artifacts-dir", ds])
            .arg("--config")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: the old reader waited in `open` for a writer that never comes.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "finalize --config {} still running after 20 s",
                    cfg.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait_with_output().unwrap()
    };
    for (cfg, why) in [(&fifo, "not a regular file"), (&link, "is a symlink")] {
        let o = finalize(cfg);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(
            err.contains("cannot read config") && err.contains(cfg.to_str().unwrap()),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
    }
    let o = finalize(&real);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["session_status"], "completed", "{r}");
}

/// The role's "cleanup retry session on error" (module `action: cleanup` with a session id):
/// the session is closed as failed, its error record keeps the whole picture (session,
/// operations with their attempts, the play's failed task classified), and every other file
/// of that session goes; another session in the directory stays whole. Finalize closes a
/// session once: called again with nothing new, it changes nothing.
#[test]
fn module_cleanup_on_error_keeps_the_picture_and_finalize_closes_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let flag = t.path().join("flag");
    let common = json!({"artifacts_dir": d, "base_delay": 0, "log_individual_attempts": true});
    let with = |extra: Value| {
        let mut a = common.clone();
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        module(a)
    };
    let flaky = format!(
        "[ -e {0} ] || {{ touch {0}; echo 'connection reset by peer' >&2; exit 1; }}",
        flag.display()
    );
    let r = with(json!({"command": flaky, "session_id": "retry_2_err", "operation": "ok_op"}));
    assert_eq!(r["retry"]["attempt_count"], 2, "{r}");
    let r = with(json!({"command": "echo 'permission denied' >&2; exit 4",
                        "session_id": "retry_2_err", "operation": "denied_op"}));
    assert_eq!(r["failed"], true, "{r}");
    let r = with(json!({"command": "true", "session_id": "retry_3_other", "operation": "other"}));
    assert_eq!(r["failed"], false, "{r}");

    // finalize twice: closed once
    let fin =
        |sid: &str| module(json!({"action": "finalize", "session_id": sid, "artifacts_dir": d}));
    let first = fin("retry_3_other");
    assert_eq!(
        (
            first["changed"].clone(),
            first["retry"]["finalize_count"].clone()
        ),
        (json!(true), json!(1)),
        "{first}"
    );
    let again = fin("retry_3_other");
    assert_eq!(
        (again["changed"].clone(), again["failed"].clone()),
        (json!(false), json!(false)),
        "{again}"
    );
    assert!(
        again["msg"].as_str().unwrap().contains("already completed"),
        "{again}"
    );
    let other = read_doc(&d.join("retry_session_retry_3_other.json"));
    assert_eq!(other["finalize_count"], 1, "{other}");

    let r = module(
        json!({"action": "cleanup", "session_id": "retry_2_err", "artifacts_dir": d,
                          "task_name": "Migrate the database",
                          "task_result": {"failed": true, "rc": 7,
                                          "stderr": "psql: could not connect: Connection refused"}}),
    );
    assert_eq!(
        (r["failed"].clone(), r["changed"].clone()),
        (json!(false), json!(true)),
        "{r}"
    );
    assert!(
        r["msg"].as_str().unwrap().contains("closed as failed"),
        "{r}"
    );
    assert_eq!(r["retry"]["status"], "failed", "{r}");
    assert_eq!(r["retry"]["error"]["class"], "connection_error", "{r}");

    let names = validate_all(&d);
    let of_err: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.contains("retry_2_err")
                || n.starts_with("attempt_ok_op")
                || n.starts_with("attempt_denied_op")
        })
        .collect();
    assert_eq!(
        of_err,
        vec!["retry_session_error_retry_2_err.json"],
        "{names:?}"
    );
    assert!(!d.join("retry_session_retry_2_err").exists());
    assert!(!d.join("retry_session_retry_2_err.lock").exists());
    for kept in [
        "retry_session_retry_3_other.json",
        "retry_performance_retry_3_other.json",
    ] {
        assert!(names.iter().any(|n| n == kept), "{kept} in {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("operation_other")),
        "{names:?}"
    );

    let e = read_doc(&d.join("retry_session_error_retry_2_err.json"));
    assert_eq!(e["session_status"], "failed");
    assert_eq!(e["session"]["session_status"], "failed");
    assert_eq!(e["session"]["final_statistics"]["total_operations"], 2);
    assert_eq!(e["operations"].as_array().unwrap().len(), 2, "{e:#}");
    let ok_op = e["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation_name"] == "ok_op")
        .unwrap();
    assert_eq!(ok_op["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(ok_op["attempts"][0]["error_type"], "connection_error");
    assert_eq!(e["failed_operations"][0]["operation_name"], "denied_op");
    assert_eq!(e["error"]["task"], "Migrate the database");
    assert_eq!(e["error"]["rc"], 7);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{e:#}"
    );

    // Nothing left to close: a warning, not a failure; retention later removes the old record.
    let r = module(json!({"action": "cleanup", "session_id": "retry_2_err", "artifacts_dir": d}));
    assert_eq!(
        (r["failed"].clone(), r["changed"].clone()),
        (json!(false), json!(false)),
        "{r}"
    );
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("nothing to close"),
        "{r}"
    );
}

/// After "cleanup retry session on error": a finalize answers from the error record (leaving
/// no lock file), a later session that reuses the id finalizes without removing the record,
/// the failed task's own no_log keeps its output out of the record, and a session directory
/// planted as a symlink is neither read nor emptied.
#[test]
fn after_cleanup_on_error_the_picture_stays_and_symlinked_dirs_are_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("r");
    let run = |sid: &str, op: &str| {
        let r = module(
            json!({"command": "true", "session_id": sid, "operation": op,
                              "artifacts_dir": d}),
        );
        assert_eq!(r["failed"], false, "{r}");
    };
    run("retry_4_err", "first");
    let secret = "S3CR3T-4f9a2c";
    let r = module(
        json!({"action": "cleanup", "session_id": "retry_4_err", "artifacts_dir": d,
                          "task_name": "Call the service",
                          "task_result": {"rc": 7, "_ansible_no_log": true,
                                          "stderr": format!("connection refused for token={secret}"),
                                          "msg": format!("non-zero return code {secret}")}}),
    );
    assert_eq!(r["retry"]["error"]["class"], "connection_error", "{r}");
    assert!(!r.to_string().contains(secret), "{r}");
    let epath = d.join("retry_session_error_retry_4_err.json");
    let record = std::fs::read_to_string(&epath).unwrap();
    assert!(!record.contains(secret), "{record}");
    assert!(
        record.contains("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"),
        "{record}"
    );

    // the finalize handler runs after the cleanup: already closed, from the error record
    let fin =
        module(json!({"action": "finalize", "session_id": "retry_4_err", "artifacts_dir": d}));
    assert_eq!(
        (fin["failed"].clone(), fin["changed"].clone()),
        (json!(false), json!(false)),
        "{fin}"
    );
    assert!(
        fin["msg"]
            .as_str()
            .unwrap()
            .contains("already closed on error"),
        "{fin}"
    );
    assert_eq!(fin["retry"]["status"], "failed", "{fin}");
    assert!(!d.join("retry_session_retry_4_err.lock").exists());

    // the id reused by a later include: its successful finalize keeps the whole picture
    run("retry_4_err", "second");
    let fin =
        module(json!({"action": "finalize", "session_id": "retry_4_err", "artifacts_dir": d}));
    assert_eq!(fin["retry"]["status"], "completed", "{fin}");
    let e = read_doc(&epath);
    assert_eq!(
        e["session"]["final_statistics"]["total_operations"], 1,
        "{e:#}"
    );
    assert_eq!(e["operations"][0]["operation_name"], "first", "{e:#}");
    assert_eq!(e["error"]["task"], "Call the service", "{e:#}");

    // a symlink planted where a session's directory goes: nothing read or removed through it
    run("retry_5_link", "linked");
    let sdir = d.join("retry_session_retry_5_link");
    let outside = t.path().join("outside");
    std::fs::rename(&sdir, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &sdir).unwrap();
    let theirs: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let r = module(json!({"action": "cleanup", "session_id": "retry_5_link", "artifacts_dir": d}));
    assert_eq!(r["failed"], false, "{r}");
    assert!(theirs[0].exists(), "removed through the symlink: {r}");
    let e = read_doc(&d.join("retry_session_error_retry_5_link.json"));
    assert!(
        e.get("operations").is_none(),
        "read through the symlink: {e:#}"
    );
}
