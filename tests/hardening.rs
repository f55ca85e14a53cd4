//! Attacks on the release behaviour, through the binary: links and directories planted by an
//! unprivileged user (made by the test), a FIFO planted under `umask 000`, SIGTERM while
//! retryx is blocked, endless stdin, `cleanup` racing writers, orphaned records, deeply nested
//! context, a deadline against a child that ignores TERM, a wait cut short, bad module args
//! files, control characters in logs and views, rejections that must name their key. Each test
//! says what it attacks; none talks to the network.
//! Needs root for the planting user (`RETRYX_REQUIRE_ROOT=1` makes its absence a failure).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::attack::*;

/// A tree the planter can reach: `base` (root, 0755), `pub` (root, 1777 like /tmp) and
/// `victim` (root, 0700: the planter can point links at it, never write there).
struct Tree {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    public: PathBuf,
    victim: PathBuf,
}

fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let public = base.join("pub");
    std::fs::create_dir(&public).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = base.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).unwrap();
    Tree {
        _tmp: tmp,
        base,
        public,
        victim,
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let out = retryx().args(args).output().unwrap();
    (
        shell_code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn links_and_directories_planted_by_another_user_are_refused_at_the_leaf_and_in_a_parent() {
    let Some(ids) = planting_user() else { return };
    let t = tree();
    let p = t.public.display();
    as_planter(
        ids,
        &format!(
            "ln -s ../victim {p}/leaf && ln -s ../victim {p}/parent && mkdir {p}/theirs && chmod 777 {p}/theirs && ln -s ../victim/owned.json {p}/result.json"
        ),
    );
    let breaker = t.base.join("breaker.json");
    std::fs::write(
        &breaker,
        r#"{"circuit_breaker": {"consecutive_failures": 1}}"#,
    )
    .unwrap();
    let mine = t.base.join("mine");
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "artifacts dir is their link".into(),
            vec!["--artifacts-dir".into(), format!("{p}/leaf")],
        ),
        (
            "a parent of the artifacts dir is their link".into(),
            vec!["--artifacts-dir".into(), format!("{p}/parent/arts")],
        ),
        (
            "a parent of the artifacts dir is theirs".into(),
            vec!["--artifacts-dir".into(), format!("{p}/theirs/arts")],
        ),
        (
            "the state dir is below their link".into(),
            vec![
                "-c".into(),
                breaker.display().to_string(),
                "--artifacts-dir".into(),
                mine.display().to_string(),
                "--state-dir".into(),
                format!("{p}/parent/state"),
            ],
        ),
        (
            "the state dir is their link".into(),
            vec![
                "-c".into(),
                breaker.display().to_string(),
                "--artifacts-dir".into(),
                mine.display().to_string(),
                "--state-dir".into(),
                format!("{p}/leaf"),
            ],
        ),
    ];
    for (what, args) in &cases {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["-n", "1", "--", "false"]);
        let (code, stderr) = run(&a);
        assert_eq!(code, 1, "{what}: the command's own code ({stderr})");
        assert!(
            stderr.contains("symlink") || stderr.contains("not by us"),
            "{what}: the refusal is said: {stderr}"
        );
        assert_eq!(names_in(&t.victim), Vec::<String>::new(), "{what}");
        assert_eq!(
            names_in(&t.public.join("theirs")),
            Vec::<String>::new(),
            "{what}"
        );
    }
    // --result-json at their link: the link is replaced by our file, nothing written through it.
    let result = t.public.join("result.json");
    let (code, stderr) = run(&["--result-json", &result.display().to_string(), "--", "true"]);
    assert_eq!(code, 0, "{stderr}");
    let meta = std::fs::symlink_metadata(&result).unwrap();
    assert!(meta.is_file() && meta.uid() == 0 && meta.mode() & 0o777 == 0o600);
    assert_eq!(names_in(&t.victim), Vec::<String>::new());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert_eq!(doc["rc"], 0);
}

/// The planter, owner of `theirs`, keeps moving `theirs/arts` away and planting a link to
/// `victim` in its place while retryx writes records there again and again (the race between
/// a check of the path and the write): every run must be refused, and nothing may ever land
/// in `victim`.
#[test]
fn a_directory_swapped_for_a_link_during_runs_gets_no_file() {
    let Some(ids) = planting_user() else { return };
    let t = tree();
    let theirs = t.public.join("theirs");
    as_planter(ids, &format!("mkdir {} && chmod 777 {0}", theirs.display()));
    let arts = theirs.join("arts");
    let script = format!(
        "cd {} && i=0; while :; do i=$((i+1)); [ -d arts ] && [ ! -L arts ] && mv -T arts D$i; \
         ln -s ../../victim arts.l; mv -T arts.l arts; mv -T arts L; done 2>/dev/null",
        theirs.display()
    );
    let mut flipper = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &script])
            .uid(ids.0)
            .gid(ids.1)
            .spawn()
            .unwrap()
    };
    let runs = 100;
    let mut refused = 0;
    for i in 0..runs {
        let sid = format!("race_{i}");
        let (code, stderr) = run(&[
            "--artifacts-dir",
            &arts.display().to_string(),
            "--session-id",
            &sid,
            "--",
            "true",
        ]);
        assert_eq!(code, 0, "{stderr}");
        refused += usize::from(stderr.contains("not by us"));
    }
    let _ = flipper.kill();
    let _ = flipper.wait();
    let landed = names_in(&t.victim);
    eprintln!(
        "swap race: {runs} runs, {refused} refused, {} files in victim",
        landed.len()
    );
    assert_eq!(landed, Vec::<String>::new());
    assert_eq!(refused, runs);
}

