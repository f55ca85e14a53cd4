//! Turns what an attempt left behind (exit status, output, spawn error, timeout) into an
//! `ErrorClass` and a retry verdict. Pure: no I/O, no clock; patterns are compiled once, lazily,
//! because a run that succeeds first time never needs them.

mod builtin;

use std::collections::BTreeSet;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use builtin::BuiltinScan;
#[cfg(test)]
pub(crate) use builtin::builtin_class;

/// The error classes: seed 003's seven retryable and seven non-retryable names, `unknown_error`,
/// and retryx's own (`spawn_error`, and the guards' refusals).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    ConnectionError,
    Timeout,
    TemporaryFailure,
    NetworkError,
    ServiceUnavailable,
    RateLimitExceeded,
    ResourceBusy,
    AuthenticationError,
    AuthorizationError,
    PermissionError,
    ResourceNotFound,
    ConfigurationError,
    InvalidParameter,
    QuotaExceeded,
    UnknownError,
    // The command could not be started (not found, not executable): never retried.
    SpawnError,
    // A circuit breaker refused the call.
    CircuitOpen,
    // The bulkhead was full and the wait for a slot ran out.
    BulkheadFull,
    // The shared guard state (Redis) could not be reached under state_backend_failure: closed.
    BackendUnavailable,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 19] = [
        Self::ConnectionError,
        Self::Timeout,
        Self::TemporaryFailure,
        Self::NetworkError,
        Self::ServiceUnavailable,
        Self::RateLimitExceeded,
        Self::ResourceBusy,
        Self::AuthenticationError,
        Self::AuthorizationError,
        Self::PermissionError,
        Self::ResourceNotFound,
        Self::ConfigurationError,
        Self::InvalidParameter,
        Self::QuotaExceeded,
        Self::UnknownError,
        Self::SpawnError,
        Self::CircuitOpen,
        Self::BulkheadFull,
        Self::BackendUnavailable,
    ];

    /// Seed 003's retryable classes.
    pub const SEED_RETRYABLE: [ErrorClass; 7] = [
        Self::ConnectionError,
        Self::Timeout,
        Self::TemporaryFailure,
        Self::NetworkError,
        Self::ServiceUnavailable,
        Self::RateLimitExceeded,
        Self::ResourceBusy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionError => "connection_error",
            Self::Timeout => "timeout",
            Self::TemporaryFailure => "temporary_failure",
            Self::NetworkError => "network_error",
            Self::ServiceUnavailable => "service_unavailable",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::ResourceBusy => "resource_busy",
            Self::AuthenticationError => "authentication_error",
            Self::AuthorizationError => "authorization_error",
            Self::PermissionError => "permission_error",
            Self::ResourceNotFound => "resource_not_found",
            Self::ConfigurationError => "configuration_error",
            Self::InvalidParameter => "invalid_parameter",
            Self::QuotaExceeded => "quota_exceeded",
            Self::UnknownError => "unknown_error",
            Self::SpawnError => "spawn_error",
            Self::CircuitOpen => "circuit_open",
            Self::BulkheadFull => "bulkhead_full",
            Self::BackendUnavailable => "backend_unavailable",
        }
    }

    /// Whether a failure of this class is about the network (network-aware waiting uses it).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Self::ConnectionError | Self::NetworkError | Self::Timeout | Self::TemporaryFailure
        )
    }

    /// The default `retry_conditions`: the seed's retryable classes plus `unknown_error`.
    pub fn default_retry_conditions() -> BTreeSet<ErrorClass> {
        let mut set: BTreeSet<_> = Self::SEED_RETRYABLE.into_iter().collect();
        set.insert(Self::UnknownError);
        set
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|c| c.as_str()).collect();
                format!(
                    "unknown error class {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A set of exit codes, written `1,75,100-110`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitCodeSet(Vec<(i32, i32)>);

impl ExitCodeSet {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let parse = |s: &str| {
                s.parse::<i32>()
                    .ok()
                    .filter(|c| (0..=255).contains(c))
                    .ok_or_else(|| format!("{part:?} is not an exit code or range of codes 0-255 (expected e.g. \"1,75,100-110\")"))
            };
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(format!("range {part:?} runs backwards"));
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err(format!(
                "{text:?} names no exit codes (expected e.g. \"1,75,100-110\")"
            ));
        }
        Ok(Self(ranges))
    }

    pub fn from_codes(codes: &[i32]) -> Self {
        Self(codes.iter().map(|&c| (c, c)).collect())
    }

    pub fn contains(&self, code: i32) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

