//! The classification corpus (tests/data/classify_corpus.txt) through the CLI: every real error
//! line is printed by a failing command and the `error_type` retryx records is compared with
//! the expected class. Prints the figure "N of M decided as expected"; must not tolerate misses.

use std::process::{Command, Stdio};

struct Case {
    line_no: usize,
    class: String,
    text: String,
    reason: String,
}

fn corpus() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/classify_corpus.txt"
    );
    let raw = std::fs::read_to_string(path).expect("corpus file");
    let mut cases = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, reason) = line
            .rsplit_once(" ## ")
            .unwrap_or_else(|| panic!("line {}: no ` ## reason`", i + 1));
        let mut parts = head.splitn(3, ' ');
        let (class, _tool, text) = match (parts.next(), parts.next(), parts.next()) {
            (Some(c), Some(t), Some(x)) => (c, t, x),
            _ => panic!("line {}: expected CLASS TOOL TEXT ## REASON", i + 1),
        };
        assert!(!reason.trim().is_empty(), "line {}: empty reason", i + 1);
        cases.push(Case {
            line_no: i + 1,
            class: class.to_string(),
            text: text.replace("\\n", "\n"),
            reason: reason.to_string(),
        });
    }
    cases
}

/// The class retryx gives `text` printed on stderr by a command that exits 1.
fn decided(text: &str, scratch: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_retryx"))
        .args(["-n", "1", "-q", "--result-json"])
        .arg(scratch)
        .args(["--", "sh", "-c", "printf '%s\\n' \"$1\" >&2; exit 1", "sh"])
        .arg(text)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("retryx runs");
    assert_eq!(out.code(), Some(1), "retryx exits with the command's code");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch).expect("result written")).expect("JSON");
    doc["retry"]["attempts"][0]["error_type"]
        .as_str()
        .unwrap_or("<none>")
        .to_string()
}

#[test]
fn every_corpus_line_gets_its_class() {
    let cases = corpus();
    assert!(cases.len() >= 300, "the corpus has {} lines", cases.len());
    let known: Vec<&str> = [
        "connection_error",
        "timeout",
        "temporary_failure",
        "network_error",
        "service_unavailable",
        "rate_limit_exceeded",
        "resource_busy",
        "authentication_error",
        "authorization_error",
        "permission_error",
        "resource_not_found",
        "configuration_error",
        "invalid_parameter",
        "quota_exceeded",
        "unknown_error",
    ]
    .to_vec();
    for c in &cases {
        assert!(
            known.contains(&c.class.as_str()),
            "line {}: class {:?}",
            c.line_no,
            c.class
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // Two workers: each case is one short process pair, and the machine has two cores.
    let halves: Vec<Vec<(usize, String)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let cases = &cases;
                let scratch = dir.path().join(format!("r{w}.json"));
                s.spawn(move || {
                    cases
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % 2 == w)
                        .map(|(i, c)| (i, decided(&c.text, &scratch)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut got = vec![String::new(); cases.len()];
    for (i, class) in halves.into_iter().flatten() {
        got[i] = class;
    }
    let misses: Vec<String> = cases
        .iter()
        .zip(&got)
        .filter(|(c, g)| c.class != **g)
        .map(|(c, g)| {
            format!(
                "line {}: expected {} got {g}: {:?} ({})",
                c.line_no, c.class, c.text, c.reason
            )
        })
        .collect();
    let right = cases.len() - misses.len();
    println!("{right} of {} decided as expected", cases.len());
    for m in &misses {
        println!("{m}");
    }
    assert!(
        misses.is_empty(),
        "{right} of {} decided as expected; misses:\n{}",
        cases.len(),
        misses.join("\n")
    );
}
