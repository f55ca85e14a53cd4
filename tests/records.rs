//! Records through the front doors: the built binary writes session, operation and attempt
//! documents; concurrent runs share a session; finalize, cleanup and compress; security rules.
//! Every document produced is validated against its schema in `schemas/`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn retryx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retryx"));
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(format!(
        "{}/schemas/{name}.schema.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Validates every record in `dir` against its schema; returns how many were checked.
fn validate_all(dir: &Path) -> usize {
    let (op, session, attempt) = (schema("operation"), schema("session"), schema("attempt"));
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let v = if name.ends_with(".json") {
            read(&e.path())
        } else {
            continue;
        };
        let errors: Vec<String> = if name.starts_with("retry_operation_") {
            op.iter_errors(&v).map(|e| e.to_string()).collect()
        } else if name.starts_with("retry_session_") && !name.starts_with("retry_session_error_") {
            session.iter_errors(&v).map(|e| e.to_string()).collect()
        } else if name.starts_with("attempt_") {
            attempt
                .iter_errors(&v["attempt"])
                .map(|e| e.to_string())
                .collect()
        } else {
            Vec::new()
        };
        assert!(errors.is_empty(), "{name}: {errors:?}");
        n += 1;
    }
    n
}

#[test]
fn a_run_writes_its_operation_and_session_privately() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("records");
    let status = retryx()
        .args([
            "--artifacts-dir",
            dir.to_str().unwrap(),
            "--session-id",
            "retry_1_test",
            "-n",
            "3",
            "-d",
            "1ms",
            "-o",
            "api_call",
            "--",
            "sh",
            "-c",
            "exit 1",
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let session = read(&dir.join("retry_session_retry_1_test.json"));
    assert_eq!(session["session_status"], "running");
    assert_eq!(session["final_statistics"]["total_operations"], 1);
    assert_eq!(session["final_statistics"]["failed_operations"], 1);
    assert_eq!(session["final_statistics"]["total_retry_attempts"], 2);
    let op_id = session["operations"][0]["operation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(op_id.starts_with("api_call_"));
    let op = read(&dir.join(format!("retry_operation_{op_id}.json")));
    assert_eq!(op["attempt_count"], 3);
    assert_eq!(op["attempts"].as_array().unwrap().len(), 3);
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?}", e.file_name());
    }
    assert!(validate_all(&dir) >= 2);
}

#[test]
fn fifty_concurrent_runs_share_one_session_and_finalize_counts_them_all() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("r");
    let d = dir.to_str().unwrap().to_string();
    let children: Vec<_> = (0..50)
        .map(|i| {
            let code = if i % 5 == 0 { "exit 3" } else { "exit 0" };
            retryx()
                .args([
                    "--artifacts-dir",
                    &d,
                    "--session-id",
                    "retry_50_conc",
                    "-n",
                    "2",
                    "-d",
                    "1ms",
                    "-o",
                    &format!("op{i}"),
                    "--shell",
                    "--",
                    code,
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        c.wait().unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args([
            "session",
            "finalize",
            "retry_50_conc",
            "--artifacts-dir",
            &d,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = read(&dir.join("retry_session_retry_50_conc.json"));
    assert_eq!(s["final_statistics"]["total_operations"], 50);
    assert_eq!(s["final_statistics"]["failed_operations"], 10);
    assert_eq!(s["final_statistics"]["success_rate"], 80.0);
    assert_eq!(s["session_status"], "failed");
    let mut names: Vec<String> = s["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation_name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 50, "every operation is listed once");
    assert!(s["session_end"].is_string() && s["session_duration"].is_number());
    assert!(dir.join("retry_performance_retry_50_conc.json").exists());
    let err = read(&dir.join("retry_session_error_retry_50_conc.json"));
    assert_eq!(err["failed_operations"].as_array().unwrap().len(), 10);
    validate_all(&dir);
}

#[test]
fn killing_retryx_at_random_moments_leaves_no_torn_json() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("r");
    let d = dir.to_str().unwrap().to_string();
    for i in 0..25u64 {
        let mut child = retryx()
            .args([
                "--artifacts-dir",
                &d,
                "--session-id",
                "retry_kill",
                "-n",
                "3",
                "-d",
                "0",
                "--shell",
                "--",
                "exit 1",
            ])
            .spawn()
            .unwrap();
        // Kill at a different moment each time: before, during and after the writes.
        std::thread::sleep(std::time::Duration::from_micros(8000 * i));
        let _ = child.kill();
        let _ = child.wait();
    }
    // and one that finishes, so the directory holds at least one whole run
    retryx()
        .args([
            "--artifacts-dir",
            &d,
            "--session-id",
            "retry_kill",
            "--",
            "true",
        ])
        .status()
        .unwrap();
    let ops = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("retry_operation_")
        })
        .count();
    assert!(
        ops >= 2,
        "some killed runs got as far as writing ({ops} operation records)"
    );
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let _: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap())
                .unwrap_or_else(|err| panic!("{name} is torn: {err}"));
        }
    }
    validate_all(&dir);
}

#[test]
fn hostile_operation_names_stay_inside_the_directory() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("r");
    let d = dir.to_str().unwrap();
    let long = "x".repeat(300);
    for name in ["../../etc/passwd", "a\nb", &long] {
        let status = retryx()
            .args(["--artifacts-dir", d, "-o", name, "--", "true"])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(0));
    }
    // a NUL cannot pass through argv; it can through a config file
    let cfg = base.path().join("c.json");
    std::fs::write(
        &cfg,
        json!({"operation": "nul\u{0}name", "command": "true", "artifacts_dir": d}).to_string(),
    )
    .unwrap();
    assert_eq!(
        retryx()
            .args(["-c", cfg.to_str().unwrap()])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    let entries: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries
            .iter()
            .all(|n| n.len() < 200 && !n.contains('/') && !n.contains('\n') && !n.contains('\0')),
        "{entries:?}"
    );
    assert_eq!(
        entries
            .iter()
            .filter(|n| n.starts_with("retry_operation_"))
            .count(),
        4
    );
    assert!(!base.path().join("etc").exists());
}

