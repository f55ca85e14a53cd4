//! The built-in error table: which output line decides an attempt's class, over the whole
//! output (exec feeds what leaves the tail, the classifier the tail). Pure (no I/O, no clock);
//! knows nothing of retry_conditions or user rules.
//!
//! One ordered list of rows. The row that comes first in the list wins, wherever in the output
//! its line is: specific phrases first (they name the real cause where a generic word also
//! appears: a socket "No such file or directory ... Is the server running?"), then the
//! non-retryable rows, then the retryable ones, the vaguest last (`timeout`, `try again`).
//! Informational lines (`INFO:`, `level=debug`, klog `I1201`) and settings phrases
//! (`timeout set to 30s`, `--timeout=30`, `0 errors`) are masked first: they decide nothing.
//! tests/data/classify_corpus.txt holds the lines these rows are measured on.

use std::sync::OnceLock;

use super::ErrorClass;
use ErrorClass::*;

/// One row: a pattern (lower case: texts are lowered, ASCII only), its class, and whether
/// that class is retryable by nature.
type Row = (String, ErrorClass, bool);

/// `{code} {reason}` and the ways tools print an HTTP status: `HTTP 404`, `HTTP/1.1 404`,
/// `HTTP Error 404:`, `status code: 404`, `returned error: 404`, `code=404`, `E404` (npm), a
/// line holding only the code; never a bare number inside other text ("took 503ms").
fn http(code: &str, reason: &str) -> String {
    format!(
        r"\b{code}\s+(?:{reason})\b|(?:http/[0-9.]+|https?(?: error| status(?: code)?| response code)?|status(?:[ _]code)?(?: was)?|returned error|error|response code|code)[\s:=]+{code}\b|\be{code}\b|^\s*{code}\s*$"
    )
}

