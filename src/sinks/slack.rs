//! Slack incoming webhooks: a `text` fallback plus Block Kit blocks, always within Slack's limits
//! (header ≤ 150, section text ≤ 3000, field ≤ 2000, ≤ 10 fields, ≤ 50 blocks), and Slack's own
//! verdict on the answer (200 `ok` is the only success). Builds payloads only: never sends, and
//! never puts the hook URL in a payload.

use serde_json::{Value, json};

use super::deliver::{Answer, Verdict, first_line, http_verdict};
use super::{Report, ReportKind};

pub const MAX_BLOCKS: usize = 50;
pub const MAX_HEADER: usize = 150;
pub const MAX_SECTION: usize = 3000;
pub const MAX_FIELD: usize = 2000;
pub const MAX_FIELDS: usize = 10;
/// Slack truncates messages past 40 000 characters; the fallback stays far below.
pub const MAX_TEXT: usize = 3000;

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes then truncates so the escaped result stays within `max`.
fn esc_trunc(s: &str, max: usize) -> String {
    let e = escape(s);
    if e.chars().count() <= max {
        return e;
    }
    // Truncate the raw text and re-escape until it fits (entities must not be cut).
    let mut n = max.min(s.chars().count());
    loop {
        let cut: String = s.chars().take(n).collect();
        let mut e = escape(&cut);
        e.push('…');
        if e.chars().count() <= max || n == 0 {
            return e;
        }
        n = n.saturating_sub((e.chars().count() - max).max(1));
    }
}

fn status_emoji(report: &Report) -> &'static str {
    match (report.kind, report.succeeded) {
        (ReportKind::Test, _) => ":information_source:",
        (_, true) if report.alerts.is_empty() => ":white_check_mark:",
        (_, true) => ":warning:",
        (_, false) => ":x:",
    }
}

fn field(label: &str, value: &str) -> Value {
    let text = format!(
        "*{label}*\n{}",
        esc_trunc(value, MAX_FIELD - label.len() - 4)
    );
    json!({"type": "mrkdwn", "text": text})
}

/// The plain-text summary used as `text` (notifications and screen readers show it).
pub fn fallback_text(report: &Report) -> String {
    let mut s = format!(
        "retryx: {} {} {} in {:.1}s",
        report.operation,
        report.status,
        report.outcome_words(),
        report.duration_secs
    );
    if let Some(class) = &report.last_error_class {
        s.push_str(&format!(" (last error: {class})"));
    }
    if !report.alerts.is_empty() {
        s.push_str(&format!(" — {} alert(s)", report.alerts.len()));
    }
    s.push_str(&format!(
        " [session {}, host {}]",
        report.session_id, report.host
    ));
    esc_trunc(&s, MAX_TEXT)
}

/// The incoming-webhook payload.
pub fn payload(report: &Report) -> Value {
    let mut blocks: Vec<Value> = Vec::new();
    let title = match report.kind {
        ReportKind::Test => format!("retryx test notification: {}", report.operation),
        ReportKind::Session => format!("retryx session {}: {}", report.status, report.operation),
        ReportKind::Operation => format!("retryx: {} {}", report.operation, report.status),
    };
    blocks.push(json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&title, MAX_HEADER), "emoji": true}
    }));
    let summary = format!(
        "{} *{}* {} {} in {:.1}s",
        status_emoji(report),
        escape(&report.operation),
        escape(&report.status),
        report.outcome_words(),
        report.duration_secs
    );
    blocks.push(
        json!({"type": "section", "text": {"type": "mrkdwn", "text": esc_or_keep(&summary)}}),
    );

    let mut fields = vec![
        field("Operation", &report.operation),
        field("Status", &report.status),
        match report.kind {
            ReportKind::Session => field("Operations", &report.operations.to_string()),
            _ => field(
                "Attempts",
                &format!("{} / {}", report.attempt_count, report.max_attempts),
            ),
        },
        field("Duration", &format!("{:.2}s", report.duration_secs)),
        field(
            "Last error class",
            report.last_error_class.as_deref().unwrap_or("none"),
        ),
        field("Session", &report.session_id),
        field("Host", &report.host),
    ];
    if let Some(id) = &report.operation_id {
        fields.push(field("Operation id", id));
    }
    fields.truncate(MAX_FIELDS);
    blocks.push(json!({"type": "section", "fields": fields}));

    if let Some(msg) = report
        .last_error_message
        .as_deref()
        .filter(|m| !m.is_empty())
    {
        // ``` fences: 3 + 1 + text + 1 + 3, and the label line.
        let label = "*Last error message*\n";
        let room = MAX_SECTION - label.len() - 8;
        let body = esc_trunc(&msg.replace("```", "'''"), room);
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("{label}```\n{body}\n```")}
        }));
    }

    if !report.alerts.is_empty() {
        blocks.push(json!({"type": "divider"}));
        // Keep room for the context block at the end.
        let room = MAX_BLOCKS - blocks.len() - 1;
        let shown = report.alerts.len().min(room.saturating_sub(1).max(1));
        for alert in report.alerts.iter().take(shown) {
            let text = format!(
                ":rotating_light: *{}*: {}",
                escape(&alert.name),
                escape(&alert.message)
            );
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&text, MAX_SECTION)}
            }));
        }
        if shown < report.alerts.len() {
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn",
                         "text": format!("…and {} more alert(s)", report.alerts.len() - shown)}
            }));
        }
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(
            &format!("retryx {} · {}", env!("CARGO_PKG_VERSION"), escape(&report.end_time)),
            MAX_FIELD)}]
    }));
    blocks.truncate(MAX_BLOCKS);
    json!({"text": fallback_text(report), "blocks": blocks})
}

