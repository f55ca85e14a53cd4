//! Draws a session as a timeline, for people: one row per operation, attempts as bars coloured
//! by outcome, waits as dashed gaps, alerts marked, a legend and a time axis. SVG, or a single
//! self-contained HTML page around it. Pure: takes documents, returns text.

use chrono::DateTime;

use super::store::SessionDoc;
use super::{AttemptStatus, OperationRecord};

const WIDTH: f64 = 1100.0;
const LABEL: f64 = 260.0;
const ROW: f64 = 26.0;
const TOP: f64 = 96.0;

fn esc(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn ms(t: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn colour(s: AttemptStatus) -> &'static str {
    match s {
        AttemptStatus::Success => "#2e9d4a",
        AttemptStatus::Failed => "#d9453d",
        AttemptStatus::Aborted => "#8a8a8a",
    }
}

/// The timeline as an SVG document. `ops` are the session's operation records (missing ones
/// are drawn from the session's summary as a single bar).
pub fn svg(doc: &SessionDoc, ops: &[OperationRecord]) -> String {
    let start = ms(&doc.session_start).unwrap_or(0);
    let end = doc
        .operations
        .iter()
        .filter_map(|o| ms(&o.end_time))
        .chain(doc.session_end.as_deref().and_then(ms))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let span = (end - start) as f64;
    let plot = WIDTH - LABEL - 40.0;
    let x = |t: i64| LABEL + ((t - start) as f64 / span * plot).clamp(0.0, plot);
    let rows = doc.operations.len().max(1) as f64;
    let height = TOP + rows * ROW + 70.0 + doc.alerts.len() as f64 * 16.0;
    let s = &doc.final_statistics;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="16" y="24" font-size="16" font-weight="bold">Session {id} — {status}</text>
<text x="16" y="44">{ops} operations, {ok} succeeded, {failed} failed, {retries} retries, success rate {rate}%, {dur:.2}s</text>
"##,
        id = esc(&doc.session_id),
        status = esc(&doc.session_status),
        ops = s.total_operations,
        ok = s.successful_operations,
        failed = s.failed_operations,
        retries = s.total_retry_attempts,
        rate = s.success_rate,
        dur = span / 1000.0,
    );
    // legend
    for (i, (label, fill)) in [
        ("success", "#2e9d4a"),
        ("failed attempt", "#d9453d"),
        ("aborted", "#8a8a8a"),
    ]
    .iter()
    .enumerate()
    {
        let lx = 16.0 + i as f64 * 150.0;
        out.push_str(&format!(r#"<rect x="{lx}" y="58" width="14" height="10" fill="{fill}"/><text x="{}" y="67">{label}</text>"#, lx + 18.0));
    }
    out.push_str(r##"<line x1="470" y1="63" x2="500" y2="63" stroke="#999" stroke-dasharray="3,3"/><text x="506" y="67">wait before retry</text><text x="640" y="67" fill="#d9453d">▲ alert</text>"##);
    out.push('\n');
    // time axis
    let axis_y = TOP + rows * ROW + 8.0;
    out.push_str(&format!(
        r##"<line x1="{LABEL}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333"/>"##,
        LABEL + plot
    ));
    for i in 0..=5 {
        let tx = LABEL + plot * f64::from(i) / 5.0;
        let secs = span / 1000.0 * f64::from(i) / 5.0;
        out.push_str(&format!(
            r##"<line x1="{tx}" y1="{axis_y}" x2="{tx}" y2="{}" stroke="#333"/><text x="{tx}" y="{}" text-anchor="middle">{secs:.1}s</text><line x1="{tx}" y1="{TOP}" x2="{tx}" y2="{axis_y}" stroke="#eee"/>"##,
            axis_y + 5.0,
            axis_y + 18.0
        ));
    }
    out.push('\n');
    for (row, summary) in doc.operations.iter().enumerate() {
        let y = TOP + row as f64 * ROW;
        let name: String = summary.operation_name.chars().take(40).collect();
        out.push_str(&format!(
            r#"<text x="16" y="{}">{}</text>"#,
            y + 15.0,
            esc(&name)
        ));
        let alerted = doc.alerts.iter().any(|a| {
            a.message
                .contains(&format!("operation {} ", summary.operation_name))
        });
        match ops.iter().find(|o| o.operation_id == summary.operation_id) {
            Some(op) => {
                let mut prev_end: Option<f64> = None;
                for a in &op.attempts {
                    let (Some(a0), Some(a1)) = (ms(&a.start_time), ms(&a.end_time)) else {
                        continue;
                    };
                    let (x0, x1) = (x(a0), x(a1));
                    if let Some(pe) = prev_end {
                        out.push_str(&format!(r##"<line x1="{pe}" y1="{}" x2="{x0}" y2="{}" stroke="#999" stroke-dasharray="3,3"/>"##, y + 10.0, y + 10.0));
                    }
                    out.push_str(&format!(
                        r#"<rect x="{x0}" y="{}" width="{}" height="16" fill="{}"><title>attempt {} {} {}</title></rect>"#,
                        y + 2.0,
                        (x1 - x0).max(2.0),
                        colour(a.status),
                        a.attempt_number,
                        esc(&format!("{:?}", a.status).to_lowercase()),
                        esc(a.error_type.map(|c| c.as_str()).unwrap_or(""))
                    ));
                    prev_end = Some(x1);
                }
            }
            None => {
                let (Some(a0), Some(a1)) = (ms(&summary.start_time), ms(&summary.end_time)) else {
                    continue;
                };
                let fill = if summary.succeeded() {
                    "#2e9d4a"
                } else {
                    "#d9453d"
                };
                out.push_str(&format!(
                    r#"<rect x="{}" y="{}" width="{}" height="16" fill="{fill}"/>"#,
                    x(a0),
                    y + 2.0,
                    (x(a1) - x(a0)).max(2.0)
                ));
            }
        }
        if alerted {
            out.push_str(&format!(
                r##"<text x="{}" y="{}" fill="#d9453d">▲</text>"##,
                LABEL + plot + 8.0,
                y + 15.0
            ));
        }
        out.push('\n');
    }
    for (i, a) in doc.alerts.iter().enumerate() {
        out.push_str(&format!(
            r##"<text x="16" y="{}" fill="#d9453d">▲ {}: {}</text>"##,
            axis_y + 44.0 + i as f64 * 16.0,
            esc(&a.name),
            esc(&a.message)
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// A single self-contained HTML page: the timeline and the statistics table.
pub fn html(doc: &SessionDoc, ops: &[OperationRecord]) -> String {
    let stats = serde_json::to_value(&doc.final_statistics).unwrap_or_default();
    let rows: String = stats
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "<tr><th>{}</th><td>{}</td></tr>",
                        esc(k),
                        esc(&v.to_string())
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>retryx session {id}</title>\n<style>body{{font-family:sans-serif;margin:16px}}table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head>\n<body>\n{svg}<h2>Final statistics</h2><table>{rows}</table>\n</body></html>\n",
        id = esc(&doc.session_id),
        svg = svg(doc, ops),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_so_a_name_cannot_break_the_picture() {
        assert_eq!(esc("<script>&\"x'\n"), "&lt;script&gt;&amp;&quot;x&#39;");
    }
}
