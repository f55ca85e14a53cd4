//! Feeds 20,000 random and mutated configs to the parser the CLI and the module share: none may
//! panic, and every clause of every rejection (messages are joined with "; ") must name a key it
//! is about (the key whose value was mutated, or one inside the new value; not inside a quoted
//! value it echoes), or say that the top level must be a mapping.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retryx::config::Resolved;
use serde_json::{Map, Value, json};

const KEYS: &[&str] = &[
    "max_attempts",
    "retry_policy",
    "base_delay",
    "max_delay",
    "backoff_multiplier",
    "jitter_enabled",
    "jitter",
    "jitter_seed",
    "timeout",
    "deadline",
    "kill_grace",
    "retry_conditions",
    "retry_on_exit",
    "fail_on_exit",
    "retry_if",
    "fail_if",
    "error_patterns",
    "delay_from_output",
    "command",
    "argv",
    "chdir",
    "env",
    "stdin",
    "operation",
    "operation_configs",
    "context",
    "session_id",
    "artifacts_dir",
    "external_systems",
    "monitoring",
    "circuit_breaker",
    "bulkhead",
    "retry_budget",
    "adaptive",
    "action",
    "output_tail_bytes",
    "class_overrides",
    "state_backend",
    "state_backend_timeout",
    "notification_timeout",
    // keys of the nested dicts, so that mutations inside them stay mostly valid there
    "name",
    "url",
    "type",
    "enabled",
    "retry_count",
    "retry_delay",
    "auth_header",
    "headers",
    "notify_on",
    "failure_rate_threshold",
    "minimum_calls",
    "consecutive_failures",
    "open_duration",
    "max_concurrent",
    "max_wait",
    "alerts",
    "min_success_rate",
    "token_ratio",
    "max_tokens",
    "max_average_retries",
    "pattern",
    "class",
    "not_a_key",
];

fn seeds() -> Vec<Value> {
    vec![
        json!({"command": "true"}),
        json!({"max_attempts": 5, "retry_policy": "exponential_backoff", "base_delay": 10, "max_delay": 600,
               "backoff_multiplier": 1.5, "jitter_enabled": true,
               "retry_conditions": ["connection_error", "timeout", "temporary_failure", "resource_busy"],
               "external_integration": true,
               "external_systems": [{"name": "slack_alerts", "url": "https://hooks.slack.com/services/X", "method": "POST", "enabled": true}],
               "operation_configs": {"vmware_vm_create": {"max_attempts": 5, "base_delay": 10}},
               "monitoring": {"enabled": true, "alerts": {"min_success_rate": 85, "max_average_retries": 2.5}}}),
        json!({"argv": ["curl", "-f", "x"], "retry_on_exit": "1,75,100-110", "fail_if": ["denied"], "timeout": "2s",
               "deadline": "1m30s", "jitter": "decorrelated", "circuit_breaker": {"failure_rate_threshold": 50, "minimum_calls": 5},
               "bulkhead": {"max_concurrent": 2, "max_wait": "1s"}, "delay_from_output": "Retry-After: (\\d+)"}),
        json!({"command": "deploy", "operation": "api",
               "operation_configs": {"api": {"timeout": "30s", "max_delay": "2m", "class_overrides": {"rate_limit_exceeded": {"base_delay": "5s"}}}},
               "class_overrides": {"timeout": {"max_attempts": 2, "max_delay": "10s"}},
               "error_patterns": [{"pattern": "try later", "class": "temporary_failure"}],
               "external_systems": [{"name": "hook", "url": "http://127.0.0.1:9/h", "retry_count": 1, "retry_delay": "1s", "timeout": 5,
                                     "notify_on": ["failure"], "headers": {"X-K": "v"}}],
               "circuit_breaker": {"key": "k", "consecutive_failures": 3, "open_duration": "1m"},
               "retry_budget": {"key": "b", "token_ratio": 0.2, "max_tokens": 10}, "adaptive": {"enabled": true},
               "monitoring": {"enabled": true, "alerts": {"operation_max_retries": 3}}}),
    ]
}

