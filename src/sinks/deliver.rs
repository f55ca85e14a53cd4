//! Shared delivery for every HTTP sink: one request under a timeout, bounded retries through the
//! policy engine, Retry-After, a deadline for the whole notification run, and a verdict per
//! answer (success, retryable, permanent). It must never log or return a secret: every error
//! string leaves through the system's `Redactor`.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::redact::Redactor;
use crate::policy::{Backoff, JitterKind, PolicyKind};

/// The most of a response body kept (it is recorded, redacted, in the outcome).
const BODY_LIMIT: u64 = 4096;
/// The longest Retry-After honoured; longer asks give up (the budget would run out anyway).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// One request ready to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What one request gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Http {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    /// Transport failure (refused, reset, timed out, DNS): no HTTP answer.
    Transport { error: String, timed_out: bool },
}

/// How a sink judges an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Success,
    /// Try again (after Retry-After when given).
    Retry(String),
    /// Do not try again.
    Permanent(String),
}

/// The common HTTP rule: 2xx success; 408, 429 and 5xx retried; other 4xx (and anything
/// else) permanent; transport errors retried.
pub fn http_verdict(answer: &Answer) -> Verdict {
    match answer {
        Answer::Transport { error, .. } => Verdict::Retry(error.clone()),
        Answer::Http { status, body, .. } => {
            let short = first_line(body);
            if (200..300).contains(status) {
                Verdict::Success
            } else if *status == 408 || *status == 429 || (500..600).contains(status) {
                Verdict::Retry(format!("HTTP {status}: {short}"))
            } else {
                Verdict::Permanent(format!("HTTP {status}: {short}"))
            }
        }
    }
}

pub fn first_line(body: &str) -> String {
    let line = body.trim().lines().next().unwrap_or("");
    let mut s: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// Parses Retry-After: delta-seconds or an HTTP date (RFC 7231 IMF-fixdate).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(
            secs.min(MAX_RETRY_AFTER.as_secs_f64() * 10.0),
        ));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Delivery settings of one system.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub timeout: Duration,
    pub retry_count: u32,
    pub retry_delay: Duration,
    /// Shared by every system of the run.
    pub deadline: Instant,
}

impl DeliveryPolicy {
    /// The delivery retries use the same backoff engine as the operation: a fixed wait of
    /// `retry_delay` (the seed's meaning), no jitter.
    fn backoff(&self) -> Backoff {
        Backoff {
            kind: PolicyKind::Fixed,
            base: self.retry_delay,
            max: self.retry_delay.max(Duration::from_millis(1)),
            multiplier: 1.0,
            jitter: JitterKind::None,
        }
    }
}

/// The outcome of delivering to one system.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delivery {
    pub ok: bool,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub error: Option<String>,
    /// The receiver's answer (first line, redacted), e.g. Slack's `ok` or `no_service`.
    pub response: Option<String>,
    /// Seconds spent, waits included.
    pub duration: f64,
}

/// Sends one request once.
pub fn send_once(req: &HttpRequest, timeout: Duration) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("retryx/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(req.url.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = match builder.body(req.body.clone()) {
        Ok(r) => r,
        Err(e) => {
            return Answer::Transport {
                error: format!("invalid request: {e}"),
                timed_out: false,
            };
        }
    };
    match agent.run(request) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
            let mut body = String::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(BODY_LIMIT)
                .read_to_string(&mut body);
            Answer::Http {
                status,
                body,
                retry_after,
            }
        }
        Err(e) => transport_error(&e),
    }
}

fn transport_error(e: &ureq::Error) -> Answer {
    let (error, timed_out) = match e {
        ureq::Error::Timeout(_) => ("timed out waiting for the receiver".to_string(), true),
        ureq::Error::ConnectionFailed => ("connection failed".to_string(), false),
        ureq::Error::HostNotFound => ("host not found".to_string(), false),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => ("connection refused".to_string(), false),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                ("timed out waiting for the receiver".to_string(), true)
            }
            kind => (format!("I/O error: {kind}"), false),
        },
        other => (format!("transport error: {other}"), false),
    };
    Answer::Transport { error, timed_out }
}