/// Under `umask 000` every directory retryx makes is 0700 from the start and every file 0600;
/// a FIFO planted where the session document goes is refused, not opened (it used to block
/// retryx for good).
#[test]
fn under_umask_000_dirs_are_private_during_the_run_and_a_planted_fifo_does_not_block() {
    let tmp = tempfile::tempdir().unwrap();
    let arts = tmp.path().join("arts");
    let modes = tmp.path().join("modes");
    let cfg = tmp.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"circuit_breaker": {"consecutive_failures": 5}, "log_individual_attempts": true}"#,
    )
    .unwrap();
    let a = arts.display();
    let attempt = format!(
        "for d in {a} {a}/state; do [ -d $d ] && stat -c %a $d >> {m}; done; \
         mkfifo {a}/retry_session_fifo_s.json 2>/dev/null; exit 1",
        m = modes.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", r#"umask 000 && exec "$@""#, "sh", &retryx_bin()])
        .args(["-c", &cfg.display().to_string(), "--artifacts-dir"])
        .arg(&arts)
        .args([
            "--session-id",
            "fifo_s",
            "-n",
            "3",
            "-d",
            "20ms",
            "-j",
            "none",
        ])
        .args(["--", "sh", "-c", &attempt])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_bounded(
        &mut child,
        Duration::from_secs(60),
        "retryx with a planted FIFO",
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(shell_code(st), 1, "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let seen = std::fs::read_to_string(&modes).unwrap();
    // The first attempt runs before anything is made; the state directory (the breaker's)
    // exists from its end on.
    let seen: Vec<&str> = seen.split_whitespace().collect();
    assert!(
        seen.len() >= 4 && seen.iter().all(|m| *m == "700"),
        "modes during the run: {seen:?}"
    );
    for e in walkdir(&arts) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        let want = if m.is_dir() { 0o700 } else { 0o600 };
        if m.file_type().is_fifo_like() {
            continue;
        }
        assert_eq!(m.mode() & 0o777, want, "{}", e.display());
    }
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir()
            && let Ok(it) = std::fs::read_dir(&out[i])
        {
            let found: Vec<PathBuf> = it.flatten().map(|e| e.path()).collect();
            out.extend(found);
        }
        i += 1;
    }
    out
}

