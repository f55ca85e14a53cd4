//! Turns what an attempt left behind (exit status, output, spawn error, timeout) into an
//! `ErrorClass` and a retry verdict. Pure: no I/O, no clock; patterns are compiled once, lazily,
//! because a run that succeeds first time never needs them.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// The tail of stderr, then of stdout; built-in tables look here.
    pub stderr_tail: &'a str,
    pub stdout_tail: &'a str,
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
    /// A one-line message for records and log lines.
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

/// One built-in row: a case-insensitive pattern and its class.
type Row = (&'static str, ErrorClass);

fn http(code: &str, reason: &str) -> String {
    // "503 Service Unavailable", "HTTP/1.1 503", "status 503", "status code: 503",
    // "returned error: 503" (curl -f), "error 503" — never a bare number ("took 503ms").
    format!(
        r"\b{code}\s+{reason}\b|(?:http/[0-9.]+|http status|status(?:[ _]code)?|returned error|error|response code|code)[\s:=]+{code}\b"
    )
}

/// Non-retryable phrases; the first row that matches decides.
fn non_retryable_rows() -> Vec<(String, ErrorClass)> {
    use ErrorClass::*;
    let fixed: &[Row] = &[
        (
            r"authentication fail|auth(?:entication)? error|invalid credentials|incorrect password|bad credentials|login failed|not authenticated|invalid (?:api[ _-]?)?token|InvalidClientTokenId|SignatureDoesNotMatch",
            AuthenticationError,
        ),
        (r"\bunauthori[sz]ed\b", AuthenticationError),
        (
            r"\bforbidden\b|\bAccessDenied\b|not authori[sz]ed|insufficient (?:privileges|permissions)|UnauthorizedOperation",
            AuthorizationError,
        ),
        (
            r"permission denied|access denied|operation not permitted|\bEACCES\b|\bEPERM\b|read-only file system",
            PermissionError,
        ),
        (
            r"\bNoSuchKey\b|\bNoSuchBucket\b|no such file or directory|file not found|\bENOENT\b|does not exist|\bnot found\b",
            ResourceNotFound,
        ),
        (
            r"quota exceeded|QuotaExceeded|exceeded (?:your|the) quota|insufficient quota|no space left on device",
            QuotaExceeded,
        ),
        (
            r"invalid argument|invalid parameter|\bEINVAL\b|validation error|ValidationError|InvalidParameter|malformed|bad request",
            InvalidParameter,
        ),
        (
            r"configuration error|invalid configuration|misconfigur|unknown option|unrecognized option|invalid option|syntax error|no such option",
            ConfigurationError,
        ),
    ];
    let mut rows: Vec<(String, ErrorClass)> = vec![
        (http("401", "unauthorized"), AuthenticationError),
        (http("403", "forbidden"), AuthorizationError),
        (http("404", "not found"), ResourceNotFound),
        (http("400", "bad request"), InvalidParameter),
    ];
    rows.extend(fixed.iter().map(|(p, c)| (p.to_string(), *c)));
    rows
}

/// Retryable phrases; the first row that matches decides.
fn retryable_rows() -> Vec<(String, ErrorClass)> {
    use ErrorClass::*;
    let fixed: &[Row] = &[
        (
            r"too many requests|TooManyRequests|ThrottlingException|\bThrottl(?:ed|ing)\b|\bSlowDown\b|RequestLimitExceeded|ProvisionedThroughputExceededException|rate[ _-]?limit",
            RateLimitExceeded,
        ),
        (
            r"connection refused|ECONNREFUSED|connection reset|ECONNRESET|reset by peer|connection (?:timed out|timeout)|connect(?:ion)? timed out|ETIMEDOUT|broken pipe|EPIPE|tls handshake|ssl handshake|handshake (?:failure|timeout|failed)|connection (?:aborted|closed)",
            ConnectionError,
        ),
        (
            r"temporary failure in name resolution|temporarily unavailable|temporary failure|try again|\bEAGAIN\b",
            TemporaryFailure,
        ),
        (
            r"network (?:is )?unreachable|ENETUNREACH|no route to host|EHOSTUNREACH|no such host|could not resolve host|name or service not known|unknown host|dns (?:resolution|lookup)|unexpected EOF|\bEOF\b|network error",
            NetworkError,
        ),
        (
            r"service unavailable|ServiceUnavailable|\bInternalError\b|internal server error|bad gateway|server error|upstream",
            ServiceUnavailable,
        ),
        (
            r"\bRequestTimeout\b|i/o timeout|timed out|\btimeout\b|deadline exceeded",
            Timeout,
        ),
        (
            r"resource busy|device or resource busy|\bEBUSY\b|text file busy|resource (?:is )?locked|could not get lock|lock held|in use by another|is busy",
            ResourceBusy,
        ),
    ];
    let mut rows: Vec<(String, ErrorClass)> = vec![
        (http("429", "too many requests"), RateLimitExceeded),
        (http("500", "internal server error"), ServiceUnavailable),
        (http("502", "bad gateway"), ServiceUnavailable),
        (http("503", "service unavailable"), ServiceUnavailable),
        (http("504", "gateway time-?out"), Timeout),
    ];
    rows.extend(fixed.iter().map(|(p, c)| (p.to_string(), *c)));
    rows
}

struct Table {
    regex: regex_automata::meta::Regex,
    classes: Vec<ErrorClass>,
}

impl Table {
    fn build(rows: Vec<(String, ErrorClass)>) -> Table {
        use regex_automata::{meta, util::syntax};
        // Case-insensitive by lowering both sides rather than `(?i)`, ASCII-only, and no
        // prefilter: the texts are short tails, and building the literal prefilter (every case
        // variant of every phrase, then an Aho-Corasick DFA) made compiling the two tables cost
        // about 8 ms on every failed run. The phrases are ASCII (and use no upper-case escapes
        // such as `\S`), so ASCII lowering is exact.
        let (patterns, classes): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .map(|(p, c)| (p.to_ascii_lowercase(), c))
            .unzip();
        // The tables are constants of this file; their tests compile them.
        let regex = meta::Builder::new()
            .configure(
                meta::Config::new()
                    .auto_prefilter(false)
                    .match_kind(regex_automata::MatchKind::All),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build_many(&patterns)
            .unwrap_or_else(|e| panic!("built-in table: {e}"));
        Table { regex, classes }
    }

    /// The class of the first row (lowest index) that matches anywhere in the text.
    fn first_match(&self, lowered: &str) -> Option<ErrorClass> {
        let mut found = regex_automata::PatternSet::new(self.regex.pattern_len());
        self.regex
            .which_overlapping_matches(&regex_automata::Input::new(lowered), &mut found);
        found.iter().next().map(|p| self.classes[p.as_usize()])
    }
}

fn non_retryable_table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table::build(non_retryable_rows()))
}

