//! Redaction of notification secrets: Slack hook paths, tokens in URLs (user info, query,
//! token-like path segments) and auth header values. Everything a sink logs or records passes
//! through here; nothing in this file may ever print a secret it was handed.

/// What is shown in place of a secret.
pub const MASK: &str = "***";

/// A URL with its secrets masked: user info dropped, query and fragment masked, Slack hook
/// paths reduced to `/services/***`, token-like path segments masked.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return MASK.to_string(),
    };
    let (authority, path_and_more) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let (path, tail) = match path_and_more.find(['?', '#']) {
        Some(i) => path_and_more.split_at(i),
        None => (path_and_more, ""),
    };
    let mut out = format!("{scheme}://{host}");
    // A relay may carry a Slack hook anywhere in its path (`/x/services/T/B/TOKEN`).
    if path.to_ascii_lowercase().contains("/services/")
        || host.eq_ignore_ascii_case("hooks.slack.com")
    {
        out.push_str("/services/");
        out.push_str(MASK);
    } else {
        let segments: Vec<String> = path
            .split('/')
            .map(|seg| {
                if looks_like_token(seg) {
                    MASK.to_string()
                } else {
                    seg.to_string()
                }
            })
            .collect();
        out.push_str(&segments.join("/"));
    }
    if !tail.is_empty() {
        out.push_str(if tail.starts_with('?') { "?" } else { "#" });
        out.push_str(MASK);
    }
    out
}

/// `text` with every byte outside RFC 3986's unreserved set as `%XX` (the form a token takes
/// in a query string).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` sequences decoded (user info in a URL is written encoded, sent decoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path segment that is probably a credential: long and mixing letters and digits, or
/// named like one.
fn looks_like_token(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    if ["token", "apikey", "api_key", "secret", "password"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return true;
    }
    let letters = seg.chars().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = seg.chars().filter(|c| c.is_ascii_digit()).count();
    seg.len() >= 20 && letters > 0 && digits > 0 && !seg.contains('@')
}