/// SIGTERM reaches retryx while it waits in `open` on a FIFO given as its config.
#[test]
fn sigterm_while_blocked_opening_a_fifo_ends_retryx_with_143() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("cfg.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = retryx()
        .arg("-c")
        .arg(&fifo)
        .args(["--", "true"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until(
        Duration::from_secs(20),
        "retryx blocked on the FIFO",
        || wchan(pid).contains("wait_for_partner") || wchan(pid).contains("fifo"),
    );
    signal(pid, "TERM");
    let st = wait_bounded(&mut child, Duration::from_secs(20), "retryx after SIGTERM");
    assert_eq!(shell_code(st), 143);
}

/// SIGTERM while retryx waits for a session lock someone else holds: retryx ends with 143 at
/// once (it used to wait in flock, then exit 0 once the lock was released: the signal lost).
#[test]
fn sigterm_while_waiting_for_a_held_session_lock_ends_retryx_with_143() {
    let tmp = tempfile::tempdir().unwrap();
    let arts = tmp.path().join("arts");
    std::fs::create_dir(&arts).unwrap();
    std::fs::set_permissions(&arts, std::fs::Permissions::from_mode(0o700)).unwrap();
    let lock = arts.join("retry_session_held.lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["-c", "echo locked; exec sleep 600"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let marker = tmp.path().join("ran");
    let mut child = retryx()
        .arg("--artifacts-dir")
        .arg(&arts)
        .args(["--session-id", "held", "--", "touch"])
        .arg(&marker)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The command has run and is gone: what is left for retryx is the lock.
    wait_until(Duration::from_secs(20), "the command ran", || {
        marker.exists() && children_of(pid).is_empty()
    });
    signal(pid, "TERM");
    let st = wait_bounded(&mut child, Duration::from_secs(20), "retryx after SIGTERM");
    let _ = holder.kill();
    let _ = holder.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(shell_code(st), 143, "{stderr}");
}

/// Endless stdin is refused at `--stdin-max` (default 64 MiB) with a clear error, and no spool
/// is left in TMPDIR, neither then nor after a SIGTERM during the copy.
#[test]
fn endless_stdin_is_capped_and_no_spool_outlives_retryx() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            r#"yes | "$0" --stdin-replay -- head -c 10"#,
            &retryx_bin(),
        ])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(shell_code(out.status), 125, "{stderr}");
    assert!(stderr.contains("--stdin-max (67108864 bytes)"), "{stderr}");
    assert_eq!(names_in(tmp.path()), Vec::<String>::new());

    // A stdin that stays open and silent: retryx waits in the copy until SIGTERM.
    let mut child = retryx()
        .args(["--stdin-replay", "--", "cat"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let tmp_dir = tmp.path().to_path_buf();
    wait_until(Duration::from_secs(20), "retryx holds its spool", || {
        names_in(Path::new(&format!("/proc/{pid}/fd")))
            .iter()
            .filter_map(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
            .any(|l| l.starts_with(&tmp_dir))
    });
    signal(pid, "TERM");
    let st = wait_bounded(&mut child, Duration::from_secs(20), "retryx after SIGTERM");
    assert_eq!(shell_code(st), 143);
    assert_eq!(names_in(tmp.path()), Vec::<String>::new());
}

/// Each attempt starts a `setsid` descendant (out of reach of the group kill) and leaves an
/// exited one behind for retryx (their subreaper) to reap, then hangs until its timeout: no
/// escaped process may outlive retryx, and no attempt may see zombies piling up under it.
#[test]
fn setsid_descendants_are_ended_at_timeout_and_no_zombies_pile_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (pids, zombies) = (tmp.path().join("pids"), tmp.path().join("zombies"));
    let attempt = format!(
        "ps -o stat= --ppid $PPID | grep -c Z >> {z}; setsid sh -c 'exit 0' & \
         setsid sleep 600 & echo $! >> {p}; sleep 600",
        z = zombies.display(),
        p = pids.display()
    );
    let mut child = retryx()
        .args(["-q", "-t", "300ms", "-n", "4", "-d", "10ms", "-j", "none"])
        .args(["--", "sh", "-c", &attempt])
        .spawn()
        .unwrap();
    let st = wait_bounded(
        &mut child,
        Duration::from_secs(60),
        "retryx with setsid children",
    );
    assert_eq!(shell_code(st), 124);
    let counts = std::fs::read_to_string(&zombies).unwrap();
    assert_eq!(counts.split_whitespace().collect::<Vec<_>>(), ["0"; 4]);
    let escaped: Vec<String> = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(escaped.len(), 4);
    let alive: Vec<&String> = escaped
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    for p in &alive {
        signal(p.parse().unwrap(), "KILL");
    }
    assert!(
        alive.is_empty(),
        "setsid descendants outlived retryx: {alive:?}"
    );
}

/// One writer of the race below: an operation of two failed attempts (attempt files on) into
/// session `sid`, left open. Returns its operation id, or the `record_error` when its records
/// were not written.
fn race_writer(arts: &Path, cfg: &Path, sid: &str) -> Result<String, String> {
    let out = retryx()
        .args(["-q", "--result-json", "-", "-c"])
        .arg(cfg)
        .arg("--artifacts-dir")
        .arg(arts)
        .args(["--session-id", sid, "--keep-open", "--", "false"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        shell_code(out.status),
        1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Some(e) = r["retry"].get("record_error") {
        return Err(e.to_string());
    }
    Ok(r["retry"]["operation_id"].as_str().unwrap().to_string())
}

/// `session show` as JSON: the session document's own count and the operation ids found.
fn show_session(arts: &Path, sid: &str) -> Option<(u64, Vec<String>)> {
    let out = retryx()
        .args([
            "session",
            "show",
            sid,
            "--format",
            "json",
            "--artifacts-dir",
        ])
        .arg(arts)
        .output()
        .unwrap();
    if !out.status.success() {
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("no session"), "{e}");
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = v["operation_details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["operation_id"].as_str().unwrap().to_string())
        .collect();
    let count = v["session"]["final_statistics"]["total_operations"]
        .as_u64()
        .unwrap();
    Some((count, ids))
}

/// `cleanup` racing writers (issue 17, item 3): writers add operations to an open session
/// and to one that a closer finalizes again and again, while `cleanup --max-sessions 0`
/// removes whatever is finished. Every operation written is found, or was removed with a
/// finished session; a session document never counts an operation whose file is gone; and no
/// attempt file is left that no operation refers to. (It used to lose operations and leave
/// hundreds of orphaned attempt files: the operation file was written before the lock.)
#[test]
fn cleanup_racing_writers_loses_no_operation_and_leaves_no_orphan() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let arts = tmp.path().join("arts");
    let cfg = tmp.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"log_individual_attempts": true, "max_attempts": 2, "base_delay": 0, "jitter": "none"}"#,
    )
    .unwrap();
    let written: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    // Writers whose records were not written (`record_error`): none may be.
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let removed_ops = AtomicU64::new(0);
    let removed_sessions = AtomicU64::new(0);
    let cleanups = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for w in 0..3 {
            let (arts, cfg, written, failed, done) = (&arts, &cfg, &written, &failed, &done);
            s.spawn(move || {
                let mut i = w;
                while !done.load(Ordering::SeqCst) {
                    let sid = if i % 2 == 0 {
                        "race_open"
                    } else {
                        "race_closed"
                    };
                    match race_writer(arts, cfg, sid) {
                        Ok(oid) => written.lock().unwrap().push((sid.to_string(), oid)),
                        Err(e) => failed.lock().unwrap().push(format!("{sid}: {e}")),
                    }
                    i += 1;
                }
            });
        }
        // The closer: finalize, then cleanup, in a loop, for a few seconds (longer only if no
        // session was removed yet: the race must have been run, 15 s at most).
        loop {
            let _ = retryx()
                .args(["session", "finalize", "race_closed", "--artifacts-dir"])
                .arg(&arts)
                .output()
                .unwrap();
            let out = retryx()
                .args(["cleanup", "--retention-days", "0", "--max-sessions", "0"])
                .arg("--artifacts-dir")
                .arg(&arts)
                .output()
                .unwrap();
            if out.status.success() {
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                removed_ops.fetch_add(
                    r["removed_operations"].as_u64().unwrap_or(0),
                    Ordering::SeqCst,
                );
                let n = r["removed_sessions"].as_array().map_or(0, Vec::len) as u64;
                assert!(
                    r["removed_sessions"]
                        .as_array()
                        .is_none_or(|v| v.iter().all(|s| s == "race_closed")),
                    "{r}"
                );
                removed_sessions.fetch_add(n, Ordering::SeqCst);
                cleanups.fetch_add(1, Ordering::SeqCst);
            }
            let t = started.elapsed();
            if (t > Duration::from_secs(3) && removed_sessions.load(Ordering::SeqCst) >= 2)
                || t > Duration::from_secs(15)
            {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let written = written.into_inner().unwrap();
    let failed = failed.into_inner().unwrap();
    assert_eq!(
        failed.len(),
        0,
        "writers whose records were not written: {failed:?}"
    );
    let of = |sid: &str| -> Vec<String> {
        let mut v: Vec<String> = written
            .iter()
            .filter(|(s, _)| s == sid)
            .map(|(_, o)| o.clone())
            .collect();
        v.sort();
        v
    };
    let (w_open, w_closed) = (of("race_open"), of("race_closed"));
    let removed = removed_ops.load(Ordering::SeqCst);
    eprintln!(
        "written: {} open, {} closed; cleanups {}, sessions removed {}, operations removed {removed}",
        w_open.len(),
        w_closed.len(),
        cleanups.load(Ordering::SeqCst),
        removed_sessions.load(Ordering::SeqCst)
    );
    assert!(
        removed_sessions.load(Ordering::SeqCst) >= 1,
        "cleanup never removed the finished session: the race did not run"
    );
    // The open session: never touched by cleanup, every operation there.
    let (count, mut found_open) = show_session(&arts, "race_open").unwrap();
    found_open.sort();
    assert_eq!(found_open, w_open, "operations lost from the open session");
    assert_eq!(count, w_open.len() as u64);
    // The other: what is there is what its document counts, and the rest was removed with it.
    let found_closed = match show_session(&arts, "race_closed") {
        Some((count, ids)) => {
            assert_eq!(
                count,
                ids.len() as u64,
                "the session counts operations whose files are gone"
            );
            ids
        }
        None => Vec::new(),
    };
    assert!(found_closed.iter().all(|o| w_closed.contains(o)));
    assert_eq!(
        w_closed.len() as u64,
        found_closed.len() as u64 + removed,
        "operations written = found + removed with their session"
    );
    // Orphans: attempt files of no operation found; and every found one has both attempts.
    let found: std::collections::HashSet<&String> =
        found_open.iter().chain(&found_closed).collect();
    let attempts: Vec<String> = names_in(&arts)
        .into_iter()
        .filter(|n| n.starts_with("attempt_"))
        .collect();
    let orphans: Vec<&String> = attempts
        .iter()
        .filter(|n| {
            let oid = n
                .strip_prefix("attempt_")
                .and_then(|r| r.strip_suffix(".json"))
                .and_then(|r| r.rsplit_once('_'))
                .map(|(o, _)| o.to_string())
                .unwrap_or_default();
            !found.contains(&oid)
        })
        .collect();
    assert_eq!(orphans.len(), 0, "orphaned attempt files: {orphans:?}");
    assert_eq!(attempts.len(), 2 * found.len());
}

/// `--deadline` is a hard bound, kill grace included (issue 17, item 4): a child that ignores
/// TERM, a 1 s deadline and a 5 s grace. It used to take the deadline plus the whole grace
/// (TERM at the deadline, KILL 5 s later); now TERM comes early enough that KILL lands at the
/// deadline. The bound asserted is generous (the machine may be loaded), still well under the
/// old 6 s.
#[test]
fn the_deadline_is_a_hard_bound_kill_grace_included() {
    let tmp = tempfile::tempdir().unwrap();
    let result = tmp.path().join("result.json");
    let started = std::time::Instant::now();
    let mut child = retryx()
        .args(["-q", "--deadline", "1s", "--kill-grace", "5s", "-n", "3"])
        .arg("--result-json")
        .arg(&result)
        .args(["--", "sh", "-c", "trap '' TERM; sleep 30"])
        .spawn()
        .unwrap();
    let st = wait_bounded(&mut child, Duration::from_secs(60), "retryx --deadline 1s");
    let took = started.elapsed();
    assert_eq!(shell_code(st), 124);
    assert!(took < Duration::from_millis(4500), "took {took:?}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(r["retry"]["stop_reason"], "deadline reached", "{r}");
    assert_eq!(r["retry"]["final_error_type"], "timeout", "{r}");
    assert_eq!(r["retry"]["attempts"][0]["timed_out"], true, "{r}");
}

/// A wait aborted by SIGTERM is recorded at the length actually waited (issue 17, item 4):
/// a 30 s wait planned after the first failure, TERM as soon as the wait starts. The result,
/// the operation record and the session's total wait must all say far less than 30 s.
#[test]
fn an_aborted_wait_is_recorded_at_the_length_waited() {
    let tmp = tempfile::tempdir().unwrap();
    let (events, result, arts) = (
        tmp.path().join("events.jsonl"),
        tmp.path().join("result.json"),
        tmp.path().join("arts"),
    );
    let mut child = retryx()
        .args(["-q", "-n", "3", "-d", "30s", "-j", "none", "--events"])
        .arg(&events)
        .arg("--result-json")
        .arg(&result)
        .arg("--artifacts-dir")
        .arg(&arts)
        .args(["--", "false"])
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the wait started", || {
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains("\"type\":\"wait\""))
    });
    signal(child.id(), "TERM");
    let st = wait_bounded(&mut child, Duration::from_secs(20), "retryx after SIGTERM");
    assert_eq!(shell_code(st), 143);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(r["retry"]["status"], "aborted", "{r}");
    let waited = r["retry"]["attempts"][0]["delay_before_retry"]
        .as_f64()
        .unwrap();
    assert!(
        waited < 10.0,
        "recorded wait {waited} s of a 30 s wait cut short"
    );
    let sid = r["retry"]["session_id"].as_str().unwrap();
    let op_dir = arts.join(format!("retry_session_{sid}"));
    let op = names_in(&op_dir).into_iter().next().unwrap();
    let op: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(op_dir.join(op)).unwrap()).unwrap();
    assert_eq!(
        op["attempts"][0]["delay_before_retry"].as_f64(),
        Some(waited)
    );
    let perf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(arts.join(format!("retry_performance_{sid}.json"))).unwrap(),
    )
    .unwrap();
    assert!(perf["total_wait_time"].as_f64().unwrap() < 10.0, "{perf}");
}

