//! Pictures and listings of a session: a timeline in SVG (one row per operation, attempts as
//! bars coloured by outcome with their error class, timeouts apart, waits as gaps, a wait cut by
//! a stop signal drawn cut, every alert marked and written out, legend and time axis), the same
//! in a single self-contained HTML file, and plain text for terminals. Control characters from
//! records are shown escaped in every view, never raw. Pure: strings in, string out.

use std::fmt::Write;

use super::alerts::Alert;
use super::stats::seconds_between;
use super::store::SessionView;
use super::{AttemptRecord, AttemptStatus, OperationRecord, OperationStatus};
use crate::log::escape_controls;

/// Rows drawn at most; the rest are counted in a note (a picture of 10,000 rows helps no one).
pub const MAX_ROWS: usize = 400;
const LABEL_W: f64 = 300.0;
const PLOT_W: f64 = 760.0;
const ROW_H: f64 = 22.0;
const TOP: f64 = 92.0;

pub const WIDTH: u32 = (LABEL_W + PLOT_W + 40.0) as u32;

/// XML text with control characters (and bidi overrides) shown as escapes, as in the text view
/// and the log lines (XML 1.0 forbids most C0 characters anyway).
fn esc(s: &str) -> String {
    let s = escape_controls(s);
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Colours by outcome: success, failed and retried, failed for good, aborted, timed out.
pub const COLOURS: [(&str, &str); 5] = [
    ("success", "#2e9e44"),
    ("failed, retried", "#f0a030"),
    ("failed, final", "#d43c3c"),
    ("aborted", "#808080"),
    ("timed out", "#7b3fb0"),
];

/// Which of `COLOURS` an attempt gets. A timeout is told apart from other failures; the last
/// attempt of an operation stopped during its wait was not retried, whatever it planned.
fn outcome(a: &AttemptRecord, r: &OperationRecord) -> usize {
    let last = r.attempts.last().is_some_and(|l| std::ptr::eq(l, a));
    match a.status {
        AttemptStatus::Success => 0,
        AttemptStatus::Aborted => 3,
        AttemptStatus::Failed if a.timed_out => 4,
        AttemptStatus::Failed if a.should_retry && !(last && aborted(r)) => 1,
        AttemptStatus::Failed => 2,
    }
}

fn aborted(r: &OperationRecord) -> bool {
    r.status == OperationStatus::Aborted
}

/// Every alert of the view once: the session's (which include the operations' once
/// finalized), then any operation's own not among them (an open session).
fn all_alerts(view: &SessionView) -> Vec<&Alert> {
    let mut out: Vec<&Alert> = view.session.alerts.iter().collect();
    for d in &view.operation_details {
        for a in &d.alerts {
            if !out
                .iter()
                .any(|b| b.message == a.message && b.scope == a.scope)
            {
                out.push(a);
            }
        }
    }
    out
}

/// One line per alert under the legend.
const ALERT_LINE: f64 = 16.0;

/// The SVG's height for a view.
pub fn height(view: &SessionView) -> u32 {
    let rows = view.operation_details.len().clamp(1, MAX_ROWS);
    let alerts = all_alerts(view).len() as f64;
    (TOP + rows as f64 * ROW_H + 90.0 + alerts * ALERT_LINE) as u32
}

fn nice_step(span: f64) -> f64 {
    let raw = span / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Long (~220 lines): one drawing, top to bottom (axes, attempts, waits, alerts, legend).
/// The timeline as an SVG document.
pub fn svg(view: &SessionView) -> String {
    let s = &view.session;
    let ops = &view.operation_details;
    let start = s.session_start.as_str();
    let span = ops
        .iter()
        .map(|o| seconds_between(start, &o.record.end_time))
        .fold(s.session_duration, f64::max)
        .max(0.001);
    let x = |t: f64| LABEL_W + (t / span).clamp(0.0, 1.0) * PLOT_W;
    let w = WIDTH;
    let h = height(view);
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">
<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>
<text x="16" y="24" font-size="16" font-weight="bold">retryx session {sid}</text>
<text x="16" y="44">{status} · {n} operation(s) · {ok} succeeded · {failed} failed · {retries} retries · {dur:.3}s · {alerts} alert(s)</text>
"##,
        sid = esc(&s.session_id),
        status = esc(&s.session_status),
        n = s.final_statistics.total_operations,
        ok = s.final_statistics.successful_operations,
        failed = s.final_statistics.failed_operations,
        retries = s.final_statistics.total_retry_attempts,
        dur = s.session_duration,
        alerts = s.alerts.len(),
    );
    // Time axis with gridlines.
    let step = nice_step(span);
    let axis_y = TOP - 8.0;
    let bottom = TOP + ops.len().clamp(1, MAX_ROWS) as f64 * ROW_H;
    let _ = writeln!(
        o,
        r##"<line x1="{}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333"/>"##,
        LABEL_W,
        LABEL_W + PLOT_W
    );
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" y1="{}" x2="{xx:.1}" y2="{bottom}" stroke="#e4e4e4"/><text x="{xx:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            axis_y,
            axis_y - 6.0,
            fmt_secs(t)
        );
        t += step;
    }
    for (i, d) in ops.iter().take(MAX_ROWS).enumerate() {
        let r = &d.record;
        let y = TOP + i as f64 * ROW_H;
        if i % 2 == 1 {
            let _ = writeln!(
                o,
                r##"<rect x="0" y="{y}" width="{w}" height="{ROW_H}" fill="#f6f6f6"/>"##
            );
        }
        let label = format!(
            "{} · {} · {}/{}",
            short(&r.operation_name, 26),
            r.status.as_str(),
            r.attempt_count,
            r.max_attempts
        );
        let _ = writeln!(
            o,
            r##"<text x="16" y="{:.1}"><title>{}</title>{}</text>"##,
            y + 15.0,
            esc(&r.operation_id),
            esc(&label)
        );
        // Waits: a thin line from one attempt's end to the next one's start (the gap).
        for pair in r.attempts.windows(2) {
            let (a, b) = (
                x(seconds_between(start, &pair[0].end_time)),
                x(seconds_between(start, &pair[1].start_time)),
            );
            let _ = writeln!(
                o,
                r##"<line x1="{a:.1}" y1="{:.1}" x2="{b:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="3,2"/>"##,
                y + 11.0,
                y + 11.0
            );
        }
        // An operation stopped during a wait: the wait drawn up to where it was cut, then ×.
        if aborted(r)
            && let Some(a) = r.attempts.last()
            && a.status == AttemptStatus::Failed
            && a.should_retry
        {
            let (from, to) = (
                seconds_between(start, &a.end_time),
                seconds_between(start, &r.end_time),
            );
            let (xa, xb, ym) = (x(from), x(to).max(x(from) + 4.0), y + 11.0);
            let tip = format!(
                "wait of {:.3}s cut after {:.3}s: retryx was stopped",
                a.delay_before_retry,
                (to - from).max(0.0)
            );
            let _ = writeln!(
                o,
                r##"<g><title>{}</title><line x1="{xa:.1}" y1="{ym:.1}" x2="{xb:.1}" y2="{ym:.1}" stroke="#808080" stroke-dasharray="3,2"/><path d="M{:.1},{:.1} l6,6 m0,-6 l-6,6" stroke="#808080" stroke-width="2"/></g>"##,
                esc(&tip),
                xb - 3.0,
                ym - 3.0
            );
        }
        for a in &r.attempts {
            let x0 = x(seconds_between(start, &a.start_time));
            let x1 = x(seconds_between(start, &a.end_time)).max(x0 + 3.0);
            let colour = COLOURS[outcome(a, r)].1;
            let tip = format!(
                "attempt {}: {} {} {:.3}s{}",
                a.attempt_number,
                COLOURS[outcome(a, r)].0,
                a.error_type.map(|c| c.as_str()).unwrap_or(""),
                a.execution_time,
                if a.delay_before_retry > 0.0 {
                    format!(", then waited {:.3}s", a.delay_before_retry)
                } else {
                    String::new()
                }
            );
            let _ = writeln!(
                o,
                r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="14" rx="2" fill="{colour}"><title>{}</title></rect>"##,
                y + 4.0,
                x1 - x0,
                esc(&tip)
            );
            // The class on the bar when it fits (about 5.5 px a character at this size).
            if let Some(class) = a.error_type.map(|c| c.as_str())
                && (x1 - x0) >= class.len() as f64 * 5.5 + 4.0
            {
                let _ = writeln!(
                    o,
                    r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#ffffff" pointer-events="none">{}</text>"##,
                    x0 + 2.0,
                    y + 14.5,
                    esc(class)
                );
            }
        }
        if !d.alerts.is_empty() {
            let xe = x(seconds_between(start, &r.end_time)) + 8.0;
            let names: Vec<&str> = d.alerts.iter().map(|a| a.name.as_str()).collect();
            let _ = writeln!(
                o,
                r##"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="#c00000"><title>{}</title></polygon>"##,
                xe,
                y + 3.0,
                xe - 6.0,
                y + 18.0,
                xe + 6.0,
                y + 18.0,
                esc(&names.join(", "))
            );
        }
    }
    let mut ly = bottom + 24.0;
    if ops.len() > MAX_ROWS {
        let _ = writeln!(
            o,
            r##"<text x="16" y="{ly}" fill="#555">… and {} more operation(s) not drawn</text>"##,
            ops.len() - MAX_ROWS
        );
        ly += 18.0;
    }
    // Legend.
    let mut lx = 16.0;
    for (name, colour) in COLOURS {
        let _ = writeln!(
            o,
            r##"<rect x="{lx}" y="{:.1}" width="14" height="12" fill="{colour}"/><text x="{:.1}" y="{:.1}">{name}</text>"##,
            ly - 10.0,
            lx + 18.0,
            ly
        );
        lx += 130.0;
    }
    let _ = writeln!(
        o,
        r##"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="3,2"/><text x="{:.1}" y="{ly}">wait</text>"##,
        ly - 4.0,
        lx + 20.0,
        ly - 4.0,
        lx + 24.0
    );
    lx += 80.0;
    let _ = writeln!(
        o,
        r##"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="#c00000"/><text x="{:.1}" y="{ly}">alert</text>"##,
        lx + 6.0,
        ly - 11.0,
        lx,
        ly + 1.0,
        lx + 12.0,
        ly + 1.0,
        lx + 18.0
    );
    // Every alert, written out (the triangles only point at the operations).
    let mut ay = ly + 24.0;
    for a in all_alerts(view) {
        let who = match (&a.scope[..], &a.operation_name) {
            ("operation", Some(name)) => format!("{name}: "),
            _ => "session: ".to_string(),
        };
        let _ = writeln!(
            o,
            r##"<text x="16" y="{ay:.1}" fill="#c00000">⚠ [{}] {}{}</text>"##,
            esc(&a.severity),
            esc(&who),
            esc(&short(&a.message, 150))
        );
        ay += ALERT_LINE;
    }
    o.push_str("</svg>\n");
    o
}

