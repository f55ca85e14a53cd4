//! Turns raw JSON (module args, a `--config` file, a role dict) into a `Config`: drops nulls,
//! coerces strings where the schema wants numbers, booleans or lists (Ansible's `k=v` syntax
//! makes every value a string), validates against `schemas/retry_manager.schema.json`, then
//! deserialises. Every rejection names the key and what was expected (the schema check that
//! explains it is `schema_check.rs`). Pure.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::Config;
use super::schema_check::{self, SchemaError};

/// The committed schema; a test keeps it equal to what the types generate.
const SCHEMA_TEXT: &str = include_str!("../../schemas/retry_manager.schema.json");

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ConfigError::Invalid(msg.into())
    }
}

/// The schema the types describe, cleaned so that optional keys are plain (absent = unset;
/// nulls are dropped before validation).
pub fn schema_json() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<Config>();
    let mut value = schema.to_value();
    strip_null_alternatives(&mut value);
    value
}

fn strip_null_alternatives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(alts)) = map.get("anyOf") {
                let kept: Vec<Value> = alts
                    .iter()
                    .filter(|a| a.get("type") != Some(&Value::from("null")))
                    .cloned()
                    .collect();
                if kept.len() == 1 {
                    map.remove("anyOf");
                    if let Value::Object(inner) = &kept[0] {
                        for (k, val) in inner {
                            map.entry(k.clone()).or_insert_with(|| val.clone());
                        }
                    }
                }
            }
            for val in map.values_mut() {
                strip_null_alternatives(val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null_alternatives),
        _ => {}
    }
}

/// The committed schema, parsed (cheap, unlike compiling a validator).
fn schema() -> Result<&'static Value, ConfigError> {
    static S: OnceLock<Result<Value, String>> = OnceLock::new();
    S.get_or_init(|| serde_json::from_str(SCHEMA_TEXT).map_err(|e| format!("embedded schema: {e}")))
        .as_ref()
        .map_err(|e| ConfigError::invalid(e.clone()))
}

/// The schema's numeric bounds, which serde's types do not carry (everything else the schema
/// says — types, enums, unknown keys, duration syntax — the typed config enforces itself).
fn within_bounds(root: &Value, node: &Value, v: &Value) -> bool {
    let node = resolve(root, node);
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let bound = |k: &str| node.get(k).and_then(Value::as_f64);
            bound("minimum").is_none_or(|m| x >= m)
                && bound("maximum").is_none_or(|m| x <= m)
                && bound("exclusiveMinimum").is_none_or(|m| x > m)
                && bound("exclusiveMaximum").is_none_or(|m| x < m)
        }
        Value::Object(map) => {
            let props = node.get("properties").and_then(Value::as_object);
            let additional = node.get("additionalProperties").filter(|a| a.is_object());
            map.iter().all(
                |(k, val)| match props.and_then(|p| p.get(k)).or(additional) {
                    Some(sub) => within_bounds(root, sub, val),
                    None => true,
                },
            )
        }
        Value::Array(items) => match node.get("items") {
            Some(sub) => items.iter().all(|i| within_bounds(root, sub, i)),
            None => true,
        },
        _ => true,
    }
}

/// Drops null values everywhere (a null is an unset key, as Ansible's `omit`-less templates give).
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, val| !val.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Follows `$ref` into the root's `$defs`.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix("#").and_then(|p| root.pointer(p)) {
                Some(target) => node = target,
                None => return node,
            },
            None => return node,
        }
    }
    node
}