/// The module (as Ansible runs it) with one step of the role's `retry_tasks`, spawned.
fn module_step(dir: &Path, name: &str, args: &serde_json::Value) -> std::process::Child {
    let file = dir.join(format!("{name}.args"));
    std::fs::write(&file, args.to_string()).unwrap();
    let module = dir.join("AnsiballZ_retry_manager");
    if !module.exists() {
        std::os::unix::fs::symlink(retryx_bin(), &module).unwrap();
    }
    Command::new(&module)
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The one JSON object a module step printed.
/// Bounded: a step that hangs fails the test instead of CI.
fn task_step_answer(mut child: std::process::Child, what: &str) -> serde_json::Value {
    wait_bounded(&mut child, Duration::from_secs(60), what);
    let mut text = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut text).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// The same through the role's `retry_tasks` path: `task_end` plans a 20 s wait, the next
/// `task_start` sleeps it and gets SIGTERM as soon as it waits. The finished operation (the
/// result and its record) must say far less than 20 s.
#[test]
fn an_aborted_wait_between_tasks_is_recorded_at_the_length_waited() {
    let tmp = tempfile::tempdir().unwrap();
    let arts = tmp.path().join("arts");
    let base = serde_json::json!({
        "operation": "call the API", "tasks_file": "api.yml", "max_attempts": 3,
        "base_delay": "20s", "jitter": "none", "artifacts_dir": arts,
        "_ansible_check_mode": false, "_ansible_no_log": false, "_ansible_verbosity": 0,
    });
    let step = |extra: serde_json::Value| {
        let mut a = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    let first = module_step(
        tmp.path(),
        "start1",
        &step(serde_json::json!({"action": "task_start"})),
    );
    let r = task_step_answer(first, "task_start 1");
    assert_eq!(r["retry"]["next"], "attempt", "{r}");
    let end = module_step(
        tmp.path(),
        "end1",
        &step(
            serde_json::json!({"action": "task_end", "task_state": r["retry"]["task_state"],
            "task_failed": true, "task_name": "GET /health",
            "task_result": {"status": 503, "msg": "Status code was 503"}}),
        ),
    );
    let r = task_step_answer(end, "task_end 1");
    assert_eq!(r["retry"]["next"], "retry", "{r}");
    assert_eq!(r["retry"]["task_state"]["pending_delay"], 20.0, "{r}");
    let started = std::time::Instant::now();
    let wait = module_step(
        tmp.path(),
        "start2",
        &step(serde_json::json!({"action": "task_start",
            "task_state": r["retry"]["task_state"]})),
    );
    let pid = wait.id();
    // The wait is a ppoll on the stop pipe (signal handlers are installed by then).
    wait_until(Duration::from_secs(20), "task_start waiting", || {
        wchan(pid).contains("poll")
    });
    signal(pid, "TERM");
    let r = task_step_answer(wait, "task_start 2 after SIGTERM");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the wait ran on"
    );
    assert_eq!(r["retry"]["status"], "aborted", "{r}");
    let waited = r["retry"]["attempts"][0]["delay_before_retry"]
        .as_f64()
        .unwrap();
    assert!(
        waited < 10.0,
        "recorded wait {waited} s of a 20 s wait cut short"
    );
    let sid = r["retry"]["session_id"].as_str().unwrap();
    let op_dir = arts.join(format!("retry_session_{sid}"));
    let op = names_in(&op_dir)
        .into_iter()
        .find(|n| n.ends_with(".json"))
        .unwrap();
    let op: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(op_dir.join(op)).unwrap()).unwrap();
    assert_eq!(
        op["attempts"][0]["delay_before_retry"].as_f64(),
        Some(waited)
    );
}

