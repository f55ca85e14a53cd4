//! Prometheus: the text exposition format (HELP/TYPE, escaped labels, trailing newline), the
//! Pushgateway grouping-key URL (`@base64` for values with `/`), remote write 1.0 (WriteRequest
//! by prost derive, snappy block format, sorted labels, samples in time order) and the
//! node_exporter textfile (`retryx.prom`, merged, written to a temp file and renamed). Builds
//! bodies and files only; it never sends and never writes outside `textfile_dir`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use prost::Message;

use super::{PromFamily, PromKind};

/// Label pairs, sorted by name.
pub type Labels = Vec<(String, String)>;

/// One sample of a family: extra labels (sorted) and value.
pub type Sample = (Labels, f64);

/// Escapes a label value for the text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Formats a float as Prometheus does (`+Inf`, `-Inf`, `NaN`, shortest round-trip otherwise).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The text exposition of `families`, each with its samples; no timestamps. Ends with a
/// newline.
pub fn exposition(families: &[(PromFamily, Vec<Sample>)]) -> String {
    let mut out = String::new();
    for (fam, samples) in families {
        if samples.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP {} {}\n", fam.name, escape_help(fam.help)));
        out.push_str(&format!(
            "# TYPE {} {}\n",
            fam.name,
            match fam.kind {
                PromKind::Counter => "counter",
                PromKind::Gauge => "gauge",
            }
        ));
        for (labels, value) in samples {
            out.push_str(fam.name);
            if !labels.is_empty() {
                let parts: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                out.push('{');
                out.push_str(&parts.join(","));
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(*value));
            out.push('\n');
        }
    }
    out
}

// ------------------------------------------------------------------------------ Pushgateway

/// One grouping-key path segment pair: `/label/value`, or `/label@base64/<base64url>` when the
/// value has a `/` (or is empty), as the Pushgateway documents.
pub fn grouping_segment(label: &str, value: &str) -> String {
    if value.is_empty() {
        return format!("/{label}@base64/=");
    }
    if value.contains('/') {
        let enc = base64::engine::general_purpose::URL_SAFE.encode(value.as_bytes());
        return format!("/{label}@base64/{enc}");
    }
    format!("/{label}/{}", percent_encode(value))
}

fn percent_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Pushgateway URL: the base of `url` (anything before `/metrics`), job from the system's
/// `job`, else from a `/metrics/job/<job>` already in `url`, else `retryx`; then instance
/// (host) and operation.
pub fn pushgateway_url(url: &str, job: Option<&str>, host: &str, operation: &str) -> String {
    let url = url.trim_end_matches('/');
    let (base, from_url_job) = match url.find("/metrics/job") {
        Some(i) => {
            let rest = &url[i + "/metrics/job".len()..];
            let job = if let Some(r) = rest.strip_prefix('/') {
                r.split('/').next().map(str::to_string)
            } else {
                None
            };
            (&url[..i], job)
        }
        None => (url, None),
    };
    let job = job
        .map(str::to_string)
        .or(from_url_job)
        .unwrap_or_else(|| "retryx".to_string());
    let job_seg = grouping_segment("job", &job);
    format!(
        "{base}/metrics{job_seg}{}{}",
        grouping_segment("instance", host),
        grouping_segment("operation", operation)
    )
}

// ----------------------------------------------------------------------------- remote write

/// Remote write 1.0 protobuf messages (prometheus/prompb/types.proto, remote.proto).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A series for remote write: name, labels, and (timestamp ms, value) samples.
pub struct RwSeries {
    pub name: &'static str,
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

/// Builds the WriteRequest: `__name__` added, labels sorted by name (byte order, as Prometheus
/// requires), samples sorted by time with duplicate timestamps moved 1 ms on.
pub fn write_request(series: Vec<RwSeries>) -> WriteRequest {
    let timeseries = series
        .into_iter()
        .filter(|s| !s.samples.is_empty())
        .map(|s| {
            let mut labels: Vec<Label> = s
                .labels
                .into_iter()
                .filter(|(k, _)| k != "__name__")
                .map(|(name, value)| Label { name, value })
                .collect();
            labels.push(Label {
                name: "__name__".into(),
                value: s.name.to_string(),
            });
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            labels.dedup_by(|a, b| a.name == b.name);
            let mut samples = s.samples;
            samples.sort_by_key(|(t, _)| *t);
            let mut last = i64::MIN;
            let samples = samples
                .into_iter()
                .map(|(t, v)| {
                    let t = if t <= last { last + 1 } else { t };
                    last = t;
                    PbSample {
                        value: v,
                        timestamp: t,
                    }
                })
                .collect();
            TimeSeries { labels, samples }
        })
        .collect();
    WriteRequest { timeseries }
}

/// Protobuf-encodes and snappy-compresses (block format, not framed) a WriteRequest.
pub fn encode_write_request(req: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw)
}

pub const REMOTE_WRITE_HEADERS: [(&str, &str); 3] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

