//! End-to-end tests of `retryx download` and the module's `action: download`: the real binary
//! against a local HTTP server (bench/flaky_server/server.rs) that cuts connections, stalls,
//! ignores Range, changes the file, or answers 503/404. They check the final sha256, the Range
//! and If-Range headers of later requests, and the bytes sent in all. They must not reach
//! beyond 127.0.0.1 or sleep to test timing.

#[path = "../bench/flaky_server/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use server::{Content, Fault, Server};
use sha2::{Digest, Sha256};

const MB: u64 = 1_000_000;

/// Deterministic bytes that do not compress or repeat.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn sha_file(p: &Path) -> String {
    sha(&std::fs::read(p).unwrap())
}

fn retryx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(args)
        .output()
        .unwrap()
}

struct Run {
    code: i32,
    result: Value,
    log: String,
}

/// `retryx download URL -o DEST ARGS... --result-json -` with fast, jitter-free waits.
fn download(url: &str, dest: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "download",
        url,
        "-o",
        dest.to_str().unwrap(),
        "-d",
        "10ms",
        "-j",
        "none",
        "-v",
        "--result-json",
        "-",
    ];
    args.extend_from_slice(extra);
    let out = retryx(&args);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("result is not JSON ({e}); stderr:\n{log}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        result,
        log,
    }
}

fn attempts(r: &Value) -> Vec<Value> {
    r["retry"]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn transferred(r: &Value) -> u64 {
    attempts(r)
        .iter()
        .map(|a| a["download"]["bytes_transferred"].as_u64().unwrap())
        .sum()
}

fn part_of(dest: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", dest.display()))
}

#[test]
fn cut_connections_are_resumed_from_the_bytes_on_disk() {
    let body = data(4 * MB as usize, 1);
    let srv = Server::start(
        Content::bytes(body.clone()),
        vec![Fault::Cut(MB), Fault::Cut(3 * MB / 2)],
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("vm-disk1.vmdk");
    let want = sha(&body);
    let run = download(
        &srv.url("/images/vm-disk1.vmdk"),
        &dest,
        &["-n", "5", "--checksum", &format!("sha256:{want}")],
    );
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), want);
    assert!(!part_of(&dest).exists());

    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].range, None);
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(reqs[2].range.as_deref(), Some("bytes=2500000-"));
    assert_eq!(reqs[1].if_range.as_deref(), Some(srv.etag().as_str()));
    assert_eq!(reqs[1].status, 206);
    assert_eq!(
        reqs[1].headers.get("accept-encoding").map(String::as_str),
        Some("identity")
    );

    // Resuming works: what crossed the wire stays close to the file size.
    let size = body.len() as u64;
    assert!(
        srv.bytes_sent() <= size + size / 100,
        "{}",
        srv.bytes_sent()
    );
    assert_eq!(transferred(&run.result), size);
    let a = attempts(&run.result);
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["error_type"], "connection_error", "{}", a[0]);
    assert_eq!(a[1]["download"]["resumed_from"], 1_000_000);
    assert_eq!(a[1]["download"]["http_status"], 206);
    assert_eq!(a[2]["download"]["resumed_from"], 2_500_000);
    assert_eq!(run.result["changed"], true);
    assert_eq!(run.result["sha256"], want);
    assert_eq!(run.result["retry"]["download"]["resumed"], true);

    // The seed's log lines.
    assert!(
        run.log
            .contains("DEBUG: resuming download | file=vm-disk1.vmdk, resumeFrom=1000000"),
        "{}",
        run.log
    );
    assert!(
        run.log
            .contains("INFO: retrying file download | file=vm-disk1.vmdk, attempt=2")
    );
    assert!(run.log.contains(
        "WARN: operation failed, retrying | operation=download vm-disk1.vmdk, attempt=1"
    ));
    assert!(
        run.log.contains(
            "operation succeeded after retry | operation=download vm-disk1.vmdk, attempt=3"
        )
    );
}