/// `{"a": {"a": ... 1}}`, `levels` dicts deep.
fn nested(levels: usize) -> serde_json::Value {
    let mut v = serde_json::json!(1);
    for _ in 0..levels {
        v = serde_json::json!({ "a": v });
    }
    v
}

/// The nesting the front door accepts is the nesting the records can hold (issue 17, item 3):
/// a `context` nested past 64 levels is refused before anything runs, by the CLI (125) and by
/// the module (failed), naming the key and the limit, also past serde_json's own limit (it
/// used to be accepted at 125 levels, and the pack compress made of it could not be read).
#[test]
fn a_context_nested_too_deep_is_refused_before_the_run_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    for levels in [65, 125, 300] {
        let cfg = tmp.path().join(format!("ctx{levels}.json"));
        std::fs::write(
            &cfg,
            serde_json::json!({"max_attempts": 1, "context": nested(levels)}).to_string(),
        )
        .unwrap();
        let out = retryx()
            .arg("-c")
            .arg(&cfg)
            .args(["--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(shell_code(out.status), 125, "{levels}: {err}");
        assert!(
            err.contains("key 'context'") && err.contains("at most 64 levels"),
            "{levels}: {err}"
        );
        let args = tmp.path().join(format!("args{levels}.json"));
        std::fs::write(
            &args,
            serde_json::json!({"argv": ["touch", marker], "context": nested(levels)}).to_string(),
        )
        .unwrap();
        let out = retryx().arg(&args).output().unwrap();
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["failed"], true, "{r}");
        let msg = r["msg"].as_str().unwrap();
        assert!(
            msg.contains("key 'context'") && msg.contains("at most 64 levels"),
            "{levels}: {msg}"
        );
        assert!(!marker.exists(), "the command ran for {levels} levels");
    }
}

/// A context at the limit is accepted, compressed and read back by `session show`; and
/// compress checks its pack with the readers' own limits before removing anything: an
/// operation file nested deeper than the pack can hold (as an older retryx wrote them) is
/// left in place, still readable, and the session is reported skipped.
#[test]
fn compress_keeps_what_its_pack_could_not_hold_and_the_limit_fits_the_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let arts = tmp.path().join("arts");
    let mut sids = Vec::new();
    for (i, levels) in [64, 64].into_iter().enumerate() {
        let args = tmp.path().join(format!("args{i}.json"));
        std::fs::write(
            &args,
            serde_json::json!({"argv": ["true"], "context": nested(levels),
                               "artifacts_dir": arts, "session_id": format!("deep{i}"),
                               "log_individual_attempts": true})
            .to_string(),
        )
        .unwrap();
        let out = retryx().arg(&args).output().unwrap();
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["failed"], false, "{r}");
        let sid = r["retry"]["session_id"].as_str().unwrap().to_string();
        let fin = retryx()
            .args(["session", "finalize", &sid, "--artifacts-dir"])
            .arg(&arts)
            .output()
            .unwrap();
        assert!(fin.status.success());
        sids.push(sid);
    }
    // The second session's operation, as an older retryx (no limit) wrote it: 125 levels.
    let dir1 = arts.join(format!("retry_session_{}", sids[1]));
    let op1 = dir1.join(names_in(&dir1).pop().unwrap());
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&op1).unwrap()).unwrap();
    doc["context"] = nested(125);
    std::fs::write(&op1, doc.to_string()).unwrap();
    let out = retryx()
        .args(["compress", "--artifacts-dir"])
        .arg(&arts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = r["skipped"].to_string();
    assert!(
        skipped.contains(&sids[1]) && skipped.contains("nothing removed"),
        "{r}"
    );
    // At the limit: packed, the originals gone, and read back whole.
    assert!(!arts.join(format!("retry_session_{}", sids[0])).exists());
    assert!(
        arts.join(format!("retry_session_{}.records.json.gz", sids[0]))
            .exists()
    );
    for (sid, levels) in [(&sids[0], 64), (&sids[1], 125)] {
        let out = retryx()
            .args([
                "session",
                "show",
                sid,
                "--format",
                "json",
                "--artifacts-dir",
            ])
            .arg(&arts)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The 125-level one reads back too, but deeper than this test's own parser goes.
        if levels == 64 {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["operation_details"][0]["context"], nested(levels));
        }
    }
    // The one too deep to pack is still there, as it was.
    assert!(op1.exists());
    assert!(
        !arts
            .join(format!("retry_session_{}.records.json.gz", sids[1]))
            .exists()
    );
}