// -------------------------------------------------------------------------------- textfile

#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    #[error("textfile_dir {0} is not a directory")]
    NotADirectory(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The file node_exporter's textfile collector reads.
pub const TEXTFILE_NAME: &str = "retryx.prom";

/// Parses one sample line of our own file: `name{k="v",...} value`.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        let mut val = String::new();
        let mut in_val = false;
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if in_val {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, other)) => val.push(other),
                        None => return None,
                    },
                    '"' => {
                        labels.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                        in_val = false;
                    }
                    _ => val.push(c),
                }
            } else {
                match c {
                    '}' => {
                        end = Some(i + 2);
                        break;
                    }
                    '=' | ',' | ' ' => {}
                    '"' => in_val = true,
                    _ => key.push(c),
                }
            }
        }
        rest = &rest[end?..];
    }
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.split_whitespace().next()?.parse().ok()?,
    };
    Some((name, labels, value))
}

/// Merges this run into the previous file's content: series of other operations are kept,
/// this operation's gauges replaced, its counters increased.
pub fn merge_textfile(
    previous: &str,
    families: &[PromFamily],
    operation: &str,
    current: &BTreeMap<&'static str, Vec<Sample>>,
) -> String {
    let mut by_family: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
    let mut old_mine: BTreeMap<(String, Vec<(String, String)>), f64> = BTreeMap::new();
    for line in previous.lines() {
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        let Some(fam) = families.iter().find(|f| f.name == name) else {
            continue; // not ours any more: dropped
        };
        let mine = labels
            .iter()
            .any(|(k, v)| k == "operation" && v == operation);
        if mine {
            old_mine.insert((name, labels), value);
        } else {
            by_family.entry(fam.name).or_default().push((labels, value));
        }
    }
    for fam in families {
        let Some(samples) = current.get(fam.name) else {
            // This run has nothing for the family: keep this operation's old counters.
            if fam.kind == PromKind::Counter {
                for ((n, labels), v) in &old_mine {
                    if n == fam.name {
                        by_family
                            .entry(fam.name)
                            .or_default()
                            .push((labels.clone(), *v));
                    }
                }
            }
            continue;
        };
        let mut merged: Vec<Sample> = Vec::new();
        if fam.kind == PromKind::Counter {
            // Old counter series of this operation not touched by this run stay as they were.
            for ((n, labels), v) in &old_mine {
                if n == fam.name && !samples.iter().any(|(l, _)| l == labels) {
                    merged.push((labels.clone(), *v));
                }
            }
        }
        for (labels, value) in samples {
            let add = if fam.kind == PromKind::Counter {
                old_mine
                    .get(&(fam.name.to_string(), labels.clone()))
                    .copied()
                    .unwrap_or(0.0)
            } else {
                0.0
            };
            merged.push((labels.clone(), value + add));
        }
        by_family.entry(fam.name).or_default().extend(merged);
    }
    let ordered: Vec<(PromFamily, Vec<Sample>)> = families
        .iter()
        .map(|f| {
            let mut s = by_family.remove(f.name).unwrap_or_default();
            s.sort_by(|a, b| a.0.cmp(&b.0));
            (f.clone(), s)
        })
        .collect();
    exposition(&ordered)
}