fn types_of(node: &Value) -> Vec<&str> {
    match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
        "false" | "no" | "off" | "0" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// Coerces strings toward what the schema asks for; leaves anything it cannot coerce for the
/// validator to reject with a message.
fn coerce(root: &Value, node: &Value, v: &mut Value, strings: bool) {
    let node = resolve(root, node);
    let types = types_of(node);
    // JSON Schema counts 3.0 as an integer; the typed config wants 3.
    if let Value::Number(n) = v
        && types.contains(&"integer")
        && !types.contains(&"number")
        && let Some(f) = n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9e15 && !n.is_i64() && !n.is_u64())
    {
        *v = if f < 0.0 {
            Value::from(f as i64)
        } else {
            Value::from(f as u64)
        };
    }
    if !strings {
        // fall through to the children only
    } else if let Value::String(s) = v {
        if !types.contains(&"string") && !types.is_empty() {
            let t = s.trim();
            let replacement = if types.contains(&"integer") {
                t.parse::<i64>().ok().map(Value::from).or_else(|| {
                    // "3.0" for an integer is fine; "3.5" is not (left for the validator)
                    t.parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                        .map(|f| Value::from(f as i64))
                })
            } else if types.contains(&"number") {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            } else if types.contains(&"boolean") {
                parse_bool(t).map(Value::Bool)
            } else if (types.contains(&"array") && t.starts_with('['))
                || (types.contains(&"object") && t.starts_with('{'))
            {
                serde_json::from_str(t).ok()
            } else if types.contains(&"array") {
                Some(Value::Array(
                    t.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(Value::from)
                        .collect(),
                ))
            } else {
                None
            };
            if let Some(r) = replacement {
                *v = r;
            }
        } else if types.contains(&"string")
            && types.contains(&"array")
            && s.trim_start().starts_with('[')
        {
            if let Ok(parsed @ Value::Array(_)) = serde_json::from_str::<Value>(s) {
                *v = parsed;
            }
        }
    }
    match v {
        Value::Object(map) => {
            let props = node.get("properties").and_then(Value::as_object);
            let additional = node.get("additionalProperties").filter(|a| a.is_object());
            for (key, val) in map.iter_mut() {
                if let Some(sub) = props.and_then(|p| p.get(key)) {
                    coerce(root, sub, val, strings);
                } else if let Some(sub) = additional {
                    coerce(root, sub, val, strings);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = node.get("items") {
                for item in items {
                    coerce(root, sub, item, strings);
                }
            }
        }
        _ => {}
    }
}

/// `/operation_configs/x~1y/max_attempts` → `operation_configs.x/y.max_attempts`.
fn dotted(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|seg| seg.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

/// The schema node that describes the value at `pointer`.
fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut node = resolve(root, root);
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let next = if let Some(p) = node.get("properties").and_then(|p| p.get(&seg)) {
            p
        } else if let Some(a) = node.get("additionalProperties").filter(|a| a.is_object()) {
            a
        } else {
            node.get("items")?
        };
        node = resolve(root, next);
    }
    Some(node)
}

fn describe_expected(node: &Value) -> String {
    if let Some(d) = node.get("description").and_then(Value::as_str)
        && d.starts_with("A duration")
    {
        return "a duration like \"250ms\", \"2s\", \"1m30s\" or a number of seconds".into();
    }
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        return format!("one of {}", names.join(", "));
    }
    let types = types_of(node);
    if types.is_empty() {
        return "a valid value".into();
    }
    let words: Vec<&str> = types
        .iter()
        .map(|t| match *t {
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "a boolean",
            "string" => "a string",
            "array" => "a list",
            "object" => "a mapping",
            other => other,
        })
        .collect();
    words.join(" or ")
}