/// Orphans (issue 17, item 3): attempt files no operation refers to, and an operation
/// directory whose session document was never written (a writer killed half-way), are removed
/// by `cleanup` once older than the retention period and an hour, never before, and never
/// while someone holds that session's lock; attempt files of live sessions and files that are
/// not ours stay.
#[test]
fn cleanup_removes_orphaned_attempt_files_once_old() {
    let tmp = tempfile::tempdir().unwrap();
    let arts = tmp.path().join("arts");
    let cfg = tmp.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"log_individual_attempts": true, "max_attempts": 2, "base_delay": 0}"#,
    )
    .unwrap();
    let live = race_writer(&arts, &cfg, "live").unwrap();
    let lost = race_writer(&arts, &cfg, "lost").unwrap();
    // The "lost" session's document is gone (its writer killed before writing it); and an
    // attempt file of an operation nobody knows.
    std::fs::remove_file(arts.join("retry_session_lost.json")).unwrap();
    std::fs::copy(
        arts.join(format!("attempt_{live}_1.json")),
        arts.join("attempt_gone_1_0123456789abcdef_1.json"),
    )
    .unwrap();
    std::fs::write(arts.join("notes.txt"), "mine").unwrap();
    // A session directory with no operation file at all: its own age is all there is.
    std::fs::create_dir(arts.join("retry_session_empty")).unwrap();
    let cleanup = |days: &str| -> serde_json::Value {
        let out = retryx()
            .args(["cleanup", "--retention-days", days, "--artifacts-dir"])
            .arg(&arts)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = names_in(&arts);
    let r = cleanup("0");
    assert_eq!(r["orphans"], serde_json::json!([]), "{r}");
    assert_eq!(
        names_in(&arts),
        before,
        "fresh orphans are kept (a writer may be at work)"
    );
    // Two hours later (files and the directories below `arts`).
    let ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    let mut all = vec![arts.clone()];
    let mut dirs = Vec::new();
    while let Some(d) = all.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                all.push(e.path());
                dirs.push(e.path());
            } else {
                std::fs::File::options()
                    .append(true)
                    .open(e.path())
                    .unwrap()
                    .set_modified(ago)
                    .unwrap();
            }
        }
    }
    for d in dirs {
        std::fs::File::open(d).unwrap().set_modified(ago).unwrap();
    }
    let r = cleanup("1");
    assert_eq!(
        r["orphans"],
        serde_json::json!([]),
        "younger than the retention: {r}"
    );
    let orphans_of = |r: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = r["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    // Someone (a writer, finalize) holds the "lost" session's lock: its directory and the
    // attempts its operation refers to stay, however old; the other orphans go.
    let lock = std::fs::File::open(arts.join("retry_session_lost.lock")).unwrap();
    fs4::fs_std::FileExt::lock_exclusive(&lock).unwrap();
    let r = cleanup("0");
    assert_eq!(
        orphans_of(&r),
        [
            "attempt_gone_1_0123456789abcdef_1.json",
            "retry_session_empty/"
        ],
        "{r}"
    );
    assert_eq!(r["removed_operations"], 0, "{r}");
    let left = names_in(&arts);
    assert!(left.contains(&"retry_session_lost".to_string()), "{left:?}");
    assert!(left.contains(&format!("attempt_{lost}_1.json")), "{left:?}");
    assert_eq!(names_in(&arts.join("retry_session_lost")).len(), 1);
    drop(lock);
    // Released: now it goes.
    let r = cleanup("0");
    let mut want = vec![
        format!("attempt_{lost}_1.json"),
        format!("attempt_{lost}_2.json"),
        "retry_session_lost/".to_string(),
    ];
    want.sort();
    assert_eq!(orphans_of(&r), want, "{r}");
    assert_eq!(r["removed_operations"], 1, "{r}");
    let left = names_in(&arts);
    assert!(left.contains(&format!("attempt_{live}_1.json")), "{left:?}");
    assert!(left.contains(&format!("attempt_{live}_2.json")), "{left:?}");
    assert!(left.contains(&"notes.txt".to_string()));
    assert!(!left.iter().any(|n| n.contains("lost")), "{left:?}");
}

/// A uid and gid.
type Ids = (u32, u32);

/// The module's answer to an args file: exit 0 and exactly one JSON object on one line, or what
/// came instead. Bounded: a FIFO without a writer must not hang it.
fn module_answer(
    module: &Path,
    arg: &Path,
    cwd: &Path,
    user: Option<Ids>,
) -> Result<serde_json::Value, String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(module);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd
        .arg(arg)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(30), "the module");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    if status.code() != Some(0) || stdout.trim_end().lines().count() != 1 {
        return Err(format!("exit {:?}, stdout {stdout:?}", status.code()));
    }
    serde_json::from_str(stdout.trim_end()).map_err(|e| format!("not JSON ({e}): {stdout:?}"))
}

