//! Checks a value against the embedded JSON Schema (draft 2020-12) and says what is wrong, key
//! by key, for `validate.rs` to word. It knows exactly the keywords `schemas/retry_manager.schema.json`
//! uses (a test walks the schema for others) and words its errors as the `jsonschema` crate
//! does; tests hold verdicts and messages equal to that crate's (a dev-dependency: 1.85 MB of
//! the stripped binary was jsonschema and its closure, for explaining rejections only).
//! Pure; it must not grow a keyword the schema does not use.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// What failed, as `jsonschema::error::ValidationErrorKind` names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    AdditionalProperties { unexpected: Vec<String> },
    Required { property: Value },
    Type { types: Vec<String> },
    Enum,
    Pattern { pattern: String },
    Constant { expected: Value },
    Minimum { limit: Value },
    Maximum { limit: Value },
    ExclusiveMinimum { limit: Value },
    ExclusiveMaximum { limit: Value },
    OneOfNotValid,
    OneOfMultipleValid,
    FalseSchema,
}

/// One failed keyword: where in the instance (a JSON pointer), the value there, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SchemaError {
    pub(crate) instance_path: String,
    pub(crate) instance: Value,
    pub(crate) kind: Kind,
}

/// The keywords checked or deliberately ignored (annotations; `format` is one in 2020-12).
#[cfg(test)]
pub(crate) const KNOWN_KEYWORDS: &[&str] = &[
    "$ref",
    "additionalProperties",
    "const",
    "enum",
    "items",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "oneOf",
    "pattern",
    "properties",
    "required",
    "type",
    "$defs",
    "$schema",
    "description",
    "format",
    "title",
    "default",
];

impl fmt::Display for SchemaError {
    /// The jsonschema crate's wording for the kinds `validate.rs` shows as they are (it words
    /// additional properties, required, type, enum and pattern errors itself).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.instance;
        match &self.kind {
            Kind::AdditionalProperties { unexpected } => {
                let list: Vec<String> = unexpected.iter().map(|u| format!("'{u}'")).collect();
                let verb = if unexpected.len() == 1 { "was" } else { "were" };
                write!(
                    f,
                    "Additional properties are not allowed ({} {verb} unexpected)",
                    list.join(", ")
                )
            }
            Kind::Required { property } => write!(f, "{property} is a required property"),
            Kind::Type { types } => {
                let quoted: Vec<String> = types.iter().map(|t| format!("\"{t}\"")).collect();
                let noun = if types.len() == 1 { "type" } else { "types" };
                write!(f, "{i} is not of {noun} {}", quoted.join(", "))
            }
            Kind::Enum => write!(f, "{i} is not one of the allowed values"),
            Kind::Pattern { pattern } => write!(f, r#"{i} does not match "{pattern}""#),
            Kind::Constant { expected } => write!(f, "{expected} was expected"),
            Kind::Minimum { limit } => write!(f, "{i} is less than the minimum of {limit}"),
            Kind::Maximum { limit } => write!(f, "{i} is greater than the maximum of {limit}"),
            Kind::ExclusiveMinimum { limit } => {
                write!(f, "{i} is less than or equal to the minimum of {limit}")
            }
            Kind::ExclusiveMaximum { limit } => {
                write!(f, "{i} is greater than or equal to the maximum of {limit}")
            }
            Kind::OneOfNotValid => write!(
                f,
                "{i} is not valid under any of the schemas listed in the 'oneOf' keyword"
            ),
            Kind::OneOfMultipleValid => write!(
                f,
                "{i} is valid under more than one of the schemas listed in the 'oneOf' keyword"
            ),
            Kind::FalseSchema => write!(f, "False schema does not allow {i}"),
        }
    }
}

/// Every error of `value` against the schema `root`.
pub(crate) fn errors(root: &Value, value: &Value) -> Vec<SchemaError> {
    let mut out = Vec::new();
    check(root, root, value, &mut String::new(), &mut out, false);
    out
}

pub(crate) fn is_valid(root: &Value, value: &Value) -> bool {
    let mut out = Vec::new();
    check(root, root, value, &mut String::new(), &mut out, true)
}

fn push_segment(path: &mut String, seg: &str) -> usize {
    let len = path.len();
    path.push('/');
    path.push_str(&seg.replace('~', "~0").replace('/', "~1"));
    len
}