/// A user pattern that maps output to a class (`error_patterns` in the config).
#[derive(Debug, Clone)]
pub struct UserPattern {
    pub regex: Regex,
    pub class: ErrorClass,
}

/// What the classifier needs to know about one attempt.
#[derive(Debug, Clone, Default)]
pub struct AttemptFacts<'a> {
    /// Exit code when the process exited; `None` when killed by a signal, timed out or never ran.
    pub exit_code: Option<i32>,
    /// Signal that ended the process, when one did (and it was not our timeout).
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Spawn failure text ("No such file or directory", ...), when the command never started.
    pub spawn_error: Option<&'a str>,
    /// The tail of stderr, then of stdout; user `error_patterns` and the built-in table look
    /// here.
    pub stderr_tail: &'a str,
    pub stdout_tail: &'a str,
    /// The built-in table's scan of what stderr and stdout wrote before their tails.
    pub(crate) stderr_scan: Option<&'a BuiltinScan>,
    pub(crate) stdout_scan: Option<&'a BuiltinScan>,
    /// Whether a `--fail-if` / `--retry-if` pattern matched anywhere in the streamed output.
    pub fail_if_hit: bool,
    pub retry_if_hit: bool,
}

/// The classifier's answer for a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub class: ErrorClass,
    pub retryable: bool,
    /// Why: which rule decided.
    pub reason: String,
    /// A one-line message for records and log lines: the output line that decided the class
    /// when one did, else the last line of output, else the exit status.
    pub message: String,
}

/// The user's rules plus the built-in tables.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub retry_on_exit: Option<ExitCodeSet>,
    pub fail_on_exit: Option<ExitCodeSet>,
    pub user_patterns: Vec<UserPattern>,
    pub retry_conditions: BTreeSet<ErrorClass>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self {
            retry_on_exit: None,
            fail_on_exit: None,
            user_patterns: Vec::new(),
            retry_conditions: ErrorClass::default_retry_conditions(),
        }
    }
}

/// The last non-empty line of the output, as a message for records (stderr first).
pub fn last_line(stderr_tail: &str, stdout_tail: &str) -> Option<String> {
    [stderr_tail, stdout_tail].into_iter().find_map(|t| {
        t.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.chars().take(500).collect())
    })
}

/// The line of `text` holding the match `start..end`, trimmed, as a message quote.
fn line_around(text: &str, start: usize, end: usize) -> String {
    let from = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let to = text[end..].find('\n').map_or(text.len(), |i| end + i);
    text[from..to].trim().chars().take(300).collect()
}

