//! The live progress line of a CLI run: during a wait between attempts, one line on stderr
//! updated in place (`attempt 2/5 failed (connection_error) · retrying in 3.2s`), cleared when
//! the next attempt starts or the run ends. Only on a terminal unless `--progress always`;
//! colour only on a terminal and never with `NO_COLOR`. It draws; it never decides anything,
//! and it is never used by the module (whose stderr is not a person's).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::log::events::{Event, Observer, WaitData};

/// `--progress auto|always|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressWhen {
    /// When stderr is a terminal and -q was not given
    #[default]
    Auto,
    /// Even when stderr is not a terminal (no colour then)
    Always,
    /// Never
    Never,
}

/// How often the countdown is redrawn: smooth enough to read tenths, cheap enough to ignore.
const TICK: Duration = Duration::from_millis(100);

/// Whether to draw, and with colour: decided once from the flag, the terminal and `NO_COLOR`.
pub fn decide(when: ProgressWhen, quiet: bool) -> Option<bool> {
    let tty = std::io::stderr().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let draw = match when {
        ProgressWhen::Never => false,
        ProgressWhen::Always => true,
        ProgressWhen::Auto => tty && !quiet,
    };
    draw.then_some(tty && !no_color)
}

struct State {
    /// The wait being counted down: its text and when it ends.
    wait: Option<(String, Instant)>,
    /// The line is on the screen now.
    drawn: bool,
    /// A log line is being written: hands off the terminal.
    paused: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    color: bool,
}

/// The observer; a ticker thread redraws the countdown while a wait lasts.
pub struct Progress {
    shared: Arc<Shared>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl Progress {
    pub fn new(color: bool) -> Self {
        Progress {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    wait: None,
                    drawn: false,
                    paused: false,
                    stop: false,
                }),
                wake: Condvar::new(),
                color,
            }),
            ticker: Mutex::new(None),
        }
    }

    fn start_ticker(&self) {
        let Ok(mut ticker) = self.ticker.lock() else {
            return;
        };
        if ticker.is_some() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        // No thread (refused by a limit): no countdown, the run goes on as before.
        *ticker = std::thread::Builder::new()
            .name("retryx-progress".into())
            .spawn(move || tick(&shared))
            .ok();
    }
}

/// Redraws until stopped.
fn tick(shared: &Shared) {
    let Ok(mut st) = shared.state.lock() else {
        return;
    };
    while !st.stop {
        if !st.paused
            && let Some((text, until)) = &st.wait
        {
            let left = until.saturating_duration_since(Instant::now());
            let line = format!("\r\x1b[K{text}{}", countdown(left, shared.color));
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            st.drawn = true;
        }
        st = match shared.wake.wait_timeout(st, TICK) {
            Ok((g, _)) => g,
            Err(_) => return,
        };
    }
}

fn clear(st: &mut State) {
    if st.drawn {
        let _ = std::io::stderr().lock().write_all(b"\r\x1b[K");
        st.drawn = false;
    }
}

/// `attempt 2/5 failed (connection_error) · ` (the countdown follows).
pub fn wait_text(w: &WaitData, color: bool) -> String {
    let class = w
        .class
        .map(|c| c.to_string())
        .unwrap_or_else(|| "failed".into());
    let (red, yellow, dim, reset) = if color {
        ("\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "", "")
    };
    format!(
        "attempt {}/{} {red}failed{reset} ({yellow}{class}{reset}) {dim}·{reset} ",
        w.attempt, w.max_attempts
    )
}

/// `retrying in 3.2s` / `retrying in 2m05s`.
pub fn countdown(left: Duration, color: bool) -> String {
    let secs = left.as_secs_f64();
    let t = if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = left.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    };
    if color {
        format!("retrying in \x1b[1m{t}\x1b[0m")
    } else {
        format!("retrying in {t}")
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event) {
        let Ok(mut st) = self.shared.state.lock() else {
            return;
        };
        match event {
            Event::Wait(w) => {
                let until = Instant::now() + Duration::from_secs_f64(w.delay.max(0.0));
                st.wait = Some((wait_text(w, self.shared.color), until));
                drop(st);
                self.start_ticker();
                self.shared.wake.notify_all();
            }
            // Anything else ends the wait (the next attempt, a guard, the end).
            _ => {
                st.wait = None;
                clear(&mut st);
            }
        }
    }

    fn before_log_line(&self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.paused = true;
            clear(&mut st);
        }
    }

    fn after_log_line(&self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.paused = false;
        }
        self.shared.wake.notify_all();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.stop = true;
            st.wait = None;
            clear(&mut st);
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ErrorClass;

    #[test]
    fn the_line_reads_as_the_issue_shows_it() {
        let w = WaitData {
            attempt: 2,
            next_attempt: 3,
            max_attempts: 5,
            delay: 3.2,
            class: Some(ErrorClass::ConnectionError),
        };
        let text = format!(
            "{}{}",
            wait_text(&w, false),
            countdown(Duration::from_millis(3200), false)
        );
        assert_eq!(
            text,
            "attempt 2/5 failed (connection_error) · retrying in 3.2s"
        );
        assert_eq!(
            countdown(Duration::from_secs(125), false),
            "retrying in 2m05s"
        );
        assert!(wait_text(&w, true).contains("\x1b[33mconnection_error\x1b[0m"));
    }

    #[test]
    fn never_draws_when_told_never() {
        assert_eq!(decide(ProgressWhen::Never, false), None);
        // The test harness's stderr is not a terminal here or is; `always` draws either way.
        assert!(decide(ProgressWhen::Always, true).is_some());
    }
}
