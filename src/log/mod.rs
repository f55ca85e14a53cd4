//! Log lines in the seeds' format: `[2026-01-21 15:00:05] WARN: message | k=v, k=v`. To stderr
//! (CLI) or kept in memory (module, where stderr is not the user's). Never logs secrets: callers
//! pass redacted values. It also carries the run's observers (the `--events` stream, the live
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

/// One line; values are flattened to one line so a record cannot forge log lines.
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
        message
    );
    if !fields.is_empty() {
        line.push_str(" | ");
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(['\n', '\r'], " ")))
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
}