impl Classifier {
    /// Classifies a failed attempt. Order: spawn error, timeout, fail rules (exit code, then
    /// pattern), retry rules (exit code, then pattern), user class patterns, the built-in table
    /// (specific phrases, non-retryable, retryable: see `builtin`), `unknown_error`; then
    /// `retry_conditions`, which names exactly the classes that are retried.
    pub fn classify(&self, facts: &AttemptFacts) -> Verdict {
        let exit_desc = match (facts.exit_code, facts.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "no exit code".to_string(),
        };
        // The class the output suggests, used whatever rule decides retryability; its line is
        // the message (the text that decided), else the last line of output.
        let text_class = self.text_class(facts);
        let message = text_class
            .as_ref()
            .map(|(_, _, line)| line.clone())
            .or_else(|| last_line(facts.stderr_tail, facts.stdout_tail))
            .unwrap_or_else(|| exit_desc.clone());

        if let Some(err) = facts.spawn_error {
            return Verdict {
                class: ErrorClass::SpawnError,
                retryable: false,
                reason: "the command could not be started".into(),
                message: err.to_string(),
            };
        }
        if facts.timed_out {
            return self.by_conditions(
                ErrorClass::Timeout,
                "the attempt timed out",
                "attempt timed out".into(),
            );
        }
        let class_or_unknown = text_class
            .as_ref()
            .map(|(c, _, _)| *c)
            .unwrap_or(ErrorClass::UnknownError);

        if let (Some(set), Some(code)) = (&self.fail_on_exit, facts.exit_code)
            && set.contains(code)
        {
            return Verdict {
                class: class_or_unknown,
                retryable: false,
                reason: format!("exit code {code} is in fail_on_exit"),
                message,
            };
        }
        if facts.fail_if_hit {
            return Verdict {
                class: class_or_unknown,
                retryable: false,
                reason: "output matched fail_if".into(),
                message,
            };
        }
        if let Some(set) = &self.retry_on_exit {
            return match facts.exit_code {
                Some(code) if set.contains(code) => Verdict {
                    class: class_or_unknown,
                    retryable: true,
                    reason: format!("exit code {code} is in retry_on_exit"),
                    message,
                },
                _ if facts.retry_if_hit => Verdict {
                    class: class_or_unknown,
                    retryable: true,
                    reason: "output matched retry_if".into(),
                    message,
                },
                _ => Verdict {
                    class: class_or_unknown,
                    retryable: false,
                    reason: format!("{exit_desc} is not in retry_on_exit"),
                    message,
                },
            };
        }
        if facts.retry_if_hit {
            return Verdict {
                class: class_or_unknown,
                retryable: true,
                reason: "output matched retry_if".into(),
                message,
            };
        }
        // `retry_conditions` names exactly the classes that are retried: a class that is not
        // retryable by nature is retried when the user lists it there.
        match text_class {
            Some((class, true, _)) => {
                self.by_conditions(class, "output matched a retryable pattern", message)
            }
            Some((class, false, _)) => {
                self.by_conditions(class, "output matched a non-retryable pattern", message)
            }
            None => self.by_conditions(ErrorClass::UnknownError, "no pattern matched", message),
        }
    }

    /// User `error_patterns` first, then the built-in table, stderr before stdout. Gives the
    /// class, whether it is retryable by nature (user classes: by `retry_conditions`), and the
    /// output line that decided.
    fn text_class(&self, facts: &AttemptFacts) -> Option<(ErrorClass, bool, String)> {
        for text in [facts.stderr_tail, facts.stdout_tail] {
            for p in &self.user_patterns {
                if let Some(m) = p.regex.find(text) {
                    let natural = self.retry_conditions.contains(&p.class);
                    return Some((p.class, natural, line_around(text, m.start(), m.end())));
                }
            }
        }
        // The exec layer scanned what left each stream's tail; the tail is read here, so a run
        // that succeeds never pays for the table.
        let scans = [
            (facts.stderr_scan, facts.stderr_tail),
            (facts.stdout_scan, facts.stdout_tail),
        ];
        for (before_tail, tail) in scans {
            let mut scan = before_tail.cloned().unwrap_or_default();
            scan.feed_text(tail);
            if let Some(h) = scan.hit() {
                return Some((h.class, h.retryable, h.line.clone()));
            }
        }
        None
    }