#[test]
fn a_server_that_ignores_range_makes_it_start_again_from_zero() {
    let body = data(3 * MB as usize, 2);
    let srv = Server::start(
        Content::bytes(body.clone()),
        vec![Fault::Cut(MB), Fault::IgnoreRange],
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let run = download(&srv.url("/f.bin"), &dest, &["-n", "3"]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    let reqs = srv.requests();
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(reqs[1].status, 200);
    let a = attempts(&run.result);
    assert_eq!(a[1]["download"]["restarted"], true);
    assert_eq!(transferred(&run.result), body.len() as u64 + MB);
    assert!(
        run.log
            .contains("reason=the server ignored the range request"),
        "{}",
        run.log
    );
}

#[test]
fn a_file_that_changed_on_the_server_is_fetched_again_through_if_range() {
    let v1 = data(2 * MB as usize, 3);
    let v2 = data(2 * MB as usize + 17, 4);
    let srv = Server::start(
        Content::bytes(v1),
        vec![Fault::Cut(MB), Fault::Replace(Content::bytes(v2.clone()))],
        0,
    )
    .unwrap();
    let first_etag = srv.etag();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let run = download(&srv.url("/f.bin"), &dest, &["-n", "3"]);
    assert_eq!(run.code, 0, "{}", run.log);
    // Not a splice of the old and the new file: the new one, whole.
    assert_eq!(sha_file(&dest), sha(&v2));
    let reqs = srv.requests();
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(reqs[1].if_range.as_deref(), Some(first_etag.as_str()));
    assert_eq!(reqs[1].status, 200);
    assert!(
        run.log.contains("reason=the file changed on the server"),
        "{}",
        run.log
    );
}

#[test]
fn retry_after_on_503_and_429_sets_the_wait() {
    let body = data(10_000, 6);
    let srv = Server::start(
        Content::bytes(body.clone()),
        vec![Fault::RetryAfter(503, 1), Fault::RetryAfter(429, 0)],
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let started = std::time::Instant::now();
    // The policy alone would wait 20 s, then 40 s.
    let out = retryx(&[
        "download",
        &srv.url("/f.bin"),
        "-o",
        dest.to_str().unwrap(),
        "-n",
        "3",
        "-d",
        "20s",
        "-j",
        "none",
        "--result-json",
        "-",
    ]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{log}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = attempts(&result);
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["delay_before_retry"], 1.0, "{}", a[0]);
    assert_eq!(a[1]["delay_before_retry"], 0.0, "{}", a[1]);
    assert_eq!(sha_file(&dest), sha(&body));
    assert!(started.elapsed().as_secs() < 15, "{:?}", started.elapsed());
}

#[test]
fn service_unavailable_is_retried_then_succeeds() {
    let body = data(100_000, 5);
    let srv = Server::start(
        Content::bytes(body.clone()),
        vec![Fault::Status(503), Fault::Status(429)],
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let run = download(&srv.url("/f.bin"), &dest, &["-n", "4"]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    let a = attempts(&run.result);
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["error_type"], "service_unavailable");
    assert_eq!(a[0]["error_message"], "HTTP 503 Service Unavailable");
    assert_eq!(a[0]["download"]["http_status"], 503);
    assert_eq!(a[1]["error_type"], "rate_limit_exceeded");
    assert!(
        run.log.contains("error=HTTP 503 Service Unavailable"),
        "{}",
        run.log
    );
}

#[test]
fn not_found_and_forbidden_fail_at_once() {
    for (status, class) in [
        (404, "resource_not_found"),
        (403, "authorization_error"),
        (410, "invalid_parameter"),
    ] {
        let srv = Server::start(
            Content::bytes(data(1000, 6)),
            vec![Fault::Status(status); 5],
            0,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        let run = download(&srv.url("/f.bin"), &dest, &["-n", "5"]);
        assert_eq!(run.code, 1, "{}", run.log);
        assert_eq!(srv.requests().len(), 1, "{status}");
        assert_eq!(run.result["failed"], true);
        assert_eq!(run.result["retry"]["final_error_type"], class, "{status}");
        assert!(
            run.result["retry"]["stop_reason"]
                .as_str()
                .unwrap()
                .starts_with("not retryable")
        );
        assert!(!dest.exists() && !part_of(&dest).exists());
    }
}

#[test]
fn the_checksum_is_verified_and_a_matching_dest_means_nothing_to_do() {
    let body = data(500_000, 7);
    let want = sha(&body);
    let srv = Server::start(Content::bytes(body.clone()), vec![], 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");

    let wrong = format!("sha256:{}", "0".repeat(64));
    let run = download(
        &srv.url("/f.bin"),
        &dest,
        &["-n", "3", "--checksum", &wrong],
    );
    assert_eq!(run.code, 1);
    // A wrong checksum is not fixed by fetching the file again.
    assert_eq!(srv.requests().len(), 1);
    assert_eq!(run.result["retry"]["final_error_type"], "invalid_parameter");
    assert!(
        run.result["msg"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{}",
        run.result
    );
    assert!(!dest.exists() && !part_of(&dest).exists());

    let good = format!("sha256:{want}");
    let run = download(&srv.url("/f.bin"), &dest, &["--checksum", &good]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(run.result["changed"], true);
    let before = srv.requests().len();

    let run = download(&srv.url("/f.bin"), &dest, &["--checksum", &good]);
    assert_eq!(run.code, 0);
    assert_eq!(run.result["changed"], false);
    assert_eq!(run.result["retry"]["status"], "skipped");
    assert_eq!(
        srv.requests().len(),
        before,
        "no request when dest already matches"
    );

    // force fetches again, and the same bytes are no change.
    let run = download(&srv.url("/f.bin"), &dest, &["--checksum", &good, "--force"]);
    assert_eq!(run.code, 0);
    assert_eq!(srv.requests().len(), before + 1);
    assert_eq!(run.result["changed"], false);
}

#[test]
fn header_values_reach_the_server_and_never_the_logs_or_the_result() {
    let secret = "s3cr3t-t0ken-value";
    let srv = Server::start(
        Content::bytes(data(200_000, 8)),
        vec![Fault::Cut(50_000), Fault::Status(401)],
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let auth = format!("Authorization: Bearer {secret}");
    let run = download(
        &srv.url(&format!("/f.bin?token={secret}")),
        &dest,
        &["-n", "3", "-H", &auth, "-vv"],
    );
    assert_eq!(run.code, 1);
    let reqs = srv.requests();
    assert_eq!(
        reqs[1].headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {secret}").as_str())
    );
    assert_eq!(
        run.result["retry"]["final_error_type"],
        "authentication_error"
    );
    let everything = format!("{}{}", run.log, run.result);
    assert!(!everything.contains(secret), "{everything}");
}

#[test]
fn a_stalled_transfer_times_out_and_resumes() {
    let body = data(2 * MB as usize, 9);
    let srv = Server::start(Content::bytes(body.clone()), vec![Fault::Stall(700_000)], 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let run = download(&srv.url("/f.bin"), &dest, &["-n", "3", "-t", "1s"]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    let a = attempts(&run.result);
    assert_eq!(a[0]["error_type"], "timeout");
    assert_eq!(a[0]["timed_out"], true);
    assert_eq!(srv.requests()[1].range.as_deref(), Some("bytes=700000-"));
}

#[test]
fn the_module_downloads_with_resume_and_is_idempotent() {
    let body = data(1_500_000, 10);
    let want = sha(&body);
    let srv = Server::start(Content::bytes(body.clone()), vec![Fault::Cut(600_000)], 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("disk.img");
    let args = serde_json::json!({
        "action": "download",
        "url": srv.url("/disk.img"),
        "dest": dest,
        "checksum": format!("sha256:{want}"),
        "headers": {"X-Api-Key": "k3y-not-for-logs"},
        "max_attempts": 3,
        "base_delay": "10ms",
        "jitter_enabled": false,
        "debug_mode": true,
        "_ansible_check_mode": false,
    });
    let args_file = dir.path().join("args.json");
    std::fs::write(&args_file, args.to_string()).unwrap();
    let run_module = || {
        let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
            .arg(&args_file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains("k3y-not-for-logs"));
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let r = run_module();
    assert_eq!(r["failed"], false, "{r}");
    assert_eq!(r["changed"], true);
    assert_eq!(r["sha256"], want);
    assert_eq!(r["retry"]["operation"], "download disk.img");
    assert_eq!(r["retry"]["attempt_count"], 2);
    assert_eq!(
        r["retry"]["attempts"][1]["download"]["resumed_from"],
        600_000
    );
    let log: Vec<String> = serde_json::from_value(r["retry"]["log"].clone()).unwrap();
    assert!(
        log.iter()
            .any(|l| l.contains("resuming download | file=disk.img, resumeFrom=600000")),
        "{log:?}"
    );
    assert_eq!(srv.requests()[1].range.as_deref(), Some("bytes=600000-"));
    assert_eq!(sha_file(&dest), want);

    let r = run_module();
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn bad_download_keys_are_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x");
    for (url, extra, key) in [
        ("ftp://example.com/x", vec![], "'url'"),
        (
            "http://127.0.0.1:9/x",
            vec!["--checksum", "md5:abc"],
            "'checksum'",
        ),
        (
            "http://127.0.0.1:9/x",
            vec!["-H", "Range: bytes=0-"],
            "'headers'",
        ),
    ] {
        let mut args = vec![
            "download",
            url,
            "-o",
            dest.to_str().unwrap(),
            "--result-json",
            "-",
        ];
        args.extend(extra);
        let out = retryx(&args);
        assert_eq!(out.status.code(), Some(125));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(r["msg"].as_str().unwrap().contains(key), "{r}");
    }
}

#[test]
fn a_stop_signal_ends_a_stalled_download_at_once() {
    let srv = Server::start(
        Content::bytes(data(MB as usize, 11)),
        vec![Fault::Stall(100_000)],
        0,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    // The 30s timeout is only a safety net: if the signal were ignored the attempt would end
    // by timeout (exit 124), not 143.
    let child = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["download", &srv.url("/f.bin"), "-o", dest.to_str().unwrap()])
        .args(["-n", "3", "-t", "30s", "--result-json", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the stalled response has sent its bytes (a condition, not a duration).
    while srv.requests().first().is_none_or(|r| r.body_sent < 100_000) {
        std::thread::yield_now();
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["retry"]["status"], "aborted");
    assert_eq!(r["retry"]["attempt_count"], 1);
    assert_eq!(srv.requests().len(), 1);
    // Whatever reached the disk before the signal (the socket may still hold it all) is kept
    // for the next run with its validator beside it, both 0600; an empty part is not kept.
    assert!(!dest.exists());
    if part_of(&dest).exists() {
        assert_eq!(mode(&part_of(&dest)), 0o600);
        assert_eq!(mode(&resume_of(&dest)), 0o600);
    } else {
        assert!(!resume_of(&dest).exists());
    }
}

fn resume_of(dest: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part.resume", dest.display()))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_part_left_by_a_failed_run_is_resumed_by_the_next_run_with_if_range() {
    let body = data(3 * MB as usize, 21);
    let want = format!("sha256:{}", sha(&body));
    let srv = Server::start(Content::bytes(body.clone()), vec![Fault::Cut(MB)], 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");

    // First run: served only the first 1,000,000 bytes, no attempts left.
    let run = download(&srv.url("/f.bin"), &dest, &["-n", "1", "--checksum", &want]);
    assert_ne!(run.code, 0, "{}", run.log);
    assert_eq!(std::fs::metadata(part_of(&dest)).unwrap().len(), MB);
    assert_eq!(mode(&part_of(&dest)), 0o600);
    assert_eq!(mode(&resume_of(&dest)), 0o600);
    let side = std::fs::read_to_string(resume_of(&dest)).unwrap();
    assert!(side.contains(&srv.etag().replace('"', "\\\"")), "{side}");
    assert!(
        !side.contains("f.bin"),
        "the sidecar keeps only a hash of the URL: {side}"
    );

    // Second run: only the rest crosses the wire, as a 206 to Range + If-Range.
    srv.reset(vec![]);
    let run = download(&srv.url("/f.bin"), &dest, &["--checksum", &want]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    let req = &srv.requests()[0];
    assert_eq!(req.range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(req.if_range.as_deref(), Some(srv.etag().as_str()));
    assert_eq!(req.status, 206);
    assert_eq!(srv.bytes_sent(), 2 * MB);
    assert_eq!(transferred(&run.result), 2 * MB);
    assert!(!part_of(&dest).exists() && !resume_of(&dest).exists());

    // Without a checksum the sidecar alone vouches for the part.
    std::fs::remove_file(&dest).unwrap();
    srv.reset(vec![Fault::Cut(MB)]);
    let run = download(&srv.url("/f.bin"), &dest, &["-n", "1"]);
    assert_ne!(run.code, 0, "{}", run.log);
    srv.reset(vec![]);
    let run = download(&srv.url("/f.bin"), &dest, &[]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    assert_eq!(srv.requests()[0].status, 206);
    assert_eq!(srv.bytes_sent(), 2 * MB);

    // The file changed on the server between the runs: If-Range no longer matches, the 200
    // restarts from zero and the new file's checksum is verified on the whole file.
    std::fs::remove_file(&dest).unwrap();
    srv.reset(vec![Fault::Cut(MB)]);
    let run = download(&srv.url("/f.bin"), &dest, &["-n", "1"]);
    assert_ne!(run.code, 0, "{}", run.log);
    let new_body = data(3 * MB as usize, 22);
    srv.reset(vec![Fault::Replace(Content::bytes(new_body.clone()))]);
    let new_want = format!("sha256:{}", sha(&new_body));
    let run = download(&srv.url("/f.bin"), &dest, &["--checksum", &new_want]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&new_body));
    let req = &srv.requests()[0];
    assert_eq!(req.range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(req.status, 200);
    assert_eq!(srv.bytes_sent(), 3 * MB);
    assert!(
        attempts(&run.result)[0]["download"]["restarted"]
            .as_bool()
            .unwrap_or(false),
        "{}",
        run.result
    );

    // A sidecar for another URL is not trusted: the part starts from zero.
    std::fs::remove_file(&dest).unwrap();
    srv.reset(vec![Fault::Cut(MB)]);
    let _ = download(&srv.url("/f.bin"), &dest, &["-n", "1"]);
    srv.reset(vec![]);
    let run = download(&srv.url("/other/f.bin"), &dest, &[]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(srv.requests()[0].range, None);
    assert_eq!(srv.bytes_sent(), 3 * MB);
}

#[test]
fn a_part_left_by_an_earlier_run_is_resumed_when_a_checksum_vouches_for_it() {
    let body = data(3 * MB as usize, 12);
    let want = format!("sha256:{}", sha(&body));
    let srv = Server::start(Content::bytes(body.clone()), vec![], 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");

    // The first MB of the right file: resumed, only the rest crosses the wire.
    std::fs::write(part_of(&dest), &body[..MB as usize]).unwrap();
    let run = download(&srv.url("/f.bin"), &dest, &["--checksum", &want]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    assert_eq!(srv.requests()[0].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(srv.bytes_sent(), 2 * MB);

    // A part of some other file: the checksum catches the splice, the next attempt starts over.
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(part_of(&dest), data(MB as usize, 99)).unwrap();
    srv.reset(vec![]);
    let run = download(&srv.url("/f.bin"), &dest, &["--checksum", &want, "-n", "2"]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    let a = attempts(&run.result);
    assert!(
        a[0]["error_message"]
            .as_str()
            .unwrap()
            .starts_with("checksum mismatch"),
        "{}",
        a[0]
    );
    assert_eq!(srv.requests()[1].range, None);

    // Without a checksum an old part is never trusted.
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(part_of(&dest), data(MB as usize, 98)).unwrap();
    srv.reset(vec![]);
    let run = download(&srv.url("/f.bin"), &dest, &[]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert_eq!(sha_file(&dest), sha(&body));
    assert_eq!(srv.requests()[0].range, None);
}

/// Accepts one HTTP request, answers 204 and hands back its body.
fn one_post_receiver() -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, len) = loop {
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "the receiver's client hung up");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                break (i + 4, len);
            }
        };
        while buf.len() < head_end + len {
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&buf[head_end..]).into_owned()
    });
    (url, handle)
}

#[test]
fn a_download_is_notified_like_any_operation() {
    let srv = Server::start(
        Content::bytes(data(300_000, 13)),
        vec![Fault::Cut(100_000)],
        0,
    )
    .unwrap();
    let (hook, received) = one_post_receiver();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let systems = serde_json::json!({"external_systems": [
        {"name": "hook", "type": "webhook", "url": hook, "notify_on": ["success", "failure"], "retry_count": 0}
    ]});
    std::fs::write(&config, systems.to_string()).unwrap();
    let dest = dir.path().join("f.bin");
    let run = download(
        &srv.url("/f.bin"),
        &dest,
        &["-n", "3", "-c", config.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.log);
    let body = received.join().unwrap();
    assert!(body.contains("download f.bin"), "{body}");
    // The webhook carries the record, per-attempt download facts included.
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sent["attempts"][1]["download"]["resumed_from"], 100_000,
        "{body}"
    );
    assert_eq!(
        sent["attempts"][1]["download"]["bytes_transferred"],
        200_000
    );
    let notes = run.result["retry"]["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{}", run.result["retry"]["notifications"]);
    assert_eq!(notes[0]["system"], "hook");
}

/// A server that answers every request with `206` and a `Content-Range` that echoes the request
/// (its target plain and percent-decoded, every header value plain, base64-decoded and
/// base64-encoded): the download quotes that header in its failure text. Hands back what it was
/// sent.
fn echoing_range_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Ok(read) = conn.try_clone() else { continue };
            let mut reader = BufReader::new(read);
            let mut lines = Vec::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l.trim_end().is_empty() {
                    break;
                }
                lines.push(l.trim_end().to_string());
            }
            log.lock().unwrap().push(lines.join(" | "));
            let target = lines
                .first()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or("")
                .to_string();
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut echo = vec![target.clone(), percent_decode(&target)];
            for l in lines.iter().skip(1) {
                let Some((k, v)) = l.split_once(':') else {
                    continue;
                };
                if ["host", "user-agent", "accept", "accept-encoding"]
                    .contains(&k.trim().to_ascii_lowercase().as_str())
                {
                    continue;
                }
                for word in v.split_whitespace() {
                    echo.push(word.to_string());
                    echo.push(b64.encode(word));
                    if let Some(plain) = b64
                        .decode(word)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                    {
                        echo.push(plain);
                    }
                }
            }
            let reply = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/1 {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
                echo.join(" ")
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (port, seen)
}

fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match text.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
            Some(Ok(v)) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A secret in the forms it travels in: plain, base64 (standard and url-safe, padded or not),
/// percent-encoded with upper- and lower-case hex.
fn secret_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let encoded = |lower: bool| -> String {
        secret
            .bytes()
            .map(|b| match b {
                b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => char::from(b).to_string(),
                b if lower => format!("%{b:02x}"),
                b => format!("%{b:02X}"),
            })
            .collect()
    };
    vec![
        secret.to_string(),
        STANDARD.encode(secret),
        URL_SAFE.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        encoded(false),
        encoded(true),
    ]
}

#[test]
fn a_download_url_and_its_headers_never_show_their_secrets_even_to_an_echoing_server() {
    let (port, seen) = echoing_range_server();
    let password = "pw/Zk81q0Xy!";
    let path_token = "PtK93jdL2mQ7";
    let header = "Hv77aa1ZZqR0";
    let bearer = "Br44kkW9xYz1";
    let dir = tempfile::tempdir().unwrap();
    let arts = dir.path().join("arts");
    let urls = [
        // user info (the password percent-encoded) and a token in the path
        format!("http://ops:pw%2FZk81q0Xy%21@127.0.0.1:{port}/dl/{path_token}/file.bin"),
        // a token in the path alone
        format!("http://127.0.0.1:{port}/dl/{path_token}/file.bin"),
    ];
    let mut leaks = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let dest = dir.path().join(format!("file{i}.bin"));
        let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
            .args(["download", url, "-o"])
            .arg(&dest)
            .args(["-n", "2", "-d", "10ms", "-j", "none", "-vv"])
            .args(["-H", &format!("X-Token: {header}")])
            .args(["-H", &format!("Authorization: Bearer {bearer}")])
            .arg("--artifacts-dir")
            .arg(&arts)
            .args(["--result-json", "-"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let result: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("result is not JSON ({e}); stderr:\n{stderr}"));
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        // The echo came back and was quoted in the failure (masked).
        let error = attempts(&result)[0]["error_message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            error.contains("unexpected Content-Range") && error.contains("***"),
            "the echo did not reach the failure text: {result}"
        );
        assert_eq!(
            result["cmd"]
                .as_str()
                .map(|c| c.starts_with(&format!("download http://127.0.0.1:{port} -> "))),
            Some(true),
            "{result}"
        );
        let mut places = vec![
            (
                "stdout".to_string(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ),
            ("stderr".to_string(), stderr),
        ];
        for f in walk(&arts) {
            places.push((
                f.display().to_string(),
                std::fs::read_to_string(&f).unwrap_or_default(),
            ));
        }
        let mut secrets = vec![
            ("path token", path_token.to_string()),
            ("header", header.to_string()),
            ("bearer", bearer.to_string()),
        ];
        if i == 0 {
            secrets.push(("password", password.to_string()));
            secrets.push(("user info", format!("ops:{password}")));
        }
        for (what, secret) in &secrets {
            for form in secret_forms(secret) {
                for (place, text) in &places {
                    if text.contains(&form) {
                        leaks.push(format!("url {i}: {what} as {form:?} in {place}"));
                    }
                }
            }
        }
    }
    // The secrets really went out.
    let sent = seen.lock().unwrap().join("\n");
    for s in [path_token, header, bearer] {
        assert!(sent.contains(s), "the server never saw {s:?}: {sent}");
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