/// Writes `retryx.prom` in `dir`: under a lock file, merged with the previous content, written
/// to a temp file in the same directory (a name node_exporter ignores), synced, renamed.
pub fn write_textfile(
    dir: &Path,
    families: &[PromFamily],
    operation: &str,
    current: &BTreeMap<&'static str, Vec<Sample>>,
) -> Result<PathBuf, TextfileError> {
    use fs4::fs_std::FileExt;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TextfileError::Io { path, source }
    };
    if !dir.is_dir() {
        return Err(TextfileError::NotADirectory(dir.display().to_string()));
    }
    let lock_path = dir.join(".retryx.prom.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.lock_exclusive().map_err(io(&lock_path))?;
    let target = dir.join(TEXTFILE_NAME);
    let previous = match fs::read_to_string(&target) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&target)(e)),
    };
    let text = merge_textfile(&previous, families, operation, current);
    let tmp = dir.join(format!(".retryx.prom.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = create_textfile_tmp(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &target).map_err(io(&target))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(target.clone())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    drop(lock);
    result
}

/// A fresh temp file for the textfile directory, which may be shared: never through a link
/// someone planted (a leftover of ours is unlinked, not followed), 0644 whatever the umask
/// (node_exporter runs as another user and must read it).
fn create_textfile_tmp(tmp: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(tmp)?;
    // the mode given to open is cut by the umask
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    Ok(f)
}

/// `retryx notify test` for a textfile directory: writes the test family into its own file
/// (`retryx_notify_test.prom`, temp file then rename, as a real write does), then removes it.
/// Proves the directory takes our files without touching `retryx.prom`.
pub fn probe_textfile(dir: &Path) -> Result<PathBuf, TextfileError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TextfileError::Io { path, source }
    };
    if !dir.is_dir() {
        return Err(TextfileError::NotADirectory(dir.display().to_string()));
    }
    let name = super::metrics::TEST_SERIES;
    let target = dir.join(format!("{name}.prom"));
    let tmp = dir.join(format!(".{name}.prom.{}.tmp", std::process::id()));
    let fam = PromFamily {
        name,
        help: super::metrics::TEST[0].help,
        kind: PromKind::Gauge,
    };
    let text = exposition(&[(fam, vec![(vec![], 1.0)])]);
    let result = (|| {
        let mut f = create_textfile_tmp(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &target).map_err(io(&target))?;
        fs::remove_file(&target).map_err(io(&target))?;
        Ok(target.clone())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(name: &'static str, kind: PromKind) -> PromFamily {
        PromFamily {
            name,
            help: "help text",
            kind,
        }
    }

    #[test]
    fn grouping_keys_use_base64_for_slashes() {
        assert_eq!(grouping_segment("operation", "deploy"), "/operation/deploy");
        assert_eq!(
            grouping_segment("operation", "a/b"),
            format!("/operation@base64/{}", "YS9i")
        );
        assert_eq!(grouping_segment("instance", ""), "/instance@base64/=");
        assert_eq!(grouping_segment("operation", "a b"), "/operation/a%20b");
        assert_eq!(
            pushgateway_url("http://127.0.0.1:9091", None, "h1", "op/x"),
            "http://127.0.0.1:9091/metrics/job/retryx/instance/h1/operation@base64/b3AveA=="
        );
        assert_eq!(
            pushgateway_url("http://pg:9091/metrics/job/batch/", None, "h", "o"),
            "http://pg:9091/metrics/job/batch/instance/h/operation/o"
        );
    }

    #[test]
    fn remote_write_labels_sorted_and_samples_ordered() {
        let req = write_request(vec![RwSeries {
            name: "retryx_operation_attempts",
            labels: vec![
                ("operation".into(), "o".into()),
                ("job".into(), "retryx".into()),
                ("instance".into(), "h".into()),
            ],
            samples: vec![(3000, 3.0), (1000, 1.0), (1000, 2.0)],
        }]);
        let ts = &req.timeseries[0];
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "instance", "job", "operation"]);
        let times: Vec<i64> = ts.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(times, [1000, 1001, 3000]);
        let bytes = encode_write_request(&req).unwrap_or_default();
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&bytes)
            .unwrap_or_default();
        assert_eq!(WriteRequest::decode(&raw[..]).ok(), Some(req));
    }

    #[test]
    fn exposition_escapes_and_ends_with_newline() {
        let text = exposition(&[(
            fam("retryx_operation_success", PromKind::Gauge),
            vec![(vec![("operation".into(), "a\"b\\c\nd".into())], 1.0)],
        )]);
        assert_eq!(
            text,
            "# HELP retryx_operation_success help text\n# TYPE retryx_operation_success gauge\n\
             retryx_operation_success{operation=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
        let parsed = parse_sample(text.lines().nth(2).unwrap_or(""));
        assert_eq!(
            parsed,
            Some((
                "retryx_operation_success".into(),
                vec![("operation".into(), "a\"b\\c\nd".into())],
                1.0
            ))
        );
    }

    #[test]
    fn textfile_merge_keeps_others_and_adds_counters() {
        let fams = [
            fam("retryx_attempts_total", PromKind::Counter),
            fam("retryx_operation_attempts", PromKind::Gauge),
        ];
        let op = |o: &str| vec![("operation".to_string(), o.to_string())];
        let mut run = BTreeMap::new();
        run.insert("retryx_attempts_total", vec![(op("a"), 3.0)]);
        run.insert("retryx_operation_attempts", vec![(op("a"), 3.0)]);
        let first = merge_textfile("", &fams, "a", &run);
        let mut run_b = BTreeMap::new();
        run_b.insert("retryx_attempts_total", vec![(op("b"), 1.0)]);
        run_b.insert("retryx_operation_attempts", vec![(op("b"), 1.0)]);
        let second = merge_textfile(&first, &fams, "b", &run_b);
        let mut run_a2 = BTreeMap::new();
        run_a2.insert("retryx_attempts_total", vec![(op("a"), 2.0)]);
        run_a2.insert("retryx_operation_attempts", vec![(op("a"), 2.0)]);
        let third = merge_textfile(&second, &fams, "a", &run_a2);
        assert!(
            third.contains("retryx_attempts_total{operation=\"a\"} 5\n"),
            "{third}"
        );
        assert!(
            third.contains("retryx_attempts_total{operation=\"b\"} 1\n"),
            "{third}"
        );
        assert!(
            third.contains("retryx_operation_attempts{operation=\"a\"} 2\n"),
            "{third}"
        );
        assert_eq!(
            third
                .matches("# TYPE retryx_attempts_total counter")
                .count(),
            1
        );
    }
}