fn esc_or_keep(s: &str) -> String {
    truncate(s, MAX_SECTION)
}

/// Slack's answer: 200 with body `ok` is success; other 200 bodies are errors (not retried);
/// 429 and 5xx are retried (after Retry-After); other 4xx carry Slack's error name.
pub fn verdict(answer: &Answer) -> Verdict {
    match answer {
        Answer::Http {
            status: 200, body, ..
        } if body.trim() == "ok" => Verdict::Success,
        Answer::Http {
            status: 200, body, ..
        } => Verdict::Permanent(format!("HTTP 200 without `ok`: {}", first_line(body))),
        other => http_verdict(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::Alert;

    fn count(v: &Value) -> usize {
        v.as_str().map(|s| s.chars().count()).unwrap_or(0)
    }

    #[test]
    fn everything_stays_within_slack_limits() {
        let mut r = Report::sample();
        r.operation = "<op>&".repeat(200);
        r.last_error_message = Some("e".repeat(10_000));
        r.alerts = (0..80)
            .map(|i| Alert {
                name: format!("alert_{i}"),
                message: "m".repeat(5000),
                severity: "warning".into(),
                ..Default::default()
            })
            .collect();
        let p = payload(&r);
        let blocks = p["blocks"].as_array().cloned().unwrap_or_default();
        assert!(blocks.len() <= MAX_BLOCKS, "{}", blocks.len());
        assert!(count(&p["text"]) <= MAX_TEXT);
        for b in &blocks {
            match b["type"].as_str() {
                Some("header") => {
                    assert!(count(&b["text"]["text"]) <= MAX_HEADER);
                    assert_eq!(b["text"]["type"], "plain_text");
                }
                Some("section") => {
                    if !b["text"].is_null() {
                        assert!(count(&b["text"]["text"]) <= MAX_SECTION);
                    }
                    for f in b["fields"].as_array().cloned().unwrap_or_default() {
                        assert!(count(&f["text"]) <= MAX_FIELD);
                    }
                }
                _ => {}
            }
        }
        assert!(p["text"].as_str().unwrap_or("").contains("&lt;op&gt;&amp;"));
        assert_eq!(
            blocks.last().map(|b| b["type"].clone()),
            Some(json!("context"))
        );
    }

    #[test]
    fn slack_answers() {
        let ok = Answer::Http {
            status: 200,
            body: "ok".into(),
            retry_after: None,
        };
        assert_eq!(verdict(&ok), Verdict::Success);
        let weird = Answer::Http {
            status: 200,
            body: "something".into(),
            retry_after: None,
        };
        assert!(matches!(verdict(&weird), Verdict::Permanent(_)));
        let gone = Answer::Http {
            status: 404,
            body: "no_service".into(),
            retry_after: None,
        };
        assert_eq!(
            verdict(&gone),
            Verdict::Permanent("HTTP 404: no_service".into())
        );
        let limited = Answer::Http {
            status: 429,
            body: "rate_limited".into(),
            retry_after: Some(std::time::Duration::from_secs(1)),
        };
        assert!(matches!(verdict(&limited), Verdict::Retry(_)));
    }
}
