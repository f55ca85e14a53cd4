//! Network-aware waiting, for real: a network namespace of our own with a veth pair, the link
//! taken down, a retryx (inside the namespace) whose command fails while it is down, the link
//! brought up after 2 s; retryx must resume within 250 ms of link-up, woken by rtnetlink.
//! retryx enters the namespace with `nsenter --net` (when there is one), which leaves /sys as the
//! host's: only link state read through netlink can see `rxa` at all.
//! Needs root and `ip netns`. Where namespaces are not permitted the test says so on stderr and
//! skips; set RETRYX_REQUIRE_NETNS=1 to make that a failure instead. It never touches the
//! host's own interfaces, and the namespace (with its veths) is deleted whatever happens.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes the namespace, or says why it cannot (then the test skips, loudly).
fn setup(name: &str) -> Result<Netns, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root".into());
    }
    ip(&["netns", "add", name])?;
    let ns = Netns(name.to_string());
    ip(&[
        "link", "add", "rxa", "netns", name, "type", "veth", "peer", "name", "rxb", "netns", name,
    ])?;
    ip(&["-n", name, "link", "set", "rxb", "up"])?;
    ip(&["-n", name, "link", "set", "rxa", "down"])?;
    Ok(ns)
}

fn skip_or_fail(why: &str) {
    let msg = format!(
        "SKIPPED guards_netns: network namespaces are not available here ({why}); \
         the real link-up test did not run"
    );
    if std::env::var("RETRYX_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("{msg} and RETRYX_REQUIRE_NETNS=1");
    }
    eprintln!("{msg}");
}

fn epoch_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn retryx_resumes_within_250ms_of_link_up() {
    let name = format!("retryx-test-{}", std::process::id());
    let ns = match setup(&name) {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("cfg.json");
    std::fs::write(
        &cfg,
        json!({"wait_for_network": true, "required_interfaces": ["rxa"], "max_network_wait": "60s", "jitter": "none"})
            .to_string(),
    )
    .unwrap();
    let started_at = d.path().join("attempt_started");
    let result = d.path().join("result.json");
    let stderr_path = d.path().join("stderr");
    // The first thing each attempt does is note the time; it succeeds only with rxa up.
    let script = format!(
        "date +%s%N >> {t}; if ip link show rxa | grep -q 'state UP'; then exit 0; fi; \
         echo 'connect: Network is unreachable' >&2; exit 1",
        t = started_at.display()
    );
    let ns_file = ["/run/netns", "/var/run/netns"]
        .iter()
        .map(|d| Path::new(d).join(&name))
        .find(|p| p.exists());
    let mut enter = match (&ns_file, Path::new("/usr/bin/nsenter").exists()) {
        (Some(f), true) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", f.display()));
            c
        }
        _ => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &name]);
            c
        }
    };
    let mut child = enter
        .arg(env!("CARGO_BIN_EXE_retryx"))
        .arg("-c")
        .arg(&cfg)
        .arg("--result-json")
        .arg(&result)
        // A minute of backoff: only the network wait can make the retry come early.
        .args([
            "-n", "3", "-d", "60s", "-M", "60s", "--", "sh", "-c", &script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_for(
        "retryx to start waiting for the network",
        Duration::from_secs(60),
        || read(&stderr_path).contains("network is down, waiting for network to recover"),
    );
    std::thread::sleep(Duration::from_secs(2)); // the outage the issue asks for
    ip(&["-n", &name, "link", "set", "rxa", "up"]).unwrap();
    let link_up = epoch_ns();
    wait_for("retryx to finish", Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let code = child.wait().unwrap().code();
    let err = read(&stderr_path);
    assert_eq!(code, Some(0), "{err}");
    let starts: Vec<i128> = read(&started_at)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // Seed 004 checks the network before connecting: the first attempt itself waited for rxa.
    assert_eq!(starts.len(), 1, "{starts:?}\n{err}");
    let resumed_ms = (starts[0] - link_up) as f64 / 1e6;
    eprintln!(
        "guards_netns: attempt 1 started {resumed_ms:.1} ms after `ip link set rxa up` returned"
    );
    assert!(
        resumed_ms < 250.0,
        "resumed {resumed_ms:.1} ms after link-up\n{err}"
    );
    assert!(
        err.contains("INFO: network recovered, retrying operation | operation=command, attempt=1"),
        "{err}"
    );
    let r: Value = serde_json::from_str(&read(&result)).unwrap();
    let wait = &r["retry"]["guards"]["network"]["waits"][0];
    assert_eq!(wait["recovered"], true, "{r}");
    assert_eq!(wait["watch"], "netlink", "{r}");
    assert!(wait["waited"].as_f64().unwrap() >= 1.9, "{wait}");
    assert_eq!(r["retry"]["attempt_count"], 1);
    drop(ns);
    assert!(
        !Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&name))
            .unwrap_or(false),
        "namespace left behind"
    );
}
