//! Durations as users write them: `250ms`, `2s`, `1m30s`, `1h`, or a plain number of seconds
//! (integer or float, as YAML and JSON give them). Pure parsing; no clock here.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration accepted anywhere (about 31 days): larger values are surely mistakes and
/// would overflow timer arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(31 * 24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error(
        "expected a duration like \"250ms\", \"2s\", \"1m30s\" or a number of seconds, got {0:?}"
    )]
    Malformed(String),
    #[error("duration {0:?} is negative")]
    Negative(String),
    #[error("duration {0:?} is longer than the 31 days allowed")]
    TooLong(String),
}

/// A duration from configuration or flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for DurationSpec {
    fn from(d: Duration) -> Self {
        DurationSpec(d)
    }
}

/// Parses seconds given as a number.
pub fn from_seconds(secs: f64, shown: &str) -> Result<Duration, DurationError> {
    if !secs.is_finite() {
        return Err(DurationError::Malformed(shown.to_string()));
    }
    if secs < 0.0 {
        return Err(DurationError::Negative(shown.to_string()));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::TooLong(shown.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `250ms`, `2s`, `1.5s`, `1m30s`, `2h`, `1d`, `500us`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Malformed(text.to_string()));
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(text.to_string()));
    }
    // Plain seconds are digits and one dot, as the schema's pattern says (no "1e3", no "inf").
    if s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && let Ok(secs) = s.parse::<f64>()
    {
        return from_seconds(secs, text);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::Malformed(text.to_string()))?;
        if num_len == 0 {
            return Err(DurationError::Malformed(text.to_string()));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| DurationError::Malformed(text.to_string()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            _ => return Err(DurationError::Malformed(text.to_string())),
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    from_seconds(total, text)
}

/// Formats a duration the way the seeds' log lines show it: `1s`, `500ms`, `1.5s`, `2m30s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}µs", d.as_micros());
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{:.3}", secs);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return format!("{s}s");
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for DurationSpec {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(DurationSpec)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"250ms\", \"2s\", \"1m30s\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                from_seconds(v as f64, &v.to_string())
                    .map(DurationSpec)
                    .map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                from_seconds(v as f64, &v.to_string())
                    .map(DurationSpec)
                    .map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationSpec, E> {
                from_seconds(v, &v.to_string())
                    .map(DurationSpec)
                    .map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                parse_duration(v).map(DurationSpec).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: a number of seconds (integer or float, >= 0) or a string such as \"250ms\", \"2s\", \"1m30s\", \"1h\".",
            "type": ["number", "string"],
            "minimum": 0,
            "maximum": 2678400,
            "pattern": "^\\s*(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)\\s*(ns|us|µs|ms|s|sec|secs|m|min|mins|h|hr|hrs|d)?\\s*)+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases = [
            ("250ms", 250_000_000u64),
            ("2s", 2_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5", 1_500_000_000),
            ("3", 3_000_000_000),
            ("0", 0),
            ("1h", 3_600_000_000_000),
            ("1.5s", 1_500_000_000),
            ("500us", 500_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "lots",
            "5 parsecs",
            "ms",
            "1x",
            "-1",
            "-2s",
            "1e400",
            "NaN",
            "inf",
            "40d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_like_the_seed_logs() {
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
    }
}
