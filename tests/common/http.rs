//! Reading one HTTP/1.1 request off a test receiver's socket (request line, headers, body);
//! the receivers themselves (what they answer) stay in their test files.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// The request line, the headers (names lower-cased) and the body (at most 1 MiB is read).
pub type Request = (String, Vec<(String, String)>, Vec<u8>);

pub fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some((line.trim_end().to_string(), headers, body))
}