#[test]
fn the_module_answers_one_json_object_whatever_its_args_file_is() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let module = d.join("retry_manager");
    std::os::unix::fs::symlink(retryx_bin(), &module).unwrap();
    let dir = d.join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let fifo = d.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A FIFO with a writer that never writes (this process holds the write end; O_RDWR opens
    // without waiting for a reader): reading it would block forever.
    let held = d.join("held-fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&held)
            .status()
            .unwrap()
            .success()
    );
    let _writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&held)
        .unwrap();
    let huge = d.join("huge");
    // Over the 16 MiB cap (sparse: no disk used).
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let binary = d.join("binary");
    std::fs::write(&binary, b"{\"command\": \"\xff\xfe\"}").unwrap();
    let empty = d.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let blank = d.join("blank");
    std::fs::write(&blank, b"  \n\t\n").unwrap();
    let list = d.join("list");
    std::fs::write(&list, b"[1, 2]").unwrap();
    // A socket cannot be opened as a file, whoever we are (root reads a 0000 file).
    let socket = d.join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Root's own 0600 file, read by the planting user (root would read it).
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = d.join("private");
    std::fs::write(&private, b"{}").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cases: Vec<(&str, PathBuf, Option<Ids>)> = vec![
        ("missing, by path", d.join("no-such-args")),
        ("missing, bare name", PathBuf::from("no-such-args-either")),
        ("a directory", dir),
        ("a FIFO without a writer", fifo),
        ("a FIFO held open by a writer that never writes", held),
        // Reading a terminal's master side waits for the terminal to speak.
        ("a terminal device (/dev/ptmx)", PathBuf::from("/dev/ptmx")),
        ("larger than the cap", huge),
        ("endless (/dev/zero)", PathBuf::from("/dev/zero")),
        ("not UTF-8", binary),
        ("empty", empty),
        ("only blanks", blank),
        ("a JSON list", list),
        ("unreadable (a socket)", socket),
    ]
    .into_iter()
    .map(|(what, path)| (what, path, None))
    .collect();
    if let Some(ids) = planting_user() {
        cases.push(("unreadable (another user's 0600 file)", private, Some(ids)));
    }
    let mut failures = Vec::new();
    for (what, arg, user) in &cases {
        match module_answer(&module, arg, d, *user) {
            Ok(answer)
                if answer["failed"] == true
                    && answer["msg"].as_str().unwrap_or("").len() > 10
                    && (!what.contains("FIFO")
                        && !what.contains("terminal")
                        && !what.contains("dev/zero")
                        || answer["msg"]
                            .as_str()
                            .unwrap_or("")
                            .contains("expected a regular file; use - for stdin")) => {}
            Ok(answer) => failures.push(format!("{what}: {answer}")),
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} args files without a failed answer and its reason:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The control characters (newline aside), line separators and bidi overrides in `text`.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[test]
fn control_characters_reach_log_lines_and_text_views_escaped_and_the_output_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let arts = tmp.path().join("arts");
    let result = tmp.path().join("result.json");
    // ESC/OSC (retitles the terminal), CSI as C1 (U+009B), BEL, DEL, a bidi override.
    let name = "deploy \u{1b}]0;owned\u{7} \u{9b}31m \u{7f} \u{202e}x";
    let script = "printf 'out \\033[2J kept\\n'; printf 'connection refused \\033]0;pwned\\007 \\302\\23331m \\177\\n' >&2; exit 1";
    let out = retryx()
        .args([
            "-v",
            "-n",
            "2",
            "-d",
            "1ms",
            "-j",
            "none",
            "--operation",
            name,
        ])
        .arg("--artifacts-dir")
        .arg(&arts)
        .arg("--result-json")
        .arg(&result)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(shell_code(out.status), 1);
    // The command's own output passes through as it wrote it.
    assert_eq!(out.stdout, b"out \x1b[2J kept\n".repeat(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("[20") && l.contains("] "))
        .collect();
    let mut failures = Vec::new();
    if !log_lines.iter().any(|l| l.contains("\\x1b]0;owned\\x07")) {
        failures.push("no log line shows the operation name escaped".to_string());
    }
    for l in &log_lines {
        if !raw_controls(l).is_empty() {
            failures.push(format!("log line: {l:?}"));
        }
    }
    // retryx's own error lines: a config path that does not exist, named in the message.
    let bad = retryx()
        .args(["-c", "/nonexistent/\u{1b}]0;owned\u{7}.json", "--", "true"])
        .output()
        .unwrap();
    let bad_err = String::from_utf8_lossy(&bad.stderr);
    if !raw_controls(&bad_err).is_empty() || !bad_err.contains("\\x1b]0;owned") {
        failures.push(format!("error line: {bad_err:?}"));
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    let session = doc["retry"]["session_id"].as_str().unwrap().to_string();
    for format in ["text", "svg", "html"] {
        let view = retryx()
            .args([
                "session",
                "show",
                &session,
                "--format",
                format,
                "--artifacts-dir",
            ])
            .arg(&arts)
            .output()
            .unwrap();
        assert_eq!(shell_code(view.status), 0, "{view:?}");
        let text = String::from_utf8_lossy(&view.stdout);
        if !raw_controls(&text).is_empty() {
            failures.push(format!("session show --format {format}: {text:?}"));
        }
        if format == "text" && !text.contains("\\x1b]0;owned") {
            failures.push(format!(
                "the text view does not show the name escaped: {text:?}"
            ));
        }
    }
    // `session list`: a session document whose status and start someone rewrote.
    let doc_path = arts.join(format!("retry_session_{session}.json"));
    let mut planted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&doc_path).unwrap()).unwrap();
    planted["session_status"] = serde_json::json!("failed\u{1b}]0;owned\u{7}");
    let start = planted["session_start"].as_str().unwrap().to_string();
    planted["session_start"] = serde_json::json!(format!("{start}\u{9b}31m"));
    std::fs::write(&doc_path, planted.to_string()).unwrap();
    let list = retryx()
        .args(["session", "list", "--artifacts-dir"])
        .arg(&arts)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    if shell_code(list.status) != 0
        || !raw_controls(&text).is_empty()
        || !text.contains("\\x1b]0;owned")
        || !text.contains("\\u{9b}31m")
    {
        failures.push(format!(
            "session list: {text:?} {:?}",
            String::from_utf8_lossy(&list.stderr)
        ));
    }
    // `validate` names its file; the hint to put a command after `--` and clap's own error
    // quote the user's words.
    let cfg = tmp.path().join("c\u{1b}]0;owned\u{7}.json");
    std::fs::write(&cfg, "{}").unwrap();
    let valid = retryx().arg("validate").arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&valid.stdout);
    if shell_code(valid.status) != 0
        || !raw_controls(&text).is_empty()
        || !text.contains("\\x1b]0;owned")
    {
        failures.push(format!("validate: {text:?}"));
    }
    let hint = retryx()
        .args(["ech\u{1b}]0;owned\u{7}o", "hi"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&hint.stderr);
    if shell_code(hint.status) != 125
        || !raw_controls(&text).is_empty()
        || !text.contains("put the command after --")
        || !text.contains("\\x1b]0;owned")
    {
        failures.push(format!("the hint to use --: {text:?}"));
    }
    assert!(
        failures.is_empty(),
        "{} views with raw control characters (of {} log lines, an error line, 3 views, session list, validate and a usage hint):\n{}",
        failures.len(),
        log_lines.len(),
        failures.join("\n")
    );
}