#[test]
fn a_planted_symlink_directory_is_refused_and_nothing_is_written_through_it() {
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    let link = base.path().join("records");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let result = base.path().join("result.json");
    let status = retryx()
        .args([
            "--artifacts-dir",
            link.to_str().unwrap(),
            "--result-json",
            result.to_str().unwrap(),
            "--",
            "true",
        ])
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the operation's own result is not changed by a records problem"
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    let r = read(&result);
    assert!(
        r["warnings"][0].as_str().unwrap().contains("symlink"),
        "{r}"
    );
}

#[test]
fn attempt_files_and_alerts() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("r");
    let cfg = base.path().join("c.json");
    std::fs::write(
        &cfg,
        json!({"command": "exit 1", "max_attempts": 3, "base_delay": 0, "artifacts_dir": dir, "session_id": "retry_alerts",
               "log_individual_attempts": true, "monitoring": {"alerts": {"min_success_rate": 90, "max_average_retries": 1}}})
        .to_string(),
    )
    .unwrap();
    let result = base.path().join("result.json");
    retryx()
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "--result-json",
            result.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    let r = read(&result);
    assert_eq!(
        r["retry"]["alerts"][0]["name"], "max_average_retries",
        "{r}"
    );
    let attempts = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("attempt_"))
        .count();
    assert_eq!(attempts, 3);
    assert_eq!(
        r["retry"]["artifacts"].as_array().unwrap().len(),
        5,
        "operation, three attempts, session"
    );
    // finalize uses the thresholds the operations were recorded with
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args([
            "session",
            "finalize",
            "retry_alerts",
            "--artifacts-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let fin: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = fin["session"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"min_success_rate") && names.contains(&"max_average_retries"),
        "{names:?}"
    );
    validate_all(&dir);
}

#[test]
fn compress_then_show_reads_back_and_cleanup_keeps_open_sessions_and_foreign_files() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("r");
    let d = dir.to_str().unwrap();
    for s in ["retry_done_a", "retry_done_b", "retry_open"] {
        retryx()
            .args(["--artifacts-dir", d, "--session-id", s, "--", "true"])
            .status()
            .unwrap();
    }
    for s in ["retry_done_a", "retry_done_b"] {
        let st = Command::new(env!("CARGO_BIN_EXE_retryx"))
            .args(["session", "finalize", s, "--artifacts-dir", d])
            .output()
            .unwrap();
        assert!(st.status.success());
    }
    std::fs::write(dir.join("notes.txt"), "not ours").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["compress", "--artifacts-dir", d])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("retry_session_retry_done_a.json.gz").exists());
    assert!(!dir.join("retry_session_retry_done_a.json").exists());
    assert!(
        dir.join("retry_session_retry_open.json").exists(),
        "an open session stays plain"
    );
    let show = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["session", "show", "retry_done_a", "--artifacts-dir", d])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(doc["session_status"], "completed");
    let text = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args([
            "session",
            "show",
            "retry_done_a",
            "--format",
            "text",
            "--artifacts-dir",
            d,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("operations 1"));
    let list = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["session", "list", "--artifacts-dir", d])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 3);
    // keep one finalized session: the other goes, the open one and notes.txt stay
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["cleanup", "--artifacts-dir", d, "--max-sessions", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().any(|n| n == "notes.txt"));
    assert!(left.iter().any(|n| n == "retry_session_retry_open.json"));
    let is_doc = |n: &&String| {
        n.starts_with("retry_session_retry_done_")
            && (n.ends_with(".json") || n.ends_with(".json.gz"))
    };
    let finalized_left = left.iter().filter(is_doc).count();
    assert_eq!(finalized_left, 1, "{left:?}");
    // retention 0 days removes the rest of the finalized ones, never the open one
    Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["cleanup", "--artifacts-dir", d, "--retention-days", "0"])
        .output()
        .unwrap();
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.iter().filter(is_doc).count(), 0, "{left:?}");
    assert!(left.iter().any(|n| n == "retry_session_retry_open.json"));
}