fn rows() -> Vec<Row> {
    let n = |p: &str, c| (p.to_string(), c, false);
    let r = |p: &str, c| (p.to_string(), c, true);
    vec![
        // --- specific phrases: they beat the generic words on the same output ---
        r(
            r"is the (?:server|docker daemon|daemon) running",
            ConnectionError,
        ),
        n(
            r"access denied for user '[^']*'@'[^']*' \(using password",
            AuthenticationError,
        ),
        n(
            r"access denied for user '[^']*'@'[^']*' to database",
            AuthorizationError,
        ),
        n(
            r"permission denied for (?:table|relation|schema|database|sequence|function|view)|command denied to user",
            AuthorizationError,
        ),
        n(r"exceeded quota:", QuotaExceeded),
        r(
            r"quota exceeded for quota metric .* per (?:minute|second|100 seconds)",
            RateLimitExceeded,
        ),
        r(
            r"is currently upgrading|please wait and try again|address already in use|port is already allocated|lock wait timeout exceeded",
            ResourceBusy,
        ),
        // TLS and SSH trust: the peer's identity cannot be checked; fix the trust setup.
        n(
            r"certificate (?:problem|verify failed|has expired|signed by unknown authority|is not yet valid)|certificate_verify_failed|\bx509:|self[- ]signed certificate|unable to get local issuer certificate|cannot verify [^ ]+ certificate|no alternative certificate subject name|invalid server certificate|ssl validation failed|problem confirming the ssl certificate|host key verification failed|remote host identification has changed",
            ConfigurationError,
        ),
        n(
            r#"context "[^"]*" does not exist|config profile .* could not be found|does not have a release file|malformed entry|project property is set to the empty string|load key .*bad permissions|unable to negotiate with|no matching (?:host key type|key exchange method|cipher)"#,
            ConfigurationError,
        ),
        // --- non-retryable ---
        n(
            r"authentication (?:fail|error|required)|auth(?:entication)? error|\bauth failed\b|invalid credentials|bad credentials|incorrect password|incorrect user ?name or password|invalid user ?name or password|invalid username-password|\bwrongpass\b|\bnoauth\b|login (?:failed|denied)|login attempt .* failed|not authenticated|unable to authenticate|must be logged in|provide credentials|invalid (?:api[ _-]?)?token|invalid client secret|invalid_grant|invalidclienttokenid|signaturedoesnotmatch|\bexpiredtoken(?:exception)?\b|token (?:has )?expired|security token included in the request is (?:invalid|expired)|unable to locate credentials|no valid credential|reauthentication failed|please run 'az login'|(?:missing|incorrect) sudo password|interactive authentication required|no pg_hba\.conf entry|\baadsts[0-9]+|\bauthentication_error\b",
            AuthenticationError,
        ),
        n(&http("401", "unauthorized"), AuthenticationError),
        n(r"\bunauthori[sz]ed\b", AuthenticationError),
        n(
            r"\bforbidden\b|\baccessdenied(?:exception)?\b|not authori[sz]ed|authorization (?:error|fail)|authorizationfailed|does not have authorization|insufficient (?:privileges|permissions)|unauthorizedoperation|pull access denied|requested access to the resource is denied|permission to [^ ]+ denied|does not have permission|caller does not have permission|required '[^']*' permission|no permissions to run|\bnoperm\b|permission to perform this operation was denied|you do not have permission|\bauthorization_error\b",
            AuthorizationError,
        ),
        n(&http("403", "forbidden"), AuthorizationError),
        n(
            r"permission denied|access denied|operation not permitted|\beacces\b|\beperm\b|read-only file system|read only replica|must be superuser|superuser privileges|\bpermission_error\b",
            PermissionError,
        ),
        n(
            r"quota exceeded|\bquotaexceeded\b|exceeded (?:your|the) quota|exceeding approved .*quota|insufficient quota|cannot exceed quota|quota '[^']*' exceeded|no space left on device|enough free space|disk quota|insufficient disk space|vcpulimitexceeded|\blimitexceeded(?:exception)?\b|servicequotaexceeded|more .* capacity than your current .* limit|the table '[^']*' is full|\boom command not allowed|\bquota_exceeded\b",
            QuotaExceeded,
        ),
        n(&http("404", "not found"), ResourceNotFound),
        n(&http("410", "gone"), ResourceNotFound),
        n(
            r"\bnosuchkey\b|\bnosuchbucket\b|no such file or directory|file not found|\benoent\b|does not exist|doesn't exist|\bnot found\b|could not be found|\bnotfound\b|\.notfound\b|groupnotfound|resourcenotfound|unable to locate package|no installation candidate|no match for argument|unable to find a match|no matching (?:repo|distribution)|no package .* available|could not find a version|couldn't find (?:remote ref|resource)|did not match any file|unknown (?:module|database)|manifest unknown|no such (?:container|image|object|unit|device)|couldn't open file|could not find or access|\bresource_not_found\b",
            ResourceNotFound,
        ),
        n(&http("400", "bad request"), InvalidParameter),
        n(&http("405", "method not allowed"), InvalidParameter),
        n(&http("422", "unprocessable entity"), InvalidParameter),
        n(
            r"invalid (?:argument|parameter|input|value|url|requirement|reference format|operation)|\beinval\b|validation ?error|invalidparameter|malformed|bad request|url using bad/illegal format|protocol .* not supported|missing url|missing required (?:argument|field)|the following arguments are required|unsupported parameters|required value|\bis invalid\b|already exists|alreadyexists|already in use|already taken|cannot re-use a name|conflicting dependencies|unable to resolve dependency tree|\beresolve\b|unmet dependencies|not a git repository|duplicate (?:key|entry)|data too long|error in your sql syntax|syntax error at or near|\bwrongtype\b|wrong number of arguments|\bejsonparse\b|failed to parse|not in gzip format|unrecognized archive format|checksum did not match|\binvalid_parameter\b",
            InvalidParameter,
        ),
        n(
            r#"configuration error|invalid configuration|misconfigur|unknown (?:option|flag|directive|command)|unrecognized (?:option|argument)|invalid option|invalid choice|: is unknown|bad configuration option|no such option|syntax error|unsupported argument|argument or block definition required|inconsistent dependency lock file|initialization required|is misspelled or not recognized|is not a valid attribute|couldn't resolve module|has no property|externally-managed-environment|gpg (?:check failed|error|signature)|bad gpg signature|no_pubkey|doesn't have a resource type|\bconfiguration_error\b"#,
            ConfigurationError,
        ),
        // --- retryable ---
        r(&http("429", "too many requests"), RateLimitExceeded),
        r(
            r"too many requests|toomanyrequests|throttlingexception|\bthrottl(?:ed|ing)\b|\bslowdown\b|requestlimitexceeded|provisionedthroughputexceededexception|rate limit(?:ed|ing| exceeded| reached| hit)|reached your [a-z ]*rate limit|\brate exceeded|\brate_limit_exceeded\b",
            RateLimitExceeded,
        ),
        r(&http("500", "internal server error"), ServiceUnavailable),
        r(&http("502", "bad gateway"), ServiceUnavailable),
        r(&http("503", "service unavailable"), ServiceUnavailable),
        r(
            r"service (?:is )?(?:temporarily |currently )?unavailable|service unavailability|serviceunavailable|server (?:is )?(?:currently )?unavailable|currently unable to (?:handle|receive) the request|\binternalerror\b|\binternalfailure\b|internal (?:server )?error|bad gateway|server error|upstream (?:connect error|unavailable|timed out)|no healthy upstream|database system is (?:starting up|shutting down|in recovery mode)|shutdown in progress|is loading the dataset|\bservice_unavailable\b",
            ServiceUnavailable,
        ),
        r(
            r"resource (?:is )?(?:temporarily )?busy|device or resource busy|\bebusy\b|text file busy|target is busy|mount point busy|resource (?:is )?locked|could not get lock|frontend lock|lock was locked by another|lock held|holding the (?:[a-z]+ )?lock|waiting for process with pid|acquiring the state lock|could not obtain lock|cannot lock ref|index\.lock': file exists|another git process|deadlock (?:detected|found)|could not serialize access|in use by another|\bis busy\b|too many (?:connections|clients)|connection slots are reserved|max connections|another (?:operation|task) (?:[^ ]+ )?(?:is )?(?:already )?in progress|already in progress|(?:update|operation) is in progress|the object has been modified|incorrectinstancestate|not in a state from which|not allowed in the current state|conflicting conditional operation|marked for deletion|job queued|is using its referenced image|container state improper|\bresource_busy\b",
            ResourceBusy,
        ),
        r(
            r"connection refused|econnrefused|\bwas refused\b|connection reset|econnreset|reset by peer|connection (?:timed out|timeout)|connect(?:ion)? timed out|\betimedout\b|broken pipe|\bepipe\b|(?:tls|ssl) handshake|handshake (?:failure|timeout|failed)|ssl_error_syscall|connection (?:aborted|closed|unexpectedly closed|was closed)|closed the connection|lost connection|empty reply from server|couldn't connect to server|can't connect to (?:local )?mysql server|server has gone away|could not connect using the requested protocol|error in the http2 framing layer|network aborted|failed to establish a new connection|network connectivity|cannot connect to the docker daemon|\bconnection_error\b",
            ConnectionError,
        ),
        r(
            r"temporary failure|temporarily unavailable|\beagain\b|\btryagain\b|\bclusterdown\b|\bmasterdown\b|insufficientinstancecapacity|do not have sufficient [^ ]+ capacity|not have enough resources available|allocation failed|\btemporary_failure\b",
            TemporaryFailure,
        ),
        r(
            r"network (?:is )?unreachable|enetunreach|no route to host|ehostunreach|no such host|could not resolve (?:host|hostname|proxy)|couldn't resolve host|unable to resolve host|name or service not known|unknown host|unknown (?:mysql )?server host|dns (?:resolution|lookup)|server misbehaving|getaddrinfo|\benotfound\b|failed to resolve|unexpected eof|early eof|\beof\b|network error|network-related|transfer closed with .* remaining|was not closed cleanly|unexpected disconnect|all mirrors were tried|could not connect to the endpoint url|unreachable!|\bnetwork_error\b",
            NetworkError,
        ),
        r(&http("504", "gateway time-?out"), Timeout),
        r(
            r"\brequesttimeout\b|i/o timeout|timed out|\btimeouts?\b|timeout was reached|deadline exceeded|gatewaytimeout|gateway time-?out|not responding",
            Timeout,
        ),
        // The vaguest advice last: it only decides when nothing says more.
        r(r"try again|retry later|try later", TemporaryFailure),
    ]
}