fn fmt_secs(t: f64) -> String {
    if t >= 120.0 {
        format!("{:.0}m{:02.0}s", (t / 60.0).floor(), t % 60.0)
    } else if t >= 1.0 || t == 0.0 {
        format!("{}s", (t * 100.0).round() / 100.0)
    } else {
        format!("{}ms", (t * 1000.0).round())
    }
}

/// One self-contained HTML page: the SVG inline, the statistics, alerts and operations table.
pub fn html(view: &SessionView) -> String {
    let s = &view.session;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>retryx session {}</title>\n<style>body{{font-family:DejaVu Sans,Arial,sans-serif;margin:16px;color:#222}}table{{border-collapse:collapse;margin-top:12px}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:12px;text-align:left}}th{{background:#eee}}.alert{{color:#c00000}}</style></head><body>\n",
        esc(&s.session_id)
    );
    o.push_str(&svg(view));
    o.push_str("<h3>Statistics</h3><table>");
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&s.final_statistics) {
        for (k, v) in m {
            let _ = write!(
                o,
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(&k),
                esc(&v.to_string())
            );
        }
    }
    o.push_str("</table>");
    let alerts = all_alerts(view);
    if !alerts.is_empty() {
        o.push_str("<h3>Alerts</h3><ul>");
        for a in alerts {
            let _ = write!(
                o,
                "<li class=\"alert\">[{}] {}</li>",
                esc(&a.severity),
                esc(&a.message)
            );
        }
        o.push_str("</ul>");
    }
    o.push_str("<h3>Operations</h3><table><tr><th>operation</th><th>id</th><th>status</th><th>attempts</th><th>time (s)</th><th>final error</th></tr>");
    for d in &view.operation_details {
        let r = &d.record;
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{:.3}</td><td>{}</td></tr>",
            esc(&r.operation_name),
            esc(&r.operation_id),
            r.status.as_str(),
            r.attempt_count,
            r.max_attempts,
            r.execution_time,
            r.final_error_type.map(|c| c.as_str()).unwrap_or("")
        );
    }
    o.push_str("</table></body></html>\n");
    o
}

