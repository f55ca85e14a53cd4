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
    if path.starts_with("/services/") || host.eq_ignore_ascii_case("hooks.slack.com") {
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
        let s = secret.trim();
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
                    self.add(&rest[..at]);
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
}