fn suggestion(unexpected: &str, allowed: &[&str]) -> Option<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    allowed
        .iter()
        .map(|k| (distance(unexpected, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(" (did you mean '{k}'?)"))
}

/// Keys whose values may hold a secret: a rejected value under them is described, not shown.
const SECRET_KEYS: &[&str] = &[
    "auth_header",
    "headers",
    "env",
    "url",
    "state_backend",
    "api_key",
    "password",
    "token",
];

/// The value a message may show: under a secret-bearing key only its kind; elsewhere the value,
/// with any URL in it cut to scheme, host and port (a URL in a list or a dict handed to the
/// wrong key still carries its password).
fn shown_instance(pointer: &str, v: &Value) -> Value {
    let secret = pointer.split('/').any(|seg| SECRET_KEYS.contains(&seg));
    if secret && !matches!(v, Value::Null | Value::Bool(_) | Value::Number(_)) {
        return Value::String(format!("<{}, not shown>", kind_of(v)));
    }
    fn cut_urls(v: &Value) -> Value {
        match v {
            Value::String(s) if s.contains("://") => Value::String(crate::log::url_origin(s)),
            Value::Array(items) => Value::Array(items.iter().map(cut_urls).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        // Any value but a scalar flag or number may carry the secret (a dict of
                        // headers, a list of env pairs), so only its kind is shown.
                        let shown = if SECRET_KEYS.contains(&k.as_str())
                            && !matches!(v, Value::Null | Value::Bool(_) | Value::Number(_))
                        {
                            Value::String(format!("<{}, not shown>", kind_of(v)))
                        } else {
                            cut_urls(v)
                        };
                        (k.clone(), shown)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    cut_urls(v)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

fn format_error(root: &Value, e: &SchemaError) -> String {
    use super::schema_check::Kind as K;
    let pointer = e.instance_path.as_str();
    let e = &SchemaError {
        instance: shown_instance(pointer, &e.instance),
        ..e.clone()
    };
    let key = dotted(pointer);
    let at = if key.is_empty() {
        "the top level".to_string()
    } else {
        format!("'{key}'")
    };
    let node = schema_at(root, pointer);
    match &e.kind {
        K::AdditionalProperties { unexpected } => {
            let allowed: Vec<&str> = node
                .and_then(|n| n.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            unexpected
                .iter()
                .map(|u| {
                    let full = if key.is_empty() { u.clone() } else { format!("{key}.{u}") };
                    let hint = suggestion(u, &allowed).unwrap_or_default();
                    format!("unknown key '{full}' at {at}{hint} (`retryx schema` lists the keys allowed)")
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        K::Required { property } => format!(
            "{at} is missing the required key '{}'",
            property
                .as_str()
                .map_or_else(|| property.to_string(), String::from)
        ),
        K::Type { .. } | K::Enum | K::Pattern { .. } => format!(
            "key {at}: expected {}, got {}",
            node.map(describe_expected)
                .unwrap_or_else(|| "a valid value".into()),
            short(&e.instance)
        ),
        _ => format!("key {at}: {e}"),
    }
}

/// Every schema error for a value (after null-dropping and coercion), as messages.
pub fn validator_errors(value: &Value) -> Result<Vec<String>, ConfigError> {
    let root = schema()?;
    Ok(schema_check::errors(root, value)
        .iter()
        .map(|e| format_error(root, e))
        .collect())
}

/// Raw JSON → `Config`. `coerce_strings` turns `"3"` into 3 and `"yes"` into true where the
/// schema asks (module args always; config files too, as one schema serves both). A config the
/// typed parse and the schema's bounds accept is valid (tests/config_fuzz.rs holds this equal to
/// the jsonschema crate's verdict on 5,000 of its 20,000 configs); anything else is explained by the schema
/// check, key by key.
pub fn coerce_and_validate(mut value: Value, coerce_strings: bool) -> Result<Config, ConfigError> {
    if !value.is_object() {
        return Err(ConfigError::invalid(format!(
            "expected a mapping of retry_manager keys at the top level, got {}",
            short(&shown_instance("", &value))
        )));
    }
    // Free-form, so the schema says nothing of its depth; the records must be able to hold it.
    if let Some(context) = value.get("context") {
        super::nesting::check_context(context).map_err(ConfigError::Invalid)?;
    }
    drop_nulls(&mut value);
    let root = schema()?;
    coerce(root, root, &mut value, coerce_strings);
    let typed = serde_json::from_value::<Config>(value.clone());
    if let Ok(config) = &typed
        && within_bounds(root, root, &value)
    {
        return Ok(config.clone());
    }
    let mut errors = validator_errors(&value)?;
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        return Err(ConfigError::invalid(errors.join("; ")));
    }
    match typed {
        // Parsed again with the path tracked (only on this error path: it costs on every key),
        // so the message names the key, e.g. `key 'operation_configs.api.timeout': ...`.
        Err(e) => {
            let path = serde_path_to_error::deserialize::<_, Config>(value)
                .err()
                .map(|e| e.path().to_string())
                .filter(|p| !p.is_empty() && p != ".");
            let e = plain_words(&e.to_string());
            Err(ConfigError::invalid(match path {
                Some(p) => format!("key '{p}': {e}"),
                None => format!("invalid configuration: {e}"),
            }))
        }
        // The schema accepted what the bounds check refused: the schema is the authority.
        Ok(config) => Ok(config),
    }
}

/// serde's type names said as the schema says them (`expected u64` means nothing to a user).
fn plain_words(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("u64", "a whole number from 0 to 18446744073709551615"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u16", "a whole number from 0 to 65535"),
        ("u8", "a whole number from 0 to 255"),
        ("i64", "a whole number"),
        ("usize", "a whole number from 0 up"),
        ("f64", "a number"),
    ] {
        out = out.replace(&format!("expected {rust}"), &format!("expected {plain}"));
    }
    out.replace("invalid type: floating point", "got the number")
        .replace("invalid type: ", "got ")
        .replace("invalid value: ", "got ")
}

/// Whether the schema check alone accepts `value` (after the same null-dropping and
/// coercion). For tests that hold the fast path equal to it.
pub fn schema_accepts(mut value: Value, coerce_strings: bool) -> Result<bool, ConfigError> {
    if !value.is_object() {
        return Ok(false);
    }
    drop_nulls(&mut value);
    let root = schema()?;
    coerce(root, root, &mut value, coerce_strings);
    Ok(value.is_object() && schema_check::is_valid(root, &value))
}

/// `value` after the null-dropping and coercion the check sees, with the embedded schema: for
/// tests that hold the schema check equal to the jsonschema crate.
pub fn coerced_for_schema(
    mut value: Value,
    coerce_strings: bool,
) -> Result<(Value, Value), ConfigError> {
    drop_nulls(&mut value);
    let root = schema()?;
    coerce(root, root, &mut value, coerce_strings);
    Ok((value, root.clone()))
}

/// Overlays `over`'s keys onto `base` (shallow: a key given replaces the whole value).
pub fn overlay(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        base.insert(k.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn committed_schema_matches_the_types() {
        let committed: Value = serde_json::from_str(SCHEMA_TEXT).unwrap();
        assert_eq!(
            committed,
            schema_json(),
            "schemas/retry_manager.schema.json is stale: run `cargo run -- schema > schemas/retry_manager.schema.json`"
        );
    }

    #[test]
    fn seed_advanced_example_is_accepted() {
        let v = json!({
            "max_attempts": 5, "retry_policy": "exponential_backoff", "base_delay": 10, "max_delay": 600,
            "backoff_multiplier": 1.5, "jitter_enabled": true,
            "retry_conditions": ["connection_error", "timeout", "temporary_failure", "resource_busy"],
            "external_integration": true,
            "external_systems": [{"name": "slack_alerts", "url": "https://hooks.slack.com/services/YOUR/SLACK/WEBHOOK", "method": "POST", "enabled": true}],
            "operation_configs": {"vmware_vm_create": {"max_attempts": 5, "base_delay": 10, "max_delay": 600, "retry_policy": "exponential_backoff", "backoff_multiplier": 1.5}},
            "monitoring": {"enabled": true, "metrics": ["success_rate"], "alerts": {"min_success_rate": 85, "max_average_retries": 2.5, "max_execution_time": 1800, "max_error_rate": 15}}
        });
        let c = coerce_and_validate(v, false).unwrap();
        assert_eq!(c.max_attempts, Some(5));
    }

    #[test]
    fn strings_are_coerced_for_module_args() {
        let c = coerce_and_validate(
            json!({"max_attempts": "3", "jitter_enabled": "no", "backoff_multiplier": "1.5", "retry_conditions": "timeout, connection_error", "base_delay": "2s", "argv": "[\"echo\", \"hi\"]"}),
            true,
        )
        .unwrap();
        assert_eq!(c.max_attempts, Some(3));
        assert_eq!(c.jitter_enabled, Some(false));
        assert_eq!(c.backoff_multiplier, Some(1.5));
        assert_eq!(c.retry_conditions.map(|v| v.len()), Some(2));
        assert_eq!(c.argv, Some(vec!["echo".to_string(), "hi".to_string()]));
    }

    #[test]
    fn errors_name_the_key_and_what_was_expected() {
        let cases = [
            (
                json!({"max_attempts": "lots"}),
                "'max_attempts': expected an integer, got \"lots\"",
            ),
            (
                json!({"max_attemps": 3}),
                "unknown key 'max_attemps' at the top level (did you mean 'max_attempts'?)",
            ),
            (
                json!({"retry_policy": "nonsense"}),
                "'retry_policy': expected one of exponential, linear, fixed",
            ),
            (
                json!({"base_delay": "soon"}),
                "'base_delay': expected a duration like",
            ),
            (json!({"base_delay": -5}), "base_delay"),
            (json!({"max_attempts": 0}), "max_attempts"),
            (json!({"argv": 5}), "'argv': expected a list, got 5"),
            (
                json!({"operation_configs": {"op": {"max_attempts": "x"}}}),
                "'operation_configs.op.max_attempts': expected an integer",
            ),
            (
                json!({"circuit_breaker": {"bogus": 1}}),
                "unknown key 'circuit_breaker.bogus'",
            ),
            (
                json!({"retry_conditions": ["sometimes"]}),
                "'retry_conditions.0': expected one of connection_error",
            ),
            (json!([1, 2]), "expected a mapping"),
        ];
        for (value, want) in cases {
            let err = coerce_and_validate(value.clone(), true)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want),
                "{value}: got {err:?}, want it to contain {want:?}"
            );
        }
    }

    #[test]
    fn nulls_are_unset() {
        let c = coerce_and_validate(json!({"max_attempts": null, "context": null}), true).unwrap();
        assert_eq!(c.max_attempts, None);
    }

    /// The schema check words and locates every error as the jsonschema crate does (the crate
    /// is a dev-dependency for this and for the fuzz test's verdicts).
    #[test]
    fn messages_match_the_jsonschema_crate() {
        use super::schema_check::Kind;
        use jsonschema::error::ValidationErrorKind as J;
        let root = schema().unwrap();
        let crate_validator = jsonschema::validator_for(root).unwrap();
        let from_crate = |e: &jsonschema::ValidationError| {
            let kind = match &e.kind {
                J::AdditionalProperties { unexpected } => Kind::AdditionalProperties {
                    unexpected: unexpected.clone(),
                },
                J::Required { property } => Kind::Required {
                    property: property.clone(),
                },
                J::Type { .. } => Kind::Type { types: Vec::new() },
                J::Enum { .. } => Kind::Enum,
                J::Pattern { pattern } => Kind::Pattern {
                    pattern: pattern.clone(),
                },
                J::Constant { expected_value } => Kind::Constant {
                    expected: expected_value.clone(),
                },
                J::Minimum { limit } => Kind::Minimum {
                    limit: limit.clone(),
                },
                J::Maximum { limit } => Kind::Maximum {
                    limit: limit.clone(),
                },
                J::ExclusiveMinimum { limit } => Kind::ExclusiveMinimum {
                    limit: limit.clone(),
                },
                J::ExclusiveMaximum { limit } => Kind::ExclusiveMaximum {
                    limit: limit.clone(),
                },
                J::OneOfNotValid { .. } => Kind::OneOfNotValid,
                J::OneOfMultipleValid { .. } => Kind::OneOfMultipleValid,
                J::FalseSchema => Kind::FalseSchema,
                other => panic!("the schema check does not know {other:?}"),
            };
            SchemaError {
                instance_path: e.instance_path.as_str().to_string(),
                instance: e.instance.clone().into_owned(),
                kind,
            }
        };
        let cases = [
            json!({"max_attempts": "lots", "base_delay": -5, "max_delay": "soon"}),
            json!({"max_attempts": 0, "backoff_multiplier": 1e9, "retry_policy": "sometimes"}),
            json!({"max_attemps": 3, "jiter": "none", "operation_configs": {"a/b~c": {"max_attempts": 0.5}}}),
            json!({"argv": [1, "x", null], "env": {"A": 1}, "retry_conditions": ["timeout", "never"]}),
            json!({"circuit_breaker": {"window_type": "sliding", "bogus": 1, "failure_threshold": -1}}),
            json!({"error_patterns": [{"pattern": "x"}, {"class": "timeout"}, 5]}),
            json!({"external_systems": [{"url": "http://127.0.0.1"}, {"name": 7, "required": "no"}]}),
            json!({"monitoring": {"alerts": {"min_success_rate": 101, "max_error_rate": -1}}}),
            json!({"circuit_breaker": {"window_type": 3}, "bulkhead": [], "jitter": true}),
            json!({"circuit_breaker": {"failure_rate_threshold": 0, "slow_call_rate_threshold": 0.0}}),
            json!({"max_attempts": 3.0, "base_delay": "1m30s", "timeout": "2 fortnights"}),
        ];
        for value in cases {
            let mut mine: Vec<String> = schema_check::errors(root, &value)
                .iter()
                .map(|e| format_error(root, e))
                .collect();
            let mut theirs: Vec<String> = crate_validator
                .iter_errors(&value)
                .map(|e| format_error(root, &from_crate(&e)))
                .collect();
            mine.sort();
            theirs.sort();
            assert_eq!(mine, theirs, "{value}");
            assert!(!mine.is_empty(), "{value}: every case is wrong somewhere");
            for e in crate_validator.iter_errors(&value) {
                let ours = from_crate(&e);
                if !matches!(ours.kind, Kind::Type { .. } | Kind::Enum) {
                    assert_eq!(ours.to_string(), e.to_string(), "{value}");
                }
            }
            assert_eq!(
                schema_check::is_valid(root, &value),
                crate_validator.is_valid(&value)
            );
        }
    }

    /// The check knows every keyword the committed schema uses (a new one must be taught).
    #[test]
    fn the_schema_uses_only_keywords_the_check_knows() {
        fn walk(v: &Value, at: &str) {
            if let Value::Object(m) = v {
                for (k, sub) in m {
                    assert!(
                        schema_check::KNOWN_KEYWORDS.contains(&k.as_str()),
                        "keyword {k} at {at} is not checked by schema_check.rs"
                    );
                    match k.as_str() {
                        "properties" | "$defs" => sub
                            .as_object()
                            .into_iter()
                            .flatten()
                            .for_each(|(name, s)| walk(s, &format!("{at}/{k}/{name}"))),
                        "enum" | "const" | "required" | "description" | "title" | "default" => {}
                        _ => match sub {
                            Value::Array(items) => items.iter().for_each(|i| walk(i, at)),
                            other => walk(other, &format!("{at}/{k}")),
                        },
                    }
                }
            }
        }
        walk(schema().unwrap(), "");
    }
}