/// Removes known secret strings from free text (error messages, response bodies).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret; very short strings are ignored (masking them would mangle text).
    pub fn add(&mut self, secret: &str) {
        use base64::Engine as _;
        let s = secret.trim();
        // The forms a secret travels in are secrets too: base64 std and url-safe, padded or not
        // (a Basic header, a token in a path) and URL-encoded (a query); a receiver that echoes
        // a request shows them.
        if s.len() >= 4 {
            self.add_one(&base64::engine::general_purpose::STANDARD.encode(s));
            self.add_one(&base64::engine::general_purpose::URL_SAFE.encode(s));
            self.add_one(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(s));
            self.add_one(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s));
            self.add_one(&percent_encode(s));
        }
        self.add_one(s);
    }

    fn add_one(&mut self, s: &str) {
        if s.len() >= 4 && !self.secrets.iter().any(|x| x == s) {
            self.secrets.push(s.to_string());
            // Longest first so a secret containing another is masked whole.
            self.secrets.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// Registers a URL's secret parts: the whole URL, its path and query, the user info and
    /// each token-like path segment.
    pub fn add_url(&mut self, url: &str) {
        self.add(url);
        if let Some((_, rest)) = url.split_once("://") {
            if let Some(at) = rest.find('@') {
                let slash = rest.find('/').unwrap_or(rest.len());
                if at < slash {
                    let userinfo = &rest[..at];
                    self.add(userinfo);
                    // What `Authorization: Basic` carries: base64 of the decoded user:password.
                    self.add(&percent_decode(userinfo));
                    if let Some((_, password)) = userinfo.split_once(':') {
                        self.add(password);
                        self.add(&percent_decode(password));
                    }
                }
            }
            if let Some(i) = rest.find('/') {
                let path = &rest[i..];
                let is_slack = path.starts_with("/services/");
                if is_slack {
                    self.add(path);
                }
                let bare = path.split(['?', '#']).next().unwrap_or(path);
                for seg in bare.split('/') {
                    if looks_like_token(seg) || (is_slack && seg.len() >= 8) {
                        self.add(seg);
                    }
                }
                if let Some(q) = path.find('?') {
                    self.add(&path[q + 1..]);
                }
            }
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_hook_paths_are_masked() {
        assert_eq!(
            redact_url(
                "https://hooks.slack.com/services/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"
            ),
            "https://hooks.slack.com/services/***"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/services/T1/B2/abc"),
            "http://127.0.0.1:9/services/***"
        );
    }

    #[test]
    fn user_info_query_and_tokens_are_masked() {
        assert_eq!(
            redact_url("https://user:pw@api.example.com/api/v2/series?api_key=abc#x"),
            "https://api.example.com/api/v2/series?***"
        );
        assert_eq!(
            redact_url("http://h:1/hook/a1b2c3d4e5f6a7b8c9d0e1f2/x"),
            "http://h:1/hook/***/x"
        );
        assert_eq!(
            redact_url("http://h:1/metrics/job/retryx"),
            "http://h:1/metrics/job/retryx"
        );
        assert_eq!(redact_url("not a url"), MASK);
    }

    #[test]
    fn redactor_scrubs_registered_secrets() {
        let mut r = Redactor::new();
        r.add_url("http://127.0.0.1:9/services/T0AAAA/B0BBBB/s3cr3tW3bh00k");
        r.add("Bearer abcdef123456");
        r.add("ab"); // too short: ignored
        let text = "POST http://127.0.0.1:9/services/T0AAAA/B0BBBB/s3cr3tW3bh00k failed; \
                    token s3cr3tW3bh00k, header Bearer abcdef123456, ab";
        let got = r.scrub(text);
        assert!(!got.contains("s3cr3t"), "{got}");
        assert!(!got.contains("abcdef123456"), "{got}");
        assert!(got.ends_with(", ab"));
    }

    #[test]
    fn a_relayed_hook_is_masked_and_derived_forms_of_secrets_too() {
        use base64::Engine as _;
        let relay = "http://relay.local:8080/x/services/T000/B000/SeCrEtToKeN42xyz";
        assert_eq!(redact_url(relay), "http://relay.local:8080/services/***");
        assert_eq!(
            redact_url("https://u:p@push.local:9091/metrics/job/x?token=abc"),
            "https://push.local:9091/metrics/job/x?***"
        );
        assert_eq!(redact_url("http://h:1"), "http://h:1");
        let mut r = Redactor::new();
        r.add_url("http://user:p%40ss%2Fw0rd@push.local:9091/metrics");
        let basic = base64::engine::general_purpose::STANDARD.encode("user:p@ss/w0rd");
        let text = format!("Authorization: Basic {basic} pw=p%40ss%2Fw0rd raw=p@ss/w0rd");
        let out = r.scrub(&text);
        assert!(!out.contains(&basic) && !out.contains("p@ss/w0rd"), "{out}");
        assert!(!out.contains("p%40ss%2Fw0rd"), "{out}");
        let mut r = Redactor::new();
        r.add("tok en/+=");
        let b64 = base64::engine::general_purpose::STANDARD.encode("tok en/+=");
        let out = r.scrub(&format!("q=tok%20en%2F%2B%3D b={b64}"));
        assert_eq!(out, "q=*** b=***");
    }

    #[test]
    fn url_safe_and_unpadded_base64_forms_are_masked() {
        use base64::Engine as _;
        let secret = "p>ss?w~rd>>??"; // bytes whose base64 differs between std and url-safe
        let mut red = Redactor::new();
        red.add(secret);
        for e in [
            base64::engine::general_purpose::URL_SAFE.encode(secret),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret),
        ] {
            let out = red.scrub(&format!("echo: {e}"));
            assert_eq!(out, format!("echo: {MASK}"), "{e}");
        }
    }
}
