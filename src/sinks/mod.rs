//! Notification sinks (Slack, Datadog, Prometheus, webhooks): each turns a report into a
//! request; delivery is shared. The only room that talks HTTP. Never lets a secret (webhook
//! path, token, auth header) reach a log, a record or a result.

use serde::{Deserialize, Serialize};

/// How delivery to one external system went; listed in `retry.notifications` and the session
/// record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    /// The system's `name` from the config.
    pub system: String,
    /// The receiver kind, and whether it was inferred from name and URL.
    pub kind: String,
    pub inferred: bool,
    /// `sent`, `failed`, `skipped`.
    pub status: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    /// The error, redacted.
    pub error: Option<String>,
}
