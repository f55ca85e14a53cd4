//! Feeds 100,000 random and mutated configs to the parser the CLI and the module share: none may
//! panic, and every rejection must carry a message.

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

fn mutate(rng: &mut ChaCha8Rng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() && rng.random_range(0..3) == 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..3) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    if let Some(child) = m.get_mut(k) {
                        mutate(rng, child);
                    }
                }
                _ => {
                    m.insert(k.clone(), random_value(rng, 1));
                }
            }
        }
        Value::Object(m) => {
            m.insert(
                KEYS[rng.random_range(0..KEYS.len())].to_string(),
                random_value(rng, 1),
            );
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            mutate(rng, &mut items[i]);
        }
        other => *other = random_value(rng, 2),
    }
}

#[test]
fn a_hundred_thousand_configs_never_panic_and_every_rejection_explains_itself() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x7e7);
    let seeds = seeds();
    let (mut accepted, mut rejected) = (0u32, 0u32);
    let mut reference: Option<jsonschema::Validator> = None;
    for i in 0..100_000u32 {
        let value = if i % 5 == 0 {
            random_value(&mut rng, 0)
        } else {
            let mut v = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..4) {
                mutate(&mut rng, &mut v);
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
        let outcome = std::panic::catch_unwind(|| Resolved::from_value(value, Map::new(), coerce));
        match outcome {
            Err(_) => panic!("parser panicked on {shown}"),
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(e)) => {
                rejected += 1;
                assert!(
                    e.to_string().trim().len() > 10,
                    "rejection without a message for {shown}: {e:?}"
                );
            }
        }
    }
    // Both paths were really exercised.
    assert!(
        accepted > 1_000 && rejected > 10_000,
        "accepted {accepted}, rejected {rejected}"
    );
}