fn retryable_table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table::build(retryable_rows()))
}

/// The built-in class of a text, non-retryable table first.
pub fn builtin_class(text: &str) -> Option<(ErrorClass, bool)> {
    if text.trim().is_empty() {
        return None;
    }
    let lowered = text.to_ascii_lowercase();
    if let Some(c) = non_retryable_table().first_match(&lowered) {
        return Some((c, false));
    }
    retryable_table().first_match(&lowered).map(|c| (c, true))
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

impl Classifier {
    /// Classifies a failed attempt. Order: spawn error, timeout, fail rules (exit code, then
    /// pattern), retry rules (exit code, then pattern), user class patterns, built-in
    /// non-retryable, built-in retryable, `unknown_error`; then `retry_conditions`.
    pub fn classify(&self, facts: &AttemptFacts) -> Verdict {
        let message_from_output = last_line(facts.stderr_tail, facts.stdout_tail);
        let exit_desc = match (facts.exit_code, facts.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "no exit code".to_string(),
        };
        let message = message_from_output
            .clone()
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
        // The class the output suggests, used whatever rule decides retryability.
        let text_class = self.text_class(facts);
        let class_or_unknown = text_class
            .map(|(c, _)| c)
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
        match text_class {
            Some((class, true)) => {
                self.by_conditions(class, "output matched a retryable pattern", message)
            }
            Some((class, false)) => Verdict {
                class,
                retryable: false,
                reason: "output matched a non-retryable pattern".into(),
                message,
            },
            None => self.by_conditions(ErrorClass::UnknownError, "no pattern matched", message),
        }
    }

    /// User `error_patterns` first, then the built-in tables. The bool says whether the class
    /// is retryable by nature (user classes: by `retry_conditions`).
    fn text_class(&self, facts: &AttemptFacts) -> Option<(ErrorClass, bool)> {
        for text in [facts.stderr_tail, facts.stdout_tail] {
            if let Some(p) = self.user_patterns.iter().find(|p| p.regex.is_match(text)) {
                return Some((p.class, self.retry_conditions.contains(&p.class)));
            }
        }
        for text in [facts.stderr_tail, facts.stdout_tail] {
            if let Some(found) = builtin_class(text) {
                return Some(found);
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

    #[test]
    fn table_rows_survive_ascii_lowering() {
        // The tables are matched after lowering pattern and text alike: an upper-case escape
        // (`\S`, `\D`, `\W`, `\B`) or a non-ASCII phrase would change meaning when lowered.
        for (p, _) in non_retryable_rows().into_iter().chain(retryable_rows()) {
            assert!(p.is_ascii(), "non-ASCII row {p:?}");
            let b = p.as_bytes();
            for w in b.windows(2) {
                assert!(
                    !(w[0] == b'\\' && w[1].is_ascii_uppercase()),
                    "row {p:?} has an upper-case escape"
                );
            }
        }
    }
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
