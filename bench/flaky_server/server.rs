//! A small HTTP/1.1 server for the tests and the benchmark of `retryx download`: one content
//! (bytes in memory or a file on disk) served at every path with Range, If-Range, ETag and
//! Last-Modified, and a script of faults, one per request in order (cut the connection after N
//! body bytes, stall, ignore Range, answer a status, replace the content). It counts the body
//! bytes it sends. It must not be used outside tests and benchmarks: it binds 127.0.0.1 only,
//! answers one request per connection and parses only what those clients send.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server serves.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Arc<Vec<u8>>),
    File { path: PathBuf, len: u64 },
}

impl Content {
    pub fn bytes(b: Vec<u8>) -> Content {
        Content::Bytes(Arc::new(b))
    }

    pub fn file(path: PathBuf) -> std::io::Result<Content> {
        let len = std::fs::metadata(&path)?.len();
        Ok(Content::File { path, len })
    }

    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File { len, .. } => *len,
        }
    }
}

/// What to do with one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Serve normally.
    None,
    /// Send the head and this many body bytes, then close the connection.
    Cut(u64),
    /// Send the head and this many body bytes, then send nothing more until the server stops.
    Stall(u64),
    /// Answer 200 with the whole content, whatever Range asked.
    IgnoreRange,
    /// Answer this status with a short text body.
    Status(u16),
    /// Answer this status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Replace the content (a new version: new ETag and Last-Modified), then serve normally.
    Replace(Content),
}

/// One request as the server saw it.
#[derive(Clone, Debug, Default)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub headers: HashMap<String, String>,
    pub status: u16,
    /// Body bytes written to the socket.
    pub body_sent: u64,
}

struct State {
    content: Content,
    version: u32,
    script: Vec<Fault>,
    requests: Vec<Logged>,
}

impl State {
    fn etag(&self) -> String {
        format!("\"v{}-{}\"", self.version, self.content.len())
    }
    fn last_modified(&self) -> String {
        format!("Mon, 0{} Jan 2024 00:00:00 GMT", self.version.min(9))
    }
}

pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    /// Starts on 127.0.0.1 (`port` 0 picks a free one).
    pub fn start(content: Content, script: Vec<Fault>, port: u16) -> std::io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            content,
            version: 1,
            script,
            requests: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, sp) = (st.clone(), sp.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &st, &sp);
                });
            }
        });
        Ok(Server { addr, state, stop })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.state).requests.clone()
    }

    /// Body bytes sent over all requests.
    pub fn bytes_sent(&self) -> u64 {
        lock(&self.state).requests.iter().map(|r| r.body_sent).sum()
    }

    pub fn etag(&self) -> String {
        lock(&self.state).etag()
    }

    /// Forgets the requests and arms a new script.
    pub fn reset(&self, script: Vec<Fault>) {
        let mut s = lock(&self.state);
        s.requests.clear();
        s.script = script;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_head(conn: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut byte)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// `bytes=N-` or `bytes=N-M`.
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start, end))
}

fn serve(mut conn: TcpStream, state: &Mutex<State>, stop: &AtomicBool) -> std::io::Result<()> {
    let head = read_head(&mut conn)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if path == "/__stats" {
        let s = lock(state);
        let sent: u64 = s.requests.iter().map(|r| r.body_sent).sum();
        let body = format!(
            "{{\"requests\": {}, \"bytes_sent\": {sent}}}\n",
            s.requests.len()
        );
        drop(s);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return Ok(());
    }
    let (idx, fault, content, etag, last_modified) = {
        let mut s = lock(state);
        let idx = s.requests.len();
        let fault = s.script.get(idx).cloned().unwrap_or(Fault::None);
        if let Fault::Replace(c) = &fault {
            s.content = c.clone();
            s.version += 1;
        }
        s.requests.push(Logged {
            path: path.clone(),
            range: headers.get("range").cloned(),
            if_range: headers.get("if-range").cloned(),
            headers: headers.clone(),
            status: 0,
            body_sent: 0,
        });
        (idx, fault, s.content.clone(), s.etag(), s.last_modified())
    };
    let set_status = |status: u16| lock(state).requests[idx].status = status;
    // A path under /missing answers 404 whatever the script says.
    let fault = if path.starts_with("/missing") {
        Fault::Status(404)
    } else {
        fault
    };
    let status = match fault {
        Fault::Status(code) => Some((code, 0)),
        Fault::RetryAfter(code, secs) => Some((code, secs)),
        _ => None,
    };
    if let Some((code, secs)) = status {
        set_status(code);
        let body = format!("status {code}\n");
        let extra = if code == 429 || code == 503 {
            format!("Retry-After: {secs}\r\n")
        } else {
            String::new()
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {code} {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            reason(code),
            body.len()
        );
        return Ok(());
    }
    let len = content.len();
    let validator_ok = match headers.get("if-range") {
        Some(v) => *v == etag || *v == last_modified,
        None => true,
    };
    let range = headers
        .get("range")
        .and_then(|r| parse_range(r))
        .filter(|_| validator_ok && !matches!(fault, Fault::IgnoreRange));
    let common = format!(
        "ETag: {etag}\r\nLast-Modified: {last_modified}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n"
    );
    let (status, start, end) = match range {
        Some((s, _)) if s >= len => {
            set_status(416);
            let _ = write!(
                conn,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n{common}\r\n"
            );
            return Ok(());
        }
        Some((s, e)) => (206, s, e.map_or(len, |e| (e + 1).min(len))),
        None => (200, 0, len),
    };
    set_status(status);
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n{common}",
        reason(status),
        end - start
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end - 1
        ));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    let limit = match fault {
        Fault::Cut(n) | Fault::Stall(n) => n.min(end - start),
        _ => end - start,
    };
    let file = match &content {
        Content::File { path, .. } => Some(std::fs::File::open(path)?),
        Content::Bytes(_) => None,
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = start;
    while pos < start + limit {
        let want = ((start + limit - pos) as usize).min(buf.len());
        let n = match (&content, &file) {
            (Content::Bytes(b), _) => {
                buf[..want].copy_from_slice(&b[pos as usize..pos as usize + want]);
                want
            }
            (_, Some(f)) => f.read_at(&mut buf[..want], pos)?,
            _ => 0,
        };
        if n == 0 {
            break;
        }
        conn.write_all(&buf[..n])?;
        pos += n as u64;
        lock(state).requests[idx].body_sent += n as u64;
    }
    if let Fault::Stall(_) = fault {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
    Ok(())
}