/// Long (~200 lines): one match arm per JSON Schema keyword, kept together so the keywords
/// read as the spec lists them.
/// Whether `value` is valid under `node`; errors go to `out` (with `first`, it stops at one).
fn check(
    root: &Value,
    node: &Value,
    value: &Value,
    path: &mut String,
    out: &mut Vec<SchemaError>,
    first: bool,
) -> bool {
    let fail = |out: &mut Vec<SchemaError>, path: &str, kind: Kind| {
        out.push(SchemaError {
            instance_path: path.to_string(),
            instance: value.clone(),
            kind,
        });
        false
    };
    let map = match node {
        Value::Bool(true) => return true,
        Value::Object(m) => m,
        _ => return fail(out, path, Kind::FalseSchema),
    };
    let mut ok = true;
    macro_rules! stop {
        () => {
            if first && !ok {
                return false;
            }
        };
    }
    if let Some(target) = map
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| root.pointer(p))
    {
        ok &= check(root, target, value, path, out, first);
        stop!();
    }
    if let Some(t) = map.get("type") {
        let matches = |t: &Value| t.as_str().is_some_and(|t| is_type(value, t));
        let fits = match t {
            Value::Array(ts) => ts.iter().any(matches),
            one => matches(one),
        };
        if !fits {
            let types = match t {
                Value::Array(ts) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect(),
                one => one.as_str().map(String::from).into_iter().collect(),
            };
            ok &= fail(out, path, Kind::Type { types });
            stop!();
        }
    }
    if let Some(Value::Array(allowed)) = map.get("enum")
        && !allowed.iter().any(|a| equal(a, value))
    {
        ok &= fail(out, path, Kind::Enum);
        stop!();
    }
    if let Some(expected) = map.get("const")
        && !equal(expected, value)
    {
        ok &= fail(
            out,
            path,
            Kind::Constant {
                expected: expected.clone(),
            },
        );
        stop!();
    }
    if let (Some(Value::String(pattern)), Value::String(s)) = (map.get("pattern"), value)
        && !matches_pattern(pattern, s)
    {
        ok &= fail(
            out,
            path,
            Kind::Pattern {
                pattern: pattern.clone(),
            },
        );
        stop!();
    }
    if let Value::Number(_) = value {
        if let Some(limit) = map.get("minimum")
            && compare(value, limit) == Some(std::cmp::Ordering::Less)
        {
            ok &= fail(
                out,
                path,
                Kind::Minimum {
                    limit: limit.clone(),
                },
            );
            stop!();
        }
        if let Some(limit) = map.get("maximum")
            && compare(value, limit) == Some(std::cmp::Ordering::Greater)
        {
            ok &= fail(
                out,
                path,
                Kind::Maximum {
                    limit: limit.clone(),
                },
            );
            stop!();
        }
        if let Some(limit) = map.get("exclusiveMinimum")
            && compare(value, limit).is_some_and(|o| o != std::cmp::Ordering::Greater)
        {
            ok &= fail(
                out,
                path,
                Kind::ExclusiveMinimum {
                    limit: limit.clone(),
                },
            );
            stop!();
        }
        if let Some(limit) = map.get("exclusiveMaximum")
            && compare(value, limit).is_some_and(|o| o != std::cmp::Ordering::Less)
        {
            ok &= fail(
                out,
                path,
                Kind::ExclusiveMaximum {
                    limit: limit.clone(),
                },
            );
            stop!();
        }
    }
    if let Some(Value::Array(alternatives)) = map.get("oneOf") {
        let valid = alternatives
            .iter()
            .filter(|alt| check(root, alt, value, &mut path.clone(), &mut Vec::new(), true))
            .count();
        if valid != 1 {
            let kind = if valid == 0 {
                Kind::OneOfNotValid
            } else {
                Kind::OneOfMultipleValid
            };
            ok &= fail(out, path, kind);
            stop!();
        }
    }
    match value {
        Value::Object(obj) => {
            let props = map.get("properties").and_then(Value::as_object);
            if let Some(Value::Array(required)) = map.get("required") {
                for r in required {
                    if r.as_str().is_some_and(|k| !obj.contains_key(k)) {
                        ok &= fail(
                            out,
                            path,
                            Kind::Required {
                                property: r.clone(),
                            },
                        );
                        stop!();
                    }
                }
            }
            let mut unexpected = Vec::new();
            for (key, val) in obj {
                let sub = props.and_then(|p| p.get(key));
                let len = push_segment(path, key);
                match (sub, map.get("additionalProperties")) {
                    (Some(sub), _) => ok &= check(root, sub, val, path, out, first),
                    (None, Some(Value::Bool(false))) => unexpected.push(key.clone()),
                    (None, Some(extra)) => ok &= check(root, extra, val, path, out, first),
                    (None, None) => {}
                }
                path.truncate(len);
                stop!();
            }
            if !unexpected.is_empty() {
                ok &= fail(out, path, Kind::AdditionalProperties { unexpected });
            }
        }
        Value::Array(items) => {
            if let Some(sub) = map.get("items") {
                for (n, item) in items.iter().enumerate() {
                    let len = push_segment(path, &n.to_string());
                    ok &= check(root, sub, item, path, out, first);
                    path.truncate(len);
                    stop!();
                }
            }
        }
        _ => {}
    }
    ok
}

/// JSON Schema's types; an integer is any number without a fractional part (3.0 included).
fn is_type(v: &Value, t: &str) -> bool {
    match (t, v) {
        ("null", Value::Null) | ("boolean", Value::Bool(_)) | ("string", Value::String(_)) => true,
        ("array", Value::Array(_))
        | ("object", Value::Object(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Equality as JSON Schema has it: numbers by value (1 equals 1.0).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(std::cmp::Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// Numbers compared exactly when both are integers, else as f64.
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return None;
    };
    if let (Some(p), Some(q)) = (x.as_i64(), y.as_i64()) {
        return Some(p.cmp(&q));
    }
    if let (Some(p), Some(q)) = (x.as_u64(), y.as_u64()) {
        return Some(p.cmp(&q));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

/// The schema's patterns, compiled once each (the schema has one: the duration syntax).
fn matches_pattern(pattern: &str, s: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = match cache.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).ok());
    // A pattern this engine cannot compile accepts nothing: refused, never silently passed.
    re.as_ref().is_some_and(|re| re.is_match(s))
}
