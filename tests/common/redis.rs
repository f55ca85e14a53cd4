//! A real `redis-server` for tests: started on 127.0.0.1 on a free port with persistence off
//! (`--save '' --appendonly no`), optionally with a password and a TLS port (a throwaway CA and
//! server certificate made by `openssl`), stopped by its pid when dropped. When redis-server is
//! missing the test is skipped, unless `RETRYX_REQUIRE_REDIS=1` (set by `make test`): then it
//! fails.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub tls_port: Option<u16>,
    pub password: Option<String>,
    /// The CA that signed the TLS certificate (trust it with `--state-backend-ca`).
    pub ca: Option<PathBuf>,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whether redis-server can be run here; panics when it is required and missing.
pub fn available() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("RETRYX_REQUIRE_REDIS").is_none(),
            "redis-server is required (RETRYX_REQUIRE_REDIS is set) but cannot be run: apt-get install redis-server"
        );
        eprintln!(
            "skipped: redis-server not installed (set RETRYX_REQUIRE_REDIS=1 to fail instead)"
        );
    }
    ok
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it (webpki refuses a CA certificate
/// used as the server's own).
fn make_certs(dir: &Path) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=retryx test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    dir.join("ca.pem")
}

impl Redis {
    /// A plain server; `None` when redis-server is missing and not required.
    pub fn start(password: Option<&str>) -> Option<Redis> {
        Self::launch(password, false)
    }

    /// A server listening with TLS only (and a plain port for the test's own checks).
    pub fn start_tls(password: Option<&str>) -> Option<Redis> {
        Self::launch(password, true)
    }

    fn launch(password: Option<&str>, tls: bool) -> Option<Redis> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(dir.path())
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = password {
            cmd.args(["--requirepass", pw]);
        }
        let (tls_port, ca) = if tls {
            let ca = make_certs(dir.path());
            let p = free_port();
            cmd.args(["--tls-port", &p.to_string()])
                .args([
                    "--tls-cert-file",
                    "server.pem",
                    "--tls-key-file",
                    "server.key",
                ])
                .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"]);
            (Some(p), Some(ca))
        } else {
            (None, None)
        };
        let child = cmd.spawn().expect("redis-server");
        let r = Redis {
            child: Some(child),
            port,
            tls_port,
            password: password.map(String::from),
            ca,
            dir,
        };
        r.wait_ready();
        Some(r)
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.cli(&["PING"]).contains("PONG")
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `redis://[:password@]127.0.0.1:port/db`
    pub fn url(&self, db: u32) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }

    pub fn tls_url(&self, db: u32) -> String {
        let port = self.tls_port.expect("a TLS server");
        match &self.password {
            Some(pw) => format!("rediss://:{pw}@127.0.0.1:{port}/{db}"),
            None => format!("rediss://127.0.0.1:{port}/{db}"),
        }
    }

    /// Runs one command with redis-cli on the plain port; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(pw) = &self.password {
            c.args(["--no-auth-warning", "-a", pw]);
        }
        let out = c
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILL by pid, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