#[test]
fn the_module_records_by_default_and_no_log_keeps_secrets_out_of_them() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("r");
    let args = base.path().join("args.json");
    std::fs::write(
        &args,
        json!({"command": "echo s3cr3t-value >&2; exit 1", "max_attempts": 2, "base_delay": 0, "artifacts_dir": dir,
               "context": {"token": "s3cr3t-value"}, "log_individual_attempts": true, "_ansible_no_log": true})
        .to_string(),
    )
    .unwrap();
    let module = base.path().join("AnsiballZ_retry_manager");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_retryx"), &module).unwrap();
    let out = Command::new(&module).arg(&args).output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!r.to_string().contains("s3cr3t"));
    assert!(r["retry"]["artifacts"].as_array().unwrap().len() >= 3);
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        assert!(
            !text.contains("s3cr3t"),
            "{:?} leaks the secret",
            e.file_name()
        );
    }
    // finalize through the module, as the role's handler does
    std::fs::write(
        &args,
        json!({"action": "finalize", "session_id": r["retry"]["session_id"], "artifacts_dir": dir})
            .to_string(),
    )
    .unwrap();
    let out = Command::new(&module).arg(&args).output().unwrap();
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["failed"], false, "{f}");
    assert_eq!(f["session"]["final_statistics"]["total_operations"], 1);
    validate_all(&dir);
}

/// Width, height and how many bytes of the decoded image are not plain white/black filler.
fn png_facts(png: &[u8]) -> (u32, u32, usize) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
        if &png[i + 4..i + 8] == b"IDAT" {
            idat.extend_from_slice(&png[i + 8..i + 8 + len]);
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw).unwrap();
    let inked = raw.iter().filter(|&&b| b != 0xff && b != 0x00).count();
    (w, h, inked)
}

#[test]
fn the_session_picture_renders_in_headless_chromium() {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        assert!(
            std::env::var("CI").is_err(),
            "chromium is missing on CI: `make setup` installs it"
        );
        eprintln!("SKIPPED: no chromium here (`make setup` installs it)");
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("r");
    let d = dir.to_str().unwrap();
    retryx()
        .args([
            "--artifacts-dir",
            d,
            "--session-id",
            "retry_pic",
            "-o",
            "flaky <op>",
            "-n",
            "3",
            "-d",
            "20ms",
            "--",
            "false",
        ])
        .status()
        .unwrap();
    retryx()
        .args([
            "--artifacts-dir",
            d,
            "--session-id",
            "retry_pic",
            "-o",
            "fine",
            "--",
            "true",
        ])
        .status()
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["session", "finalize", "retry_pic", "--artifacts-dir", d])
        .output()
        .unwrap();
    for format in ["svg", "html"] {
        let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
            .args([
                "session",
                "show",
                "retry_pic",
                "--format",
                format,
                "--artifacts-dir",
                d,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("flaky &lt;op&gt;") && !text.contains("flaky <op>"),
            "names are escaped"
        );
        assert!(
            text.matches("<rect x=").count() >= 4,
            "three failed attempts and a success drawn"
        );
        let page = base.path().join(format!("pic.{format}"));
        std::fs::write(&page, &text).unwrap();
        let png = base.path().join(format!("pic-{format}.png"));
        let status = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!(
                "--user-data-dir={}",
                base.path().join(format!("profile-{format}")).display()
            ))
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1200,600")
            .arg(format!("file://{}", page.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "chromium failed on {format}");
        let (w, h, inked) = png_facts(&std::fs::read(&png).unwrap());
        assert_eq!((w, h), (1200, 600), "{format}");
        assert!(
            inked > 5_000,
            "{format}: the screenshot is blank ({inked} inked bytes)"
        );
    }
}