struct Table {
    regex: regex_automata::meta::Regex,
    rows: Vec<(ErrorClass, bool)>,
}

impl Table {
    fn build(rows: Vec<Row>) -> Table {
        use regex_automata::{meta, util::syntax};
        // Case-insensitive by lowering both sides rather than `(?i)`, ASCII-only, and no
        // prefilter: building the literal prefilter (every case variant of every phrase, then
        // an Aho-Corasick DFA) cost about 8 ms on every run. The rows are ASCII and use no
        // upper-case escapes (`\S`), so ASCII lowering is exact (a test checks it).
        let (patterns, classes): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .map(|(p, c, retryable)| (p.to_ascii_lowercase(), (c, retryable)))
            .unzip();
        // The rows are constants of this file; their tests compile them.
        let regex = meta::Builder::new()
            .configure(
                meta::Config::new()
                    .auto_prefilter(false)
                    .match_kind(regex_automata::MatchKind::All),
            )
            // `^`/`$` at line ends: the same for one line, and lets one search over many lines
            // (`BuiltinScan::feed_lines`) find every row a line of them would match
            .syntax(
                syntax::Config::new()
                    .unicode(false)
                    .utf8(false)
                    .multi_line(true),
            )
            .build_many(&patterns)
            .unwrap_or_else(|e| panic!("built-in table: {e}"));
        Table {
            regex,
            rows: classes,
        }
    }

