//! Log lines in the seeds' format: `[2026-01-21 15:00:05] WARN: message | k=v, k=v`. To stderr
//! (CLI) or kept in memory (module, where stderr is not the user's). Never logs secrets: callers
//! pass redacted values (`url_origin` is what may be shown of any URL, here and everywhere; a
//! download's URL is shown in the same `scheme://host:port` form by `download::shown_url`);
//! never writes a raw control character (`escape_controls`, also used by the text views). It
//! also carries the run's observers (the `--events` stream, the live
//! progress line): the logger already reaches every place where something happens (engine,
//! guards, sinks), and a line drawn in place on the terminal must step aside for a log line.

use std::sync::Mutex;

pub mod events;

use events::{Event, Observer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Where lines go.
pub struct Logger {
    /// Lines above this level are dropped; `None` drops everything.
    max: Option<Level>,
    to_stderr: bool,
    kept: Mutex<Vec<String>>,
    observers: Vec<Box<dyn Observer>>,
}

impl Logger {
    /// `verbosity`: -2 silent, -1 errors only, 0 info, 1 debug.
    pub fn stderr(verbosity: i8) -> Self {
        Self {
            max: Self::level_for(verbosity),
            to_stderr: true,
            kept: Mutex::new(Vec::new()),
            observers: Vec::new(),
        }
    }

    /// Keeps lines in memory (the module returns them).
    pub fn memory(verbosity: i8) -> Self {
        Self {
            max: Self::level_for(verbosity),
            to_stderr: false,
            kept: Mutex::new(Vec::new()),
            observers: Vec::new(),
        }
    }

    fn level_for(verbosity: i8) -> Option<Level> {
        match verbosity {
            i8::MIN..=-2 => None,
            -1 => Some(Level::Error),
            0 => Some(Level::Info),
            _ => Some(Level::Debug),
        }
    }

    /// Adds an observer of the run's events.
    pub fn with_observer(mut self, observer: Box<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Hands an event to every observer; at debug level (`-v`) an attempt's end and a guard's
    /// decision also become a log line.
    pub fn event(&self, event: &Event) {
        for o in &self.observers {
            o.event(event);
        }
        if self.enabled(Level::Debug)
            && let Some((message, fields)) = events::detail(event)
        {
            self.debug(message, &fields);
        }
    }

    pub fn enabled(&self, level: Level) -> bool {
        self.max.is_some_and(|m| level <= m)
    }

    pub fn log(&self, level: Level, message: &str, fields: &[(&str, String)]) {
        if self.enabled(level) {
            self.write(level, message, fields);
        }
    }

    fn write(&self, level: Level, message: &str, fields: &[(&str, String)]) {
        let line = format_line(chrono::Local::now().naive_local(), level, message, fields);
        if self.to_stderr {
            use std::io::Write;
            self.observers.iter().for_each(|o| o.before_log_line());
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            self.observers.iter().for_each(|o| o.after_log_line());
        } else if let Ok(mut kept) = self.kept.lock() {
            kept.push(line);
        }
    }

    pub fn error(&self, message: &str, fields: &[(&str, String)]) {
        self.log(Level::Error, message, fields)
    }
    pub fn warn(&self, message: &str, fields: &[(&str, String)]) {
        self.log(Level::Warn, message, fields)
    }
    /// A WARN line that says why the run ended (a command that could not start, a
    /// non-retryable failure, a stop signal): `-q` keeps it, only `-qq` drops it.
    pub fn warn_reason(&self, message: &str, fields: &[(&str, String)]) {
        if self.enabled(Level::Error) && !self.enabled(Level::Warn) {
            self.write(Level::Warn, message, fields);
        } else {
            self.log(Level::Warn, message, fields);
        }
    }
    pub fn info(&self, message: &str, fields: &[(&str, String)]) {
        self.log(Level::Info, message, fields)
    }
    pub fn debug(&self, message: &str, fields: &[(&str, String)]) {
        self.log(Level::Debug, message, fields)
    }

    /// The lines kept in memory so far.
    pub fn lines(&self) -> Vec<String> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

/// `text` with every control character shown as an escape: C0 and DEL as `\x1b`, C1 and the
/// Unicode line separators and bidi overrides as `\u{9b}`. What an operation name, a message or
/// a command's output carries must not drive the terminal reading a log line or a text view
/// (ESC/OSC sequences retitle, recolour or hide text; a bidi override reorders it).
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(is_escaped) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let code = u32::from(c);
        if !is_escaped(c) {
            out.push(c);
        } else if code < 0x80 {
            out.push_str(&format!("\\x{code:02x}"));
        } else {
            out.push_str(&format!("\\u{{{code:x}}}"));
        }
    }
    out
}

fn is_escaped(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// What may be shown of a URL anywhere (a result's `target`, a log line, a record, an error, a
/// validate message): `scheme://host:port`, nothing else. User info, path and query may all
/// carry a secret (a password, a Slack hook's token behind a relay, `?api_key=`), and which
/// part does cannot be told from the text. Anything that does not parse as plainly as that
/// (`u:pa/ss@host`, an odd host) is shown as `scheme://***`.
pub fn url_origin(url: &str) -> String {
    let Some((scheme, rest)) = url.trim().split_once("://") else {
        return "***".to_string();
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return "***".to_string();
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
        match inner.split_once(']') {
            Some((h, p)) => (format!("[{h}]"), p),
            None => (String::new(), ""),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (host_port.to_string(), ""),
        }
    };
    let host_ok = !host.is_empty()
        && host.chars().all(|c| {
            c.is_ascii_alphanumeric() || ".-_[]:".contains(c) || (!c.is_ascii() && !c.is_control())
        });
    let port_ok = match port.strip_prefix(':') {
        Some(p) => !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()),
        None => port.is_empty() || port.chars().all(|c| c.is_ascii_digit()),
    };
    let scheme = scheme.to_ascii_lowercase();
    if !host_ok || !port_ok {
        return format!("{scheme}://***");
    }
    let port = port.trim_start_matches(':');
    if port.is_empty() {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// One line; values are flattened to one line so a record cannot forge log lines, and control
/// characters are escaped so none reaches the terminal.
pub fn format_line(
    at: chrono::NaiveDateTime,
    level: Level,
    message: &str,
    fields: &[(&str, String)],
) -> String {
    let mut line = format!(
        "[{}] {}: {}",
        at.format("%Y-%m-%d %H:%M:%S"),
        level.name(),
        escape_controls(message)
    );
    if !fields.is_empty() {
        line.push_str(" | ");
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_controls(&v.replace(['\n', '\r'], " "))))
            .collect();
        line.push_str(&parts.join(", "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_the_seeds() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 21)
            .unwrap()
            .and_hms_opt(15, 0, 5)
            .unwrap();
        let line = format_line(
            at,
            Level::Warn,
            "operation failed, retrying",
            &[
                ("operation", "vCenter login".into()),
                ("attempt", "1".into()),
                ("delay", "1s".into()),
                ("error", "connection\ntimeout".into()),
            ],
        );
        assert_eq!(
            line,
            "[2026-01-21 15:00:05] WARN: operation failed, retrying | operation=vCenter login, attempt=1, delay=1s, error=connection timeout"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 21)
            .unwrap()
            .and_hms_opt(15, 0, 5)
            .unwrap();
        let line = format_line(
            at,
            Level::Warn,
            "failed \u{1b}[2J",
            &[
                ("operation", "a\u{1b}]0;owned\u{7}b".into()),
                ("error", "x\u{9b}31m\u{7f}\ty\nz é ✓".into()),
            ],
        );
        assert_eq!(
            line,
            "[2026-01-21 15:00:05] WARN: failed \\x1b[2J | operation=a\\x1b]0;owned\\x07b, error=x\\u{9b}31m\\x7f\\x09y z é ✓"
        );
        assert_eq!(escape_controls("\u{202e}abc"), "\\u{202e}abc");
    }

    #[test]
    fn urls_are_shown_as_scheme_host_and_port_only() {
        for (url, shown) in [
            (
                "http://relay.local:8080/x/services/T000/B000/SeCrEt",
                "http://relay.local:8080",
            ),
            (
                "https://hooks.slack.com/services/T/B/X",
                "https://hooks.slack.com",
            ),
            (
                "https://u:p%40ss@push.local:9091/metrics?token=abc#f",
                "https://push.local:9091",
            ),
            ("redis://:pw@[::1]:7000/0", "redis://[::1]:7000"),
            ("HTTP://h?api_key=1", "http://h"),
            ("http://u:pa/ss@host/x", "http://***"),
            ("http://u@p@ss@host:1/x", "http://host:1"),
            ("not a url", "***"),
        ] {
            assert_eq!(url_origin(url), shown, "{url}");
        }
    }
}