/// A flag laid over an operation's key owns it: an error about it names the key, not
/// `operation_configs.<op>.<key>`, while the operation's keys no flag touched are still named
/// where they were written.
#[test]
fn an_error_about_a_key_a_flag_set_does_not_name_the_operations_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cfg.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"operation": "x", "operation_configs": {"x": {"base_delay": "1m", "max_delay": "2m"}}})
            .to_string(),
    )
    .unwrap();
    let run = |flags: &[&str]| {
        let mut child = retryx()
            .arg("-c")
            .arg(&cfg)
            .args(flags)
            .args(["--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, Duration::from_secs(30), "retryx");
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (shell_code(status), err)
    };
    let (code, err) = run(&["-M", "1s"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("key 'max_delay'") && !err.contains("operation_configs.x.max_delay"),
        "{err}"
    );
    // The cap a flag did not touch is still the operation's.
    let (code, err) = run(&["-d", "5m"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("key 'operation_configs.x.max_delay'"), "{err}");
}

#[test]
fn rejections_name_the_key_say_what_was_expected_and_never_echo_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cfg.json");
    let secret = "hunter2-Zq9xW7";
    // (config, what the message must hold)
    let cases: Vec<(serde_json::Value, &[&str])> = vec![
        (
            serde_json::json!({"jitter_seed": 1e308}),
            &["key 'jitter_seed'", "expected a whole number"],
        ),
        (
            serde_json::json!({"timeout": "40d"}),
            &["key 'timeout'", "31 days"],
        ),
        (
            serde_json::json!({"operation": "x", "operation_configs": {"x": {"base_delay": "1m", "max_delay": "1s"}}}),
            &["key 'operation_configs.x.max_delay'", "expected a cap"],
        ),
        (
            serde_json::json!({"operation_configs": {"x": {"timeout": "lots"}}}),
            &["key 'operation_configs.x.timeout'", "expected a duration"],
        ),
        (
            serde_json::json!({"circuit_breaker": {"minimum_calls": 0}}),
            &["key 'circuit_breaker.minimum_calls'", "minimum of 1"],
        ),
        (
            serde_json::json!({"external_systems": [{"name": "d", "type": "datadog", "site": "nope", "auth_header": format!("DD-API-KEY {secret}")}]}),
            &["key 'external_systems[0].site'", "datadoghq.com"],
        ),
        (
            serde_json::json!({"external_systems": [{"name": "d", "type": "datadog", "compression": "zz", "auth_header": format!("DD-API-KEY {secret}")}]}),
            &[
                "key 'external_systems[0].compression'",
                "expected none, gzip or deflate",
            ],
        ),
        (
            serde_json::json!({"external_systems": {"name": "h", "url": format!("http://u:{secret}@h/x")}}),
            &["key 'external_systems'", "expected a list"],
        ),
        (
            serde_json::json!({"max_attempts": format!("http://u:{secret}@h:8080/x?token={secret}")}),
            &["key 'max_attempts'", "expected an integer", "http://h:8080"],
        ),
        (
            serde_json::json!({"state_backend": [format!("redis://:{secret}@h")]}),
            &["key 'state_backend'", "expected a string"],
        ),
        (
            serde_json::json!({"state_backend": format!("redis://u:{secret}/x@h:1/0")}),
            &["key 'state_backend'", "expected a port"],
        ),
        (
            serde_json::json!({"external_systems": [{"name": "h", "url": format!("ftp://u:{secret}@h/x")}]}),
            &[
                "key 'external_systems[0].url'",
                "expected an http:// or https:// URL",
            ],
        ),
        // A dict or a list under a secret-bearing key inside a rejected value is not shown.
        (
            serde_json::json!({"external_systems": {"name": "h", "url": "http://x", "headers": {"X-Api-Key": secret}}}),
            &[
                "key 'external_systems'",
                "expected a list",
                "<a dict, not shown>",
            ],
        ),
        (
            serde_json::json!({"external_systems": {"name": "h", "url": "http://x", "env": [secret]}}),
            &[
                "key 'external_systems'",
                "expected a list",
                "<a list, not shown>",
            ],
        ),
        // Not a mapping at all: the value shown has its URLs cut to the origin.
        (
            serde_json::json!([format!("http://u:{secret}@h/x")]),
            &["top level", "http://h"],
        ),
    ];
    let mut failures = Vec::new();
    for (config, wanted) in &cases {
        std::fs::write(&cfg, config.to_string()).unwrap();
        let out = retryx()
            .args(["validate"])
            .arg(&cfg)
            .env_remove("DD_API_KEY")
            .output()
            .unwrap();
        let msg = String::from_utf8_lossy(&out.stderr).into_owned();
        let missing: Vec<&&str> = wanted.iter().filter(|w| !msg.contains(**w)).collect();
        if shell_code(out.status) != 125 || !missing.is_empty() || msg.contains(secret) {
            failures.push(format!("{config}\n  -> {msg}  (missing {missing:?})"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rejections unclear or echoing a secret:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
