//! Redaction of notification secrets: receivers' URLs shown as scheme, host and port only, and
//! every secret a sink handles (the parts of a URL, auth header values, API keys) registered,
//! with the forms it travels in (base64, percent-encoded and -decoded), to be scrubbed from
//! errors and receivers' answers. Everything a sink logs or records passes through here;
//! nothing in this file may ever print a secret it was handed.

/// What is shown in place of a secret.
pub const MASK: &str = "***";

/// What is shown of a receiver's URL: scheme, host and port only (`crate::log::url_origin`).
/// A relay can carry a Slack hook's token anywhere in its path, a webhook its key in a segment
/// or the query: no part past the port is shown.
pub fn redact_url(url: &str) -> String {
    crate::log::url_origin(url)
}

/// `text` with every byte outside RFC 3986's unreserved set as `%XX` (the form a token takes
/// in a query string), in upper-case hex (RFC 3986's advice) or lower-case (what some clients
/// and relays write).
fn percent_encode(text: &str, lower: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
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

/// Path segments of the receivers' documented endpoints (`/services/`, `/api/v2/series`,
/// `/api/v1/write`, `/metrics/job/`): not registered as secrets.
const ENDPOINT_WORDS: &[&str] = &[
    "services", "api", "series", "events", "write", "push", "metrics", "job", "hooks", "webhook",
    "webhooks",
];

/// Removes known secret strings from free text (error messages, response bodies).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret; strings under 4 bytes are ignored (masking every "ab" would mangle
    /// text; docs/notifications.md says so).
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
            // Both hex cases (`add_one` keeps one copy when they are the same).
            for lower in [false, true] {
                let encoded = percent_encode(s, lower);
                // (form encoding writes a space as '+')
                self.add_one(&encoded.replace("%20", "+"));
                self.add_one(&encoded);
            }
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

    /// Registers a URL's secret parts, each also percent-decoded: the whole URL, the user info
    /// and password (and so the base64 an `Authorization: Basic` header carries), everything
    /// past the host (path and query), each path segment and each query value. Which part holds
    /// a secret cannot be told (a relay puts a Slack token anywhere in its path), so all are
    /// masked: where a harmless segment (`in`, `v1`) recurs in a receiver's answer, that answer
    /// is mangled a little (the segment shows as `***`).
    pub fn add_url(&mut self, url: &str) {
        self.add_url_parts(url, true);
    }

    /// Registers a download URL's secret parts: as `add_url`, but when the last path segment is
    /// the file name `dest` has (which messages about the file show anyway), it is left out, so
    /// that those messages stay readable. A last segment `dest` does not show is a secret like
    /// the rest (`https://h/download/<token>` saved as `/opt/app.tgz`).
    pub fn add_download_url(&mut self, url: &str, dest_file_name: Option<&str>) {
        let path = url
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .split(['?', '#'])
            .next()
            .unwrap_or("");
        let last = path.rsplit('/').next().unwrap_or("");
        let shown_anyway = dest_file_name
            .is_some_and(|name| !last.is_empty() && (last == name || percent_decode(last) == name));
        self.add_url_parts(url, !shown_anyway);
    }

    /// Registers a header value, and what it carries: the token after an auth scheme (`Bearer
    /// <t>`), and for `Basic <base64>` the decoded `user:password` and the password (a receiver
    /// that decodes it shows them).
    pub fn add_header_value(&mut self, v: &str) {
        use base64::Engine as _;
        self.add(v);
        if let Some((scheme, tok)) = v.split_once(' ') {
            self.add(tok);
            if scheme.eq_ignore_ascii_case("basic")
                && let Some(plain) = base64::engine::general_purpose::STANDARD
                    .decode(tok.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
            {
                self.add(&plain);
                if let Some((_, password)) = plain.split_once(':') {
                    self.add(password);
                }
            }
        }
    }

    fn add_url_parts(&mut self, url: &str, last_segment: bool) {
        self.add_both(url);
        let Some((_, rest)) = url.split_once("://") else {
            return;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            // What `Authorization: Basic` carries: base64 of the decoded user:password.
            self.add_both(userinfo);
            if let Some((_, password)) = userinfo.split_once(':') {
                self.add_both(password);
            }
        }
        let (path, query) = tail.split_once(['?', '#']).unwrap_or((tail, ""));
        if last_segment {
            self.add_both(tail);
        } else {
            // the tail without the file name (a message about the file quotes its path)
            self.add_both(path.rsplit_once('/').map_or("", |(dir, _)| dir));
        }
        let segments: Vec<&str> = path.split('/').collect();
        let keep = if last_segment {
            segments.len()
        } else {
            segments.len().saturating_sub(1)
        };
        for seg in &segments[..keep] {
            // The receivers' own endpoint words are no one's secret, and masking them would
            // mangle their answers ("out of order sample write").
            if !ENDPOINT_WORDS.contains(&seg.to_ascii_lowercase().as_str()) {
                self.add_both(seg);
            }
        }
        self.add_both(query);
        for pair in query.split(['&', ';', '#']) {
            self.add_both(pair);
            if let Some((_, value)) = pair.split_once('=') {
                self.add_both(value);
            }
        }
    }

    /// Registers `text` and its percent-decoded form (a URL carries a secret encoded, a request
    /// or a receiver's echo may show it decoded).
    fn add_both(&mut self, text: &str) {
        self.add(text);
        let decoded = percent_decode(text);
        if decoded != text {
            self.add(&decoded);
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
    fn urls_are_shown_as_scheme_host_and_port() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/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",
                "https://hooks.slack.com",
            ),
            (
                "http://127.0.0.1:9/services/T1/B2/abc",
                "http://127.0.0.1:9",
            ),
            (
                "https://user:pw@api.example.com/api/v2/series?api_key=abc#x",
                "https://api.example.com",
            ),
            ("http://h:1/hook/a1b2c3d4e5f6a7b8c9d0e1f2/x", "http://h:1"),
            ("not a url", MASK),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
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
        let relay = "http://relay.local:8080/x/services/T000/B000/SeCrEt";
        assert_eq!(redact_url(relay), "http://relay.local:8080");
        let mut r = Redactor::new();
        r.add_url(relay);
        let echo = "POST /x/services/T000/B000/SeCrEt HTTP/1.1; token SeCrEt";
        assert!(!r.scrub(echo).contains("SeCrEt"), "{}", r.scrub(echo));
        let mut r = Redactor::new();
        r.add_url("http://h:1/hook?key=a%2Bb%3Dc&x=1");
        assert_eq!(r.scrub("got a+b=c"), "got ***");
        let mut r = Redactor::new();
        r.add_url("http://h:1/api/v1/write");
        assert_eq!(
            r.scrub("out of order sample write"),
            "out of order sample write"
        );
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
        let out = r.scrub(&format!("q=tok%20en%2F%2B%3D b={b64} f=tok+en%2F%2B%3D"));
        assert_eq!(out, "q=*** b=*** f=***");
        // lower-case hex, as some clients and relays write it
        assert_eq!(r.scrub("q=tok%20en%2f%2b%3d"), "q=***");
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

    #[test]
    fn a_download_url_keeps_the_file_name_dest_shows_and_masks_one_it_does_not() {
        let mut red = Redactor::new();
        red.add_download_url("http://h/images/f.bin", Some("f.bin"));
        // a message about the file (dest and its .part) stays readable
        assert_eq!(red.scrub("/tmp/x/f.bin.part"), "/tmp/x/f.bin.part");
        assert_eq!(red.scrub("GET /images/f.bin"), format!("GET {MASK}/f.bin"));
        let token = "T0kenS3cretXYZ";
        let mut red = Redactor::new();
        red.add_download_url(&format!("https://h/download/{token}"), Some("app.tgz"));
        assert_eq!(
            red.scrub(&format!("no such file {token}")),
            format!("no such file {MASK}")
        );
        let mut red = Redactor::new();
        red.add_download_url(&format!("https://h/d/{token}?x=1"), None);
        assert!(!red.scrub(token).contains(token));
    }
}
