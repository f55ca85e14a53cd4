//! Attacks on the release behaviour, through the binary: links and directories planted by an
//! unprivileged user (made by the test), a FIFO planted under `umask 000`, SIGTERM while
//! retryx is blocked, endless stdin. Each test says what it attacks; none talks to the network.
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
                if answer["failed"] == true && answer["msg"].as_str().unwrap_or("").len() > 10 => {}
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
    assert!(
        failures.is_empty(),
        "{} views with raw control characters (of {} log lines, an error line and 3 views):\n{}",
        failures.len(),
        log_lines.len(),
        failures.join("\n")
    );
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
