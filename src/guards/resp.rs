//! A small RESP2 client for the Redis state backend: one blocking connection (TCP, or TLS
//! through rustls for `rediss://`), AUTH and SELECT on connect, commands sent as arrays of bulk
//! strings, replies read with bounded connect and read timeouts. It knows nothing of guards,
//! and no error or `Display` it produces ever holds the URL's password.
//!
//! Why not the `redis` crate: retryx needs a handful of commands (GET, TIME, EVAL, ZREM, PING)
//! on a blocking socket with hard timeouts; rustls and webpki-roots are already in the binary
//! (ureq), so this client adds only its own ~20 KB of code, where the crate brings its own URL
//! parser, connection manager and protocol combinators.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Largest bulk reply accepted (guard documents are small; a bigger one is a wrong server).
const MAX_BULK: usize = 16 * 1024 * 1024;
const MAX_ARRAY: usize = 1 << 20;
const MAX_DEPTH: usize = 8;

/// `redis://[user:password@]host:port/db` or `rediss://...`, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: u32,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a '%' not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding that is not UTF-8".to_string())
}

impl RedisUrl {
    /// Parses a URL; errors never quote the password.
    pub(crate) fn parse(text: &str) -> Result<RedisUrl, String> {
        let (tls, rest) = if let Some(r) = text.strip_prefix("rediss://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("redis://") {
            (false, r)
        } else {
            return Err(
                "expected `file`, redis://[user:password@]host:port/db or rediss://...".into(),
            );
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (
                    Some(percent_decode(name)?).filter(|n| !n.is_empty()),
                    Some(percent_decode(pw).map_err(|_| "the password is not well encoded")?),
                ),
                None => (Some(percent_decode(u)?).filter(|n| !n.is_empty()), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("an IPv6 host without its ']'")?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("expected a host in the URL".into());
        }
        let port = match port {
            None | Some("") => 6379,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                // Not echoed: with an unencoded '/' in a password, what stands here is part of it.
                _ => return Err("expected a port 1-65535 after the host".into()),
            },
        };
        let db_text = path.split(['?', '#']).next().unwrap_or("");
        let db = if db_text.is_empty() {
            0
        } else {
            db_text
                .parse::<u32>()
                .map_err(|_| "expected a database number after the '/'".to_string())?
        };
        Ok(RedisUrl {
            tls,
            host,
            port,
            db,
            user,
            password,
        })
    }

