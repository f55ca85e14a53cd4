//! Pictures and listings of a session: a timeline in SVG (one row per operation, attempts as
//! bars coloured by outcome, waits as gaps, alerts marked, legend and time axis), the same in a
//! single self-contained HTML file, and plain text for terminals. Pure: strings in, string out.

use std::fmt::Write;

use super::AttemptStatus;
use super::stats::seconds_between;
use super::store::SessionView;

/// Rows drawn at most; the rest are counted in a note (a picture of 10,000 rows helps no one).
pub const MAX_ROWS: usize = 400;
const LABEL_W: f64 = 300.0;
const PLOT_W: f64 = 760.0;
const ROW_H: f64 = 22.0;
const TOP: f64 = 92.0;

pub const WIDTH: u32 = (LABEL_W + PLOT_W + 40.0) as u32;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 => o.push(' '),
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

/// Colours by outcome: success, failed and retried, failed for good, aborted.
pub const COLOURS: [(&str, &str); 4] = [
    ("success", "#2e9e44"),
    ("failed, retried", "#f0a030"),
    ("failed, final", "#d43c3c"),
    ("aborted", "#808080"),
];

/// The SVG's height for a view.
pub fn height(view: &SessionView) -> u32 {
    let rows = view.operation_details.len().clamp(1, MAX_ROWS);
    (TOP + rows as f64 * ROW_H + 90.0) as u32
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
        for a in &r.attempts {
            let x0 = x(seconds_between(start, &a.start_time));
            let x1 = x(seconds_between(start, &a.end_time)).max(x0 + 3.0);
            let colour = match a.status {
                AttemptStatus::Success => COLOURS[0].1,
                AttemptStatus::Failed if a.should_retry => COLOURS[1].1,
                AttemptStatus::Failed => COLOURS[2].1,
                AttemptStatus::Aborted => COLOURS[3].1,
            };
            let tip = format!(
                "attempt {}: {:?} {} {:.3}s{}",
                a.attempt_number,
                a.status,
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
    if !s.alerts.is_empty() {
        let session_alerts: Vec<&str> = s
            .alerts
            .iter()
            .filter(|a| a.scope == "session")
            .map(|a| a.message.as_str())
            .collect();
        if !session_alerts.is_empty() {
            let _ = writeln!(
                o,
                r##"<text x="16" y="64" fill="#c00000">⚠ {}</text>"##,
                esc(&short(&session_alerts.join("; "), 160))
            );
        }
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
    if !s.alerts.is_empty() {
        o.push_str("<h3>Alerts</h3><ul>");
        for a in &s.alerts {
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
    let _ = writeln!(o, "session {}  {}", s.session_id, s.session_status);
    let _ = writeln!(
        o,
        "  {} → {}  ({:.3}s)",
        s.session_start,
        s.session_end.as_deref().unwrap_or("(open)"),
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
    for a in &s.alerts {
        let _ = writeln!(o, "  ALERT [{}] {}", a.severity, a.message);
    }
    for d in &view.operation_details {
        let r = &d.record;
        let marks: String = r
            .attempts
            .iter()
            .map(|a| match a.status {
                AttemptStatus::Success => '✓',
                AttemptStatus::Failed => '✗',
                AttemptStatus::Aborted => '!',
            })
            .collect();
        let _ = writeln!(
            o,
            "  {:<9} {:<24} {:>3}/{:<3} {:>9.3}s  {}  {}",
            r.status.as_str(),
            short(&r.operation_name, 24),
            r.attempt_count,
            r.max_attempts,
            r.execution_time,
            marks,
            r.operation_id
        );
    }
    o
}