    fn by_conditions(&self, class: ErrorClass, why: &str, message: String) -> Verdict {
        let retryable = self.retry_conditions.contains(&class);
        let reason = if retryable {
            format!("{why}; {class} is in retry_conditions")
        } else {
            format!("{why}; {class} is not in retry_conditions")
        };
        Verdict {
            class,
            retryable,
            reason,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ErrorClass::*;

    fn classify_text(text: &str) -> Verdict {
        Classifier::default().classify(&AttemptFacts {
            exit_code: Some(1),
            stderr_tail: text,
            ..Default::default()
        })
    }

    /// One case per phrase the seeds list, and a few more that tools really print.
    const CASES: &[(&str, ErrorClass, bool)] = &[
        (
            "dial tcp 10.0.0.1:443: connect: connection refused",
            ConnectionError,
            true,
        ),
        ("read: connection reset by peer", ConnectionError, true),
        ("Connection timed out", ConnectionError, true),
        ("Connection timeout to vCenter", ConnectionError, true),
        ("connect: network is unreachable", NetworkError, true),
        ("Network unreachable", NetworkError, true),
        (
            "lookup vcenter.example.com: no such host",
            NetworkError,
            true,
        ),
        (
            "curl: (6) Could not resolve host: example.invalid",
            NetworkError,
            true,
        ),
        (
            "Temporary failure in name resolution",
            TemporaryFailure,
            true,
        ),
        ("temporary failure, please retry", TemporaryFailure, true),
        ("net/http: TLS handshake timeout", ConnectionError, true),
        ("write: broken pipe", ConnectionError, true),
        ("unexpected EOF", NetworkError, true),
        ("read tcp: i/o timeout", Timeout, true),
        ("context deadline exceeded", Timeout, true),
        ("HTTP/1.1 429 Too Many Requests", RateLimitExceeded, true),
        ("429 Too Many Requests", RateLimitExceeded, true),
        ("500 Internal Server Error", ServiceUnavailable, true),
        ("502 Bad Gateway", ServiceUnavailable, true),
        ("503 Service Unavailable", ServiceUnavailable, true),
        ("504 Gateway Timeout", Timeout, true),
        (
            "curl: (22) The requested URL returned error: 503",
            ServiceUnavailable,
            true,
        ),
        (
            "An error occurred (ThrottlingException) when calling",
            RateLimitExceeded,
            true,
        ),
        (
            "RequestTimeout: Your socket connection to the server was not read",
            Timeout,
            true,
        ),
        (
            "SlowDown: Please reduce your request rate.",
            RateLimitExceeded,
            true,
        ),
        ("ServiceUnavailable: try later", ServiceUnavailable, true),
        (
            "InternalError: We encountered an internal error",
            ServiceUnavailable,
            true,
        ),
        (
            "RequestLimitExceeded: Request limit exceeded.",
            RateLimitExceeded,
            true,
        ),
        (
            "ProvisionedThroughputExceededException: rate",
            RateLimitExceeded,
            true,
        ),
        ("TooManyRequests", RateLimitExceeded, true),
        ("Resource temporarily unavailable", TemporaryFailure, true),
        (
            "Could not get lock /var/lib/dpkg/lock-frontend",
            ResourceBusy,
            true,
        ),
        ("umount: /mnt: target is busy", ResourceBusy, true),
        ("Device or resource busy", ResourceBusy, true),
        ("HTTP/1.1 400 Bad Request", InvalidParameter, false),
        ("400 Bad Request", InvalidParameter, false),
        ("401 Unauthorized", AuthenticationError, false),
        ("403 Forbidden", AuthorizationError, false),
        ("404 Not Found", ResourceNotFound, false),
        (
            "curl: (22) The requested URL returned error: 404",
            ResourceNotFound,
            false,
        ),
        (
            "NoSuchKey: The specified key does not exist.",
            ResourceNotFound,
            false,
        ),
        (
            "NoSuchBucket: The specified bucket does not exist",
            ResourceNotFound,
            false,
        ),
        ("AccessDenied: Access Denied", AuthorizationError, false),
        ("access denied", PermissionError, false),
        (
            "open /etc/shadow: permission denied",
            PermissionError,
            false,
        ),
        (
            "cat: /nope: No such file or directory",
            ResourceNotFound,
            false,
        ),
        ("file not found", ResourceNotFound, false),
        ("invalid argument", InvalidParameter, false),
        ("validation error: name too long", InvalidParameter, false),
        (
            "authentication failed for user admin",
            AuthenticationError,
            false,
        ),
        ("Invalid credentials", AuthenticationError, false),
        (
            "Cannot complete login due to an incorrect user name or password: invalid credentials",
            AuthenticationError,
            false,
        ),
        ("quota exceeded for resource cpus", QuotaExceeded, false),
        ("Disk quota exceeded", QuotaExceeded, false),
        (
            "configuration error: missing key",
            ConfigurationError,
            false,
        ),
        (
            "unrecognized option '--frobnicate'",
            ConfigurationError,
            false,
        ),
    ];

    #[test]
    fn every_seed_phrase_has_its_class() {
        for &(text, class, retryable) in CASES {
            let v = classify_text(text);
            assert_eq!(
                (v.class, v.retryable),
                (class, retryable),
                "{text:?}: {v:?}"
            );
        }
    }

    #[test]
    fn numbers_alone_are_not_http_codes() {
        assert_eq!(
            classify_text("took 503ms, wrote 404 rows").class,
            UnknownError
        );
    }

    #[test]
    fn non_retryable_wins_over_retryable_in_the_same_output() {
        let v = classify_text("connection refused\npermission denied");
        assert_eq!((v.class, v.retryable), (PermissionError, false));
    }

    #[test]
    fn unknown_output_is_unknown_error_and_retried_by_default() {
        let v = classify_text("something odd happened");
        assert_eq!((v.class, v.retryable), (UnknownError, true));
        assert_eq!(v.message, "something odd happened");
    }

    #[test]
    fn retry_conditions_decide_for_classes() {
        let c = Classifier {
            retry_conditions: [ConnectionError].into_iter().collect(),
            ..Default::default()
        };
        let refused = AttemptFacts {
            exit_code: Some(1),
            stderr_tail: "connection refused",
            ..Default::default()
        };
        assert!(c.classify(&refused).retryable);
        let unknown = AttemptFacts {
            exit_code: Some(1),
            stderr_tail: "odd",
            ..Default::default()
        };
        assert!(!c.classify(&unknown).retryable);
        let timed_out = AttemptFacts {
            timed_out: true,
            ..Default::default()
        };
        assert_eq!(c.classify(&timed_out).class, Timeout);
        assert!(!c.classify(&timed_out).retryable);
    }

    #[test]
    fn precedence_order() {
        let c = Classifier {
            fail_on_exit: Some(ExitCodeSet::parse("3").unwrap()),
            retry_on_exit: Some(ExitCodeSet::parse("1,3,100-110").unwrap()),
            ..Default::default()
        };
        // spawn error beats everything
        let spawn = AttemptFacts {
            spawn_error: Some("No such file or directory"),
            retry_if_hit: true,
            ..Default::default()
        };
        assert_eq!(c.classify(&spawn).class, SpawnError);
        assert!(!c.classify(&spawn).retryable);
        // fail_on_exit wins over retry_on_exit
        let three = AttemptFacts {
            exit_code: Some(3),
            stderr_tail: "connection refused",
            ..Default::default()
        };
        let v = c.classify(&three);
        assert!(!v.retryable);
        assert_eq!(
            v.class, ConnectionError,
            "class still comes from the output"
        );
        // fail_if wins over retry_on_exit
        let fail_hit = AttemptFacts {
            exit_code: Some(1),
            fail_if_hit: true,
            ..Default::default()
        };
        assert!(!c.classify(&fail_hit).retryable);
        // retry_on_exit wins over a non-retryable phrase
        let listed = AttemptFacts {
            exit_code: Some(105),
            stderr_tail: "permission denied",
            ..Default::default()
        };
        assert!(c.classify(&listed).retryable);
        // a code outside retry_on_exit is not retried, even with a retryable phrase
        let other = AttemptFacts {
            exit_code: Some(2),
            stderr_tail: "connection refused",
            ..Default::default()
        };
        assert!(!c.classify(&other).retryable);
        // without exit rules, retry_if wins over a non-retryable phrase
        let plain = Classifier::default();
        let hit = AttemptFacts {
            exit_code: Some(1),
            stderr_tail: "permission denied",
            retry_if_hit: true,
            ..Default::default()
        };
        assert!(plain.classify(&hit).retryable);
        // user class patterns beat the built-in tables
        let user = Classifier {
            user_patterns: vec![UserPattern {
                regex: Regex::new("permission denied").unwrap(),
                class: ResourceBusy,
            }],
            ..Default::default()
        };
        let v = user.classify(&AttemptFacts {
            exit_code: Some(1),
            stderr_tail: "permission denied",
            ..Default::default()
        });
        assert_eq!((v.class, v.retryable), (ResourceBusy, true));
    }

    #[test]
    fn exit_code_sets_parse() {
        let s = ExitCodeSet::parse("1, 75,100-110").unwrap();
        for c in [1, 75, 100, 105, 110] {
            assert!(s.contains(c));
        }
        for c in [0, 2, 99, 111] {
            assert!(!s.contains(c));
        }
        for bad in ["", "x", "5-1", "300", "-1", "1,,a"] {
            assert!(ExitCodeSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn class_names_round_trip() {
        for c in ErrorClass::ALL {
            assert_eq!(c.as_str().parse::<ErrorClass>(), Ok(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
    }
}
