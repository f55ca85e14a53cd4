//! Run a download under the retry policy: the resumable HTTP attempter (`crate::download`) on
//! the shared operation path, and the get_url-like keys it adds to the answer.

use serde_json::json;

use super::Answer;
use super::operation::{Kind, Run, RunOptions, Shown};
use crate::config::Resolved;
use crate::download::{
    self, Before, DownloadAttempter, DownloadSpec, Prepared, ProgressMode, Ready,
};
use crate::engine::{Attempter, Outcome};
use crate::log::Logger;
use crate::record::REDACTED;
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

struct Fetch<'a> {
    ready: &'a Ready,
    attempter: DownloadAttempter<'a>,
}

impl Kind for Fetch<'_> {
    fn attempter(&mut self) -> &mut dyn Attempter {
        &mut self.attempter
    }

    fn after_engine(&mut self, outcome: &mut Outcome) {
        self.attempter.finish(&mut outcome.record);
    }

    fn decorate(&self, answer: &mut Answer, no_log: bool) {
        let (spec, a) = (&self.ready.spec, &self.attempter);
        answer
            .data
            .insert("dest".into(), json!(spec.dest.display().to_string()));
        answer.data.insert("url".into(), shown_url(spec, no_log));
        let mut summary =
            json!({"bytes_transferred": a.bytes_transferred(), "resumed": a.resumed()});
        if let Some(done) = a.done() {
            answer.data.insert("size".into(), json!(done.size));
            answer.data.insert("sha256".into(), json!(done.sha256));
            answer.data.insert(
                "checksum_dest".into(),
                json!(format!("sha256:{}", done.sha256)),
            );
            summary["size"] = json!(done.size);
            let same =
                matches!(&self.ready.before, Before::Exists { sha256 } if *sha256 == done.sha256);
            if same && answer.status == super::Status::Changed {
                answer.status = super::Status::Unchanged;
            }
        }
        answer.retry_mut().insert("download".into(), summary);
    }
}

fn shown_url(spec: &DownloadSpec, no_log: bool) -> serde_json::Value {
    if no_log {
        json!(REDACTED)
    } else {
        json!(spec.shown_url)
    }
}

/// Runs the download `resolved` describes (`action: download`).
pub(crate) fn run(
    resolved: &Resolved,
    opts: &RunOptions,
    log: &Logger,
    cancel: &Cancel,
    timer: &dyn Timer,
) -> Answer {
    let mut run = Run::new(resolved, opts, log, cancel, timer);
    let ready = match download::prepare(&resolved.config, &mut run.plan) {
        Prepared::Fetch(ready) => ready,
        Prepared::BadKeys(e) => return Answer::usage(e.to_string()),
        Prepared::Unusable(e) => return Answer::failure(e.to_string()).with("rc", json!(1)),
        Prepared::UpToDate {
            spec,
            size,
            sha256,
            reason,
        } => return up_to_date(&run, &spec, size, &sha256, &reason),
    };
    let shown = Shown {
        cmd: json!(ready.spec.cmd()),
        line: Some(ready.spec.cmd()),
        would: "Download would have run if not in check mode",
        would_change: true,
    };
    let mut fetch = Fetch {
        ready: &ready,
        attempter: DownloadAttempter::new(
            &ready.spec,
            log,
            ProgressMode::for_stderr(opts.passthrough, log),
        ),
    };
    run.execute(shown, &mut fetch)
}

/// `dest` is already what was asked for: nothing ran.
fn up_to_date(run: &Run, spec: &DownloadSpec, size: u64, sha256: &str, reason: &str) -> Answer {
    let mut answer = Answer::done(false, format!("nothing to do: {reason}"));
    answer.no_log = run.opts.no_log;
    answer
        .with("rc", json!(0))
        .with("cmd", json!(spec.cmd()))
        .with("dest", json!(spec.dest.display().to_string()))
        .with("url", shown_url(spec, run.opts.no_log))
        .with("size", json!(size))
        .with("sha256", json!(sha256))
        .with("checksum_dest", json!(format!("sha256:{sha256}")))
        .with(
            "retry",
            json!({
                "session_id": run.session_id,
                "operation": run.plan.operation,
                "status": "skipped",
                "stop_reason": reason,
                "attempt_count": 0,
                "attempts": [],
                "download": {"bytes_transferred": 0, "resumed": false, "size": size},
                "alerts": [],
                "notifications": [],
                "artifacts": [],
            }),
        )
}