/// For terminals.
pub fn text(view: &SessionView) -> String {
    let s = &view.session;
    let f = &s.final_statistics;
    let mut o = String::new();
    // Every string from a record is shown with its control characters escaped: an operation
    // name or an alert message must not drive the terminal.
    let c = escape_controls;
    let _ = writeln!(o, "session {}  {}", c(&s.session_id), c(&s.session_status));
    let _ = writeln!(
        o,
        "  {} → {}  ({:.3}s)",
        c(&s.session_start),
        c(s.session_end.as_deref().unwrap_or("(open)")),
        s.session_duration
    );
    let _ = writeln!(
        o,
        "  operations {}  succeeded {}  failed {}  retried {}  retries {}  success {}%  ops/min {}",
        f.total_operations,
        f.successful_operations,
        f.failed_operations,
        f.retried_operations,
        f.total_retry_attempts,
        f.success_rate,
        f.operations_per_minute
    );
    for a in all_alerts(view) {
        let _ = writeln!(o, "  ALERT [{}] {}", c(&a.severity), c(&a.message));
    }
    for d in &view.operation_details {
        let r = &d.record;
        let marks: Vec<String> = r
            .attempts
            .iter()
            .map(|a| match (outcome(a, r), a.error_type) {
                (0, _) => "✓".to_string(),
                (3, _) => "!aborted".to_string(),
                (_, Some(c)) => format!("✗{c}"),
                (_, None) => "✗".to_string(),
            })
            .collect();
        let mut marks = marks.join(" ");
        if aborted(r)
            && r.attempts
                .last()
                .is_some_and(|a| a.status == AttemptStatus::Failed && a.should_retry)
        {
            marks.push_str(" ~wait cut");
        }
        let _ = writeln!(
            o,
            "  {:<9} {:<24} {:>3}/{:<3} {:>9.3}s  {}  {}",
            r.status.as_str(),
            short(&c(&r.operation_name), 24),
            r.attempt_count,
            r.max_attempts,
            r.execution_time,
            marks,
            c(&r.operation_id)
        );
    }
    o
}