    /// The first row (lowest index) that matches the lowered line.
    fn first_row(&self, lowered: &[u8]) -> Option<usize> {
        let input = regex_automata::Input::new(lowered);
        // Most lines match nothing: one quick yes/no before collecting every row that matches.
        if !self.regex.is_match(input.clone()) {
            return None;
        }
        let mut found = regex_automata::PatternSet::new(self.regex.pattern_len());
        self.regex.which_overlapping_matches(&input, &mut found);
        found.iter().next().map(|p| p.as_usize())
    }
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table::build(rows()))
}

/// Lines at an informational log level, and phrases that state a setting: masked before
/// the table looks, so "INFO: request timeout set to 30s" decides nothing.
fn neutral() -> &'static regex::bytes::Regex {
    static N: OnceLock<regex::bytes::Regex> = OnceLock::new();
    N.get_or_init(|| {
        regex::bytes::Regex::new(concat!(
            r"(?-u)^\s*(?:\[[^\]]*\]\s*)?(?:\[(?:info|debug|trace|notice)\]|(?:info|debug|trace|notice)\s*:|level=(?:info|debug|trace)\b|[id][0-9]{4} [0-9:.]+ ).*",
            r"|(?:connect |read |request )?timeouts?\s*(?:set to|of|is|=|:)\s*[0-9][0-9a-z.]*",
            r"|--?[a-z-]*(?:timeout|retry|retries)[a-z-]*(?:[= ][^ ]+)?",
            r"|\b0 (?:errors?|timeouts?|failures?)\b|\bno errors\b",
            r"|\b(?:will )?retry(?:ing)? on:.*",
        ))
        .unwrap_or_else(|e| panic!("neutral table: {e}"))
    })
}

/// The row that decided, and the line it matched (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuiltinHit {
    row: usize,
    pub(crate) class: ErrorClass,
    pub(crate) retryable: bool,
    /// The output line that matched, trimmed, at most `QUOTE_MAX` characters.
    pub(crate) line: String,
}

/// Longest quote of a deciding line kept for messages.
const QUOTE_MAX: usize = 300;

/// The built-in table's verdict over one stream, fed line by line as the output goes by.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuiltinScan {
    best: Option<BuiltinHit>,
    /// The lowered line, reused: a long output must not cost an allocation per line.
    lowered: Vec<u8>,
}

impl BuiltinScan {
    /// Looks at one line (no newline). Cheap for lines that match nothing.
    pub(crate) fn feed_line(&mut self, line: &[u8]) {
        if self.settled() || line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let mut lowered = std::mem::take(&mut self.lowered);
        lowered.clear();
        lowered.extend(line.iter().map(u8::to_ascii_lowercase));
        self.judge(line, &lowered);
        self.lowered = lowered;
    }

    fn judge(&mut self, line: &[u8], lowered: &[u8]) {
        let t = table();
        let Some(mut row) = t.first_row(lowered) else {
            return;
        };
        let masked = neutral().replace_all(lowered, &b" "[..]);
        if masked.len() != lowered.len() || masked[..] != lowered[..] {
            match t.first_row(&masked) {
                Some(r) => row = r,
                None => return,
            }
        }
        if self.best.as_ref().is_some_and(|b| b.row <= row) {
            return;
        }
        let (class, retryable) = t.rows[row];
        let text = String::from_utf8_lossy(line);
        self.best = Some(BuiltinHit {
            row,
            class,
            retryable,
            line: text.trim().chars().take(QUOTE_MAX).collect(),
        });
    }

    /// Feeds every line of a text.
    pub(crate) fn feed_text(&mut self, text: &str) {
        if !self.any_line_may_match(text.as_bytes()) {
            return;
        }
        for line in text.lines() {
            self.feed_line(line.as_bytes());
        }
    }

    /// Feeds every line of a chunk of output (lines split at `\n`).
    pub(crate) fn feed_lines(&mut self, chunk: &[u8]) {
        if !self.any_line_may_match(chunk) {
            return;
        }
        for line in chunk.split(|&b| b == b'\n') {
            self.feed_line(line);
        }
    }