fn random_scalar(rng: &mut ChaCha8Rng) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random_range(-5i64..20)),
        4 => json!(rng.random::<f64>() * 1e12 - 5e11),
        5 => json!(
            ["exponential", "linear_backoff", "fixed", "sometimes", ""][rng.random_range(0..5)]
        ),
        6 => json!(
            [
                "250ms", "2s", "1m30s", "-1s", "1e400", "lots", "  3 ", "0.5", "40d"
            ][rng.random_range(0..9)]
        ),
        7 => json!(["(", "[a-", "(?i)ok", ".*", "\\d+", "(\\d+)"][rng.random_range(0..6)]),
        8 => json!(["1,2", "1-x", "300", "5-1", "", "0-255"][rng.random_range(0..6)]),
        9 => {
            let len = rng.random_range(0..40);
            json!(
                (0..len)
                    .map(|_| char::from_u32(rng.random_range(0..0x2FFF)).unwrap_or('?'))
                    .collect::<String>()
            )
        }
        10 => json!(["yes", "no", "true", "3", "3.5", "[\"a\"]", "{}"][rng.random_range(0..7)]),
        _ => json!(rng.random::<u32>()),
    }
}

fn random_value(rng: &mut ChaCha8Rng, depth: u32) -> Value {
    if depth > 3 || rng.random_range(0..4) > 0 {
        return random_scalar(rng);
    }
    if rng.random::<bool>() {
        Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        )
    } else {
        let mut m = Map::new();
        for _ in 0..rng.random_range(0..4) {
            m.insert(
                KEYS[rng.random_range(0..KEYS.len())].to_string(),
                random_value(rng, depth + 1),
            );
        }
        Value::Object(m)
    }
}

/// Every key of `v`, at any depth (what a message about `v` may name).
fn keys_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                out.push(k.clone());
                keys_in(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| keys_in(i, out)),
        _ => {}
    }
}

/// Mutates `v` and adds to `touched` the keys a rejection of the mutation must name one of: the
/// key whose value changed (added, removed, replaced, or an item or scalar under it; not the
/// keys on the path down to it) and the keys inside a new value.
fn mutate(rng: &mut ChaCha8Rng, v: &mut Value, parent: Option<&str>, touched: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() && rng.random_range(0..3) == 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..3) {
                0 => {
                    touched.push(k.clone());
                    m.remove(k);
                }
                1 => {
                    if let Some(child) = m.get_mut(k) {
                        mutate(rng, child, Some(k), touched);
                    }
                }
                _ => {
                    let new = random_value(rng, 1);
                    touched.push(k.clone());
                    keys_in(&new, touched);
                    m.insert(k.clone(), new);
                }
            }
        }
        Value::Object(m) => {
            let k = KEYS[rng.random_range(0..KEYS.len())].to_string();
            let new = random_value(rng, 1);
            touched.push(k.clone());
            keys_in(&new, touched);
            m.insert(k, new);
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            mutate(rng, &mut items[i], parent, touched);
        }
        other => {
            let new = random_value(rng, 2);
            touched.extend(parent.map(str::to_string));
            keys_in(&new, touched);
            *other = new;
        }
    }
}

/// Whether `message` names `key` as a word (`'key'`, `a.key`, `key:` — not inside another word,
/// nor inside a double-quoted value the message echoes: `got "max_attempts"` names nothing).
fn names(message: &str, key: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    message.match_indices(key).any(|(i, _)| {
        let before = message[..i].chars().next_back();
        let after = message[i + key.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word) && !in_quotes(&message[..i])
    })
}

/// Whether the end of `text` is inside a double-quoted JSON string (quotes escaped with a
/// backslash do not count).
fn in_quotes(text: &str) -> bool {
    let (mut inside, mut escaped) = (false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if inside => escaped = true,
            '"' => inside = !inside,
            _ => {}
        }
    }
    inside
}