/// Sends with retries: at most `1 + retry_count` requests, each bounded by the system timeout
/// and the run's deadline; waits `retry_delay` or the receiver's Retry-After, whichever is
/// longer, and gives up when that wait would pass the deadline.
pub fn deliver(
    req: &HttpRequest,
    policy: &DeliveryPolicy,
    judge: &dyn Fn(&Answer) -> Verdict,
    redactor: &Redactor,
    sleep: &dyn Fn(Duration),
) -> Delivery {
    let started = Instant::now();
    let backoff = policy.backoff();
    let max_requests = policy.retry_count.saturating_add(1);
    let mut out = Delivery::default();
    // Jitter is off for delivery waits; the generator is only there for the policy API.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut previous = Duration::ZERO;
    for n in 1..=max_requests {
        let remaining = policy.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            out.error = Some(match out.error.take() {
                Some(e) => format!("{e}; notification time budget used up"),
                None => "notification time budget used up before sending".to_string(),
            });
            break;
        }
        out.attempts = n;
        // Scrub the whole answer before anything cuts it to a line or a tail: a cut can split a
        // secret a receiver echoed back, and the scrubber no longer sees the halves.
        let answer = match send_once(req, policy.timeout.min(remaining)) {
            Answer::Http {
                status,
                body,
                retry_after,
            } => Answer::Http {
                status,
                body: redactor.scrub(&body),
                retry_after,
            },
            Answer::Transport { error, timed_out } => Answer::Transport {
                error: redactor.scrub(&error),
                timed_out,
            },
        };
        let retry_after = match &answer {
            Answer::Http {
                status,
                body,
                retry_after,
            } => {
                out.http_status = Some(*status);
                out.response = Some(first_line(body));
                *retry_after
            }
            Answer::Transport { .. } => {
                out.http_status = None;
                out.response = None;
                None
            }
        };
        match judge(&answer) {
            Verdict::Success => {
                out.ok = true;
                out.error = None;
                break;
            }
            Verdict::Permanent(e) => {
                out.error = Some(redactor.scrub(&e));
                break;
            }
            Verdict::Retry(e) => {
                out.error = Some(redactor.scrub(&e));
                if n == max_requests {
                    break;
                }
                let mut wait = backoff.delay(n, previous, &mut rng);
                if let Some(ra) = retry_after {
                    if ra > MAX_RETRY_AFTER {
                        out.error = Some(format!(
                            "{}; Retry-After {}s is longer than the {}s retryx waits",
                            redactor.scrub(&e),
                            ra.as_secs(),
                            MAX_RETRY_AFTER.as_secs()
                        ));
                        break;
                    }
                    wait = wait.max(ra);
                }
                let remaining = policy.deadline.saturating_duration_since(Instant::now());
                if wait >= remaining {
                    out.error = Some(format!(
                        "{}; next try after {:.1}s would pass the notification time budget",
                        redactor.scrub(&e),
                        wait.as_secs_f64()
                    ));
                    break;
                }
                sleep(wait);
                previous = wait;
            }
        }
    }
    out.duration = started.elapsed().as_secs_f64();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, body: &str) -> Answer {
        Answer::Http {
            status,
            body: body.to_string(),
            retry_after: None,
        }
    }

    #[test]
    fn verdicts_follow_http_rules() {
        assert_eq!(http_verdict(&http(202, "")), Verdict::Success);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(http_verdict(&http(s, "x")), Verdict::Retry(_)),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 413, 301] {
            assert!(
                matches!(http_verdict(&http(s, "x")), Verdict::Permanent(_)),
                "{s}"
            );
        }
        let t = Answer::Transport {
            error: "connection refused".into(),
            timed_out: false,
        };
        assert_eq!(
            http_verdict(&t),
            Verdict::Retry("connection refused".into())
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-21T15:00:00Z")
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 30 ", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Jan 2026 15:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Jan 2026 14:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_refused_port_is_retried_then_reported_without_secrets() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let url = format!("http://127.0.0.1:{port}/services/T1/B1/s3cr3tT0k3nValue");
        let mut red = Redactor::new();
        red.add_url(&url);
        let req = HttpRequest {
            method: "POST".into(),
            url,
            headers: vec![],
            body: b"{}".to_vec(),
        };
        let waits = std::cell::RefCell::new(Vec::new());
        let policy = DeliveryPolicy {
            timeout: Duration::from_secs(2),
            retry_count: 2,
            retry_delay: Duration::from_millis(250),
            deadline: Instant::now() + Duration::from_secs(20),
        };
        let d = deliver(&req, &policy, &http_verdict, &red, &|w| {
            waits.borrow_mut().push(w)
        });
        assert!(!d.ok);
        assert_eq!(d.attempts, 3);
        assert_eq!(d.http_status, None);
        assert_eq!(*waits.borrow(), vec![Duration::from_millis(250); 2]);
        let err = d.error.unwrap_or_default();
        assert!(
            err.contains("refused") || err.contains("connection"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn an_echoed_secret_cut_by_the_line_limit_is_still_masked() {
        use std::io::{Read as _, Write as _};
        let secret = "s3cr3tT0k3nValueLongEnoughToSpanTheCut";
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("bind 127.0.0.1:0: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(9);
        // The secret starts 10 characters before the 300-character cut of `first_line`.
        let body = format!("{}{secret}", "a".repeat(290));
        let server = std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        let url = format!("http://127.0.0.1:{port}/hook/{secret}");
        let mut red = Redactor::new();
        red.add_url(&url);
        let req = HttpRequest {
            method: "POST".into(),
            url,
            headers: vec![],
            body: b"{}".to_vec(),
        };
        let policy = DeliveryPolicy {
            timeout: Duration::from_secs(5),
            retry_count: 0,
            retry_delay: Duration::from_millis(1),
            deadline: Instant::now() + Duration::from_secs(20),
        };
        let d = deliver(&req, &policy, &http_verdict, &red, &|_| {});
        let _ = server.join();
        assert_eq!(d.http_status, Some(500));
        let shown = format!("{:?} {:?}", d.response, d.error);
        // Any 10-character piece of the secret is a leak (the part before the cut).
        assert!(!shown.contains(&secret[..10]), "{shown}");
    }

    #[test]
    fn a_wait_past_the_deadline_stops_the_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let req = HttpRequest {
            method: "POST".into(),
            url: format!("http://127.0.0.1:{port}/x"),
            headers: vec![],
            body: vec![],
        };
        let policy = DeliveryPolicy {
            timeout: Duration::from_secs(1),
            retry_count: 5,
            retry_delay: Duration::from_secs(60),
            deadline: Instant::now() + Duration::from_secs(5),
        };
        let d = deliver(&req, &policy, &http_verdict, &Redactor::new(), &|_| {
            panic!("must not wait past the deadline")
        });
        assert_eq!(d.attempts, 1);
        assert!(d.error.unwrap_or_default().contains("budget"));
    }
}