    /// One search over many lines before any line is looked at alone: most output matches no
    /// row, and a search per line cost more than the copy (~200 MiB/s on a stream of short
    /// lines). Never false where a line would match (`^`/`$` are line anchors and `.` stops at
    /// a newline); may be true where no line does (a row matched across lines).
    fn any_line_may_match(&mut self, chunk: &[u8]) -> bool {
        if self.settled() {
            return false;
        }
        let mut lowered = std::mem::take(&mut self.lowered);
        lowered.clear();
        lowered.extend(chunk.iter().map(u8::to_ascii_lowercase));
        let any = table()
            .regex
            .is_match(regex_automata::Input::new(&lowered[..]));
        self.lowered = lowered;
        any
    }

    /// Row 0 matched: nothing later can win, so the rest of the stream need not be looked at.
    pub(crate) fn settled(&self) -> bool {
        self.best.as_ref().is_some_and(|b| b.row == 0)
    }

    pub(crate) fn hit(&self) -> Option<&BuiltinHit> {
        self.best.as_ref()
    }
}

/// The built-in class of a whole text and whether it is retryable by nature.
#[cfg(test)]
pub(crate) fn builtin_class(text: &str) -> Option<(ErrorClass, bool)> {
    let mut scan = BuiltinScan::default();
    scan.feed_text(text);
    scan.hit().map(|h| (h.class, h.retryable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_ascii_lowering_and_compile() {
        // The rows are matched after lowering pattern and text alike: an upper-case escape
        // (`\S`, `\D`, `\W`, `\B`) or a non-ASCII phrase would change meaning when lowered.
        for (p, _, _) in rows() {
            assert!(p.is_ascii(), "non-ASCII row {p:?}");
            for w in p.as_bytes().windows(2) {
                assert!(
                    !(w[0] == b'\\' && w[1].is_ascii_uppercase()),
                    "row {p:?} has an upper-case escape"
                );
            }
        }
        assert!(table().rows.len() > 20);
    }

    #[test]
    fn the_first_row_wins_wherever_its_line_is() {
        let mut s = BuiltinScan::default();
        s.feed_text("connect: connection refused\nopen /etc/shadow: permission denied\nEOF");
        let h = s.hit().unwrap();
        assert_eq!((h.class, h.retryable), (PermissionError, false));
        assert_eq!(h.line, "open /etc/shadow: permission denied");
    }

    #[test]
    fn informational_lines_and_settings_decide_nothing() {
        for text in [
            "INFO: request timeout set to 30s",
            "[2026-01-21 15:00:05] DEBUG: read timeout=30s",
            "level=info msg=\"connection refused, retrying\"",
            "--connect-timeout 5",
            "0 errors",
        ] {
            assert_eq!(builtin_class(text), None, "{text:?}");
        }
        assert_eq!(
            builtin_class("Read timed out. (read timeout=10)"),
            Some((Timeout, true)),
            "masking a setting keeps the rest of the line"
        );
    }

    #[test]
    fn a_settled_scan_ignores_the_rest() {
        let mut s = BuiltinScan::default();
        s.feed_line(b"Is the server running locally?");
        assert!(s.settled());
        s.feed_line(b"permission denied");
        assert_eq!(s.hit().unwrap().class, ConnectionError);
    }

    /// The search over a whole chunk is only a gate: fed as one chunk or line by line, every
    /// corpus line (alone and behind unrelated lines) decides the same.
    #[test]
    fn a_chunk_decides_as_its_lines_would() {
        let corpus = include_str!("../../tests/data/classify_corpus.txt");
        let filler = "2026-12-05 processed request id=1 in 3ms\n";
        let mut decided = 0;
        for case in corpus
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            // CLASS TOOL TEXT ## REASON
            let text = case.splitn(3, ' ').nth(2).unwrap_or("");
            let text = text.split(" ## ").next().unwrap_or("").replace("\\n", "\n");
            for chunk in [
                text.clone(),
                format!("{}{text}\n{filler}", filler.repeat(50)),
            ] {
                let mut by_line = BuiltinScan::default();
                for line in chunk.split('\n') {
                    by_line.feed_line(line.as_bytes());
                }
                let mut whole = BuiltinScan::default();
                whole.feed_lines(chunk.as_bytes());
                assert_eq!(whole.hit(), by_line.hit(), "{chunk:?}");
                decided += usize::from(whole.hit().is_some());
            }
        }
        assert!(
            decided > 300,
            "only {decided} chunks decided: the corpus was not read"
        );
        // a row anchored to a whole line (`^ 503 $`) is found inside a chunk too
        let mut s = BuiltinScan::default();
        s.feed_lines(format!("{}  503  \n", filler.repeat(3)).as_bytes());
        assert_eq!(s.hit().map(|h| h.class), Some(ServiceUnavailable));
    }
}