/// Configs tried: enough to reach every key with every kind of bad value many times over (the
/// seeds' keys each get hundreds of mutations); more only costs time (100,000 took four minutes
/// on a loaded 2-core machine).
const CASES: u32 = 20_000;

#[test]
fn random_configs_never_panic_and_every_rejection_names_a_key_it_was_about() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x7e7);
    let seeds = seeds();
    for seed in &seeds {
        if let Err(e) = Resolved::from_value(seed.clone(), Map::new(), false) {
            panic!("seed {seed} is not valid: {e}");
        }
    }
    let (mut accepted, mut rejected) = (0u32, 0u32);
    let mut unnamed: Vec<String> = Vec::new();
    let mut unnamed_total = 0u32;
    let mut reference: Option<jsonschema::Validator> = None;
    for i in 0..CASES {
        let mut touched = Vec::new();
        let value = if i % 5 == 0 {
            let v = random_value(&mut rng, 0);
            keys_in(&v, &mut touched);
            v
        } else {
            let mut v = seeds[rng.random_range(0..seeds.len())].clone();
            // Half the mutated cases get exactly one mutation, so that every clause of their
            // message is about the one key touched.
            let mutations = if i % 2 == 0 {
                1
            } else {
                rng.random_range(1..4)
            };
            for _ in 0..mutations {
                mutate(&mut rng, &mut v, None, &mut touched);
            }
            v
        };
        let coerce = rng.random::<bool>();
        let shown = value.to_string();
        // The fast path (typed parse + the schema's bounds), the schema check that explains
        // rejections, and the jsonschema crate all agree.
        let fast = retryx::config::coerce_and_validate(value.clone(), coerce);
        let by_schema = retryx::config::schema_accepts(value.clone(), coerce).unwrap();
        // (the crate on one config in four: it is the slow half of this test in a debug build)
        if i % 4 == 0 {
            let (coerced, schema) =
                retryx::config::coerced_for_schema(value.clone(), coerce).unwrap();
            let reference =
                reference.get_or_insert_with(|| jsonschema::validator_for(&schema).unwrap());
            assert_eq!(
                by_schema,
                value.is_object() && coerced.is_object() && reference.is_valid(&coerced),
                "the schema check and the jsonschema crate disagree on {shown} (coerce: {coerce})"
            );
        }
        // The one place the typed config is stricter: a duration string over 31 days, a bound
        // the schema's string pattern cannot say.
        let stricter = matches!(&fast, Err(e) if e.to_string().contains("31 days"));
        assert!(
            fast.is_ok() == by_schema || (stricter && by_schema),
            "fast path and jsonschema disagree on {shown} (coerce: {coerce}): {fast:?}"
        );
        let is_object = value.is_object();
        let outcome = std::panic::catch_unwind(|| Resolved::from_value(value, Map::new(), coerce));
        match outcome {
            Err(_) => panic!("parser panicked on {shown}"),
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(e)) => {
                rejected += 1;
                let msg = e.to_string();
                // Not a mapping at all: the message says what the top level must be. Else each
                // of the joined messages ("; ") names a key that was touched.
                let explained = if is_object {
                    msg.split("; ")
                        .all(|clause| touched.iter().any(|k| names(clause, k)))
                } else {
                    msg.contains("top level")
                };
                unnamed_total += u32::from(!explained);
                if !explained && unnamed.len() < 20 {
                    unnamed.push(format!(
                        "{shown} (coerce: {coerce}; keys {touched:?})\n  -> {msg}"
                    ));
                }
            }
        }
    }
    println!(
        "{CASES} configs: {accepted} accepted, {rejected} rejected, {unnamed_total} rejections naming none of their keys"
    );
    assert!(
        unnamed.is_empty(),
        "{unnamed_total} of {rejected} rejections name none of the keys they are about, e.g.:\n{}",
        unnamed.join("\n")
    );
    // Both paths were really exercised.
    assert!(
        accepted > CASES / 100 && rejected > CASES / 10,
        "accepted {accepted}, rejected {rejected}"
    );
}