    /// The URL as it may be shown: scheme, host and port, as every secret-bearing URL is shown
    /// (no user, no password, no database).
    pub(crate) fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}", self.port)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RespError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("i/o: {0}")]
    Io(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("server said: {0}")]
    Server(String),
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub(crate) fn int(&self) -> Result<i64, RespError> {
        match self {
            Reply::Int(n) => Ok(*n),
            Reply::Error(e) => Err(RespError::Server(e.clone())),
            other => other
                .text()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| RespError::Protocol(format!("expected an integer, got {other:?}"))),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }

    /// A bulk string or nil; a server error becomes an error.
    pub(crate) fn bulk(self) -> Result<Option<Vec<u8>>, RespError> {
        match self {
            Reply::Bulk(b) => Ok(b),
            Reply::Error(e) => Err(RespError::Server(e)),
            other => Err(RespError::Protocol(format!(
                "expected a bulk string, got {other:?}"
            ))),
        }
    }

    pub(crate) fn ok(self) -> Result<Reply, RespError> {
        match self {
            Reply::Error(e) => Err(RespError::Server(e)),
            other => Ok(other),
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct Target {
    pub(crate) url: RedisUrl,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    /// Extra trusted CA certificates (PEM) for `rediss://`, beside the webpki roots.
    pub(crate) ca_file: Option<String>,
}

pub(crate) struct Conn {
    io: BufReader<Stream>,
}

fn tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, RespError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| RespError::Connect(format!("CA file {path}: {e}")))?;
        for c in certs {
            let c = c.map_err(|e| RespError::Connect(format!("CA file {path}: {e}")))?;
            roots
                .add(c)
                .map_err(|e| RespError::Connect(format!("CA file {path}: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RespError::Connect(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Conn {
    /// Connects, then AUTH (when the URL has a password) and SELECT (when db is not 0).
    pub(crate) fn open(t: &Target) -> Result<Conn, RespError> {
        let addrs: Vec<_> = (t.url.host.as_str(), t.url.port)
            .to_socket_addrs()
            .map_err(|e| RespError::Connect(format!("{}: {e}", t.url.host)))?
            .collect();
        let mut last = RespError::Connect(format!("{}: no address", t.url.host));
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, t.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = RespError::Connect(format!("{a}: {}", io_text(&e))),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let io_err = |e: std::io::Error| RespError::Io(io_text(&e));
        tcp.set_read_timeout(Some(t.read_timeout)).map_err(io_err)?;
        tcp.set_write_timeout(Some(t.read_timeout))
            .map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        let stream = if t.url.tls {
            let name = rustls::pki_types::ServerName::try_from(t.url.host.clone())
                .map_err(|e| RespError::Connect(format!("TLS server name: {e}")))?;
            let conn = rustls::ClientConnection::new(tls_config(t.ca_file.as_deref())?, name)
                .map_err(|e| RespError::Connect(format!("TLS: {e}")))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        } else {
            Stream::Plain(tcp)
        };
        let mut c = Conn {
            io: BufReader::with_capacity(16 * 1024, stream),
        };
        if let Some(pw) = &t.url.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = &t.url.user {
                args.push(u.as_bytes());
            }
            args.push(pw.as_bytes());
            // Redis's answer to a wrong password names none, but a server (or a proxy) that
            // echoes the command would: the password is cut out of whatever it says.
            let cut = |m: String| m.replace(pw.as_str(), "***");
            c.cmd(&args)
                .and_then(|reply| reply.ok())
                .map_err(|e| match e {
                    RespError::Server(m) => RespError::Connect(format!("AUTH refused: {}", cut(m))),
                    RespError::Protocol(m) => RespError::Protocol(cut(m)),
                    RespError::Io(m) => RespError::Io(cut(m)),
                    RespError::Connect(m) => RespError::Connect(cut(m)),
                })?;
        }
        if t.url.db != 0 {
            let db = t.url.db.to_string();
            c.cmd(&[b"SELECT", db.as_bytes()])?.ok()?;
        }
        Ok(c)
    }

    fn encode(buf: &mut Vec<u8>, args: &[&[u8]]) {
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
    }

    /// Sends one command and reads its reply (a server error is `Reply::Error`).
    pub(crate) fn cmd(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        let mut r = self.pipeline(&[args])?;
        r.pop()
            .ok_or_else(|| RespError::Protocol("no reply".into()))
    }

    /// Sends several commands at once, then reads their replies in order (one round trip).
    pub(crate) fn pipeline(&mut self, cmds: &[&[&[u8]]]) -> Result<Vec<Reply>, RespError> {
        let mut buf = Vec::with_capacity(256);
        for c in cmds {
            Self::encode(&mut buf, c);
        }
        let w = self.io.get_mut();
        w.write_all(&buf)
            .and_then(|_| w.flush())
            .map_err(|e| RespError::Io(io_text(&e)))?;
        cmds.iter().map(|_| self.read_reply(0)).collect()
    }

    fn line(&mut self) -> Result<String, RespError> {
        let mut line = Vec::with_capacity(64);
        let n = (&mut self.io)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .map_err(|e| RespError::Io(io_text(&e)))?;
        if n == 0 {
            return Err(RespError::Io("connection closed by the server".into()));
        }
        if !line.ends_with(b"\r\n") {
            return Err(RespError::Protocol("a reply line without CRLF".into()));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line)
            .map_err(|_| RespError::Protocol("a reply line that is not UTF-8".into()))
    }

    fn read_reply(&mut self, depth: usize) -> Result<Reply, RespError> {
        if depth > MAX_DEPTH {
            return Err(RespError::Protocol("replies nested too deep".into()));
        }
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let num = || -> Result<i64, RespError> {
            rest.parse::<i64>()
                .map_err(|_| RespError::Protocol(format!("expected a length, got {rest:?}")))
        };
        match kind {
            "+" => Ok(Reply::Simple(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => Ok(Reply::Int(num()?)),
            "$" => {
                let n = num()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > MAX_BULK {
                    return Err(RespError::Protocol(format!(
                        "a {n}-byte reply is too large"
                    )));
                }
                let mut data = vec![0u8; n + 2];
                self.io
                    .read_exact(&mut data)
                    .map_err(|e| RespError::Io(io_text(&e)))?;
                data.truncate(n);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let n = num()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > MAX_ARRAY {
                    return Err(RespError::Protocol(format!("an array of {n} is too large")));
                }
                let items = (0..n)
                    .map(|_| self.read_reply(depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(RespError::Protocol(format!("unknown reply type {kind:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let u = RedisUrl::parse("redis://ops:s%40cret@127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.db),
            (false, "127.0.0.1", 6380, 2)
        );
        assert_eq!(u.user.as_deref(), Some("ops"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.redacted(), "redis://127.0.0.1:6380");
        assert!(!format!("{u:?}").contains("cret"));
        let u = RedisUrl::parse("rediss://:pw@[::1]:7000").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.db), (true, "::1", 0));
        assert_eq!(u.redacted(), "rediss://[::1]:7000");
        assert_eq!(RedisUrl::parse("redis://h").unwrap().port, 6379);
        for bad in [
            "http://h",
            "redis://",
            "redis://h:0",
            "redis://h:70000",
            "redis://h/x",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
        let e = RedisUrl::parse("redis://u:p%zzsecret@h").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
