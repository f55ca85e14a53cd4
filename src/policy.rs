//! Pure delay math: exponential, linear and fixed backoff, the `max_delay` cap, and the jitter
//! kinds. No clock and no I/O; randomness only from the RNG the caller hands in.

use std::time::Duration;

use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the nominal wait grows from one failed attempt to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    // `base * multiplier^(n-1)`
    #[default]
    #[serde(alias = "exponential_backoff")]
    Exponential,
    // `base * n`
    #[serde(alias = "linear_backoff")]
    Linear,
    // `base`
    #[serde(alias = "fixed_delay")]
    Fixed,
}

// The seed's names are accepted too, so the schema lists all six.
impl JsonSchema for PolicyKind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PolicyKind".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Retry policy: exponential (base * multiplier^(n-1)), linear (base * n) or fixed (base).",
            "type": "string",
            "enum": ["exponential", "linear", "fixed", "exponential_backoff", "linear_backoff", "fixed_delay"]
        })
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exponential" | "exponential_backoff" => Ok(Self::Exponential),
            "linear" | "linear_backoff" => Ok(Self::Linear),
            "fixed" | "fixed_delay" => Ok(Self::Fixed),
            other => Err(format!(
                "unknown retry policy {other:?}: expected exponential, linear or fixed (or exponential_backoff, linear_backoff, fixed_delay)"
            )),
        }
    }
}

/// How the nominal wait is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum JitterKind {
    // The nominal wait, exactly.
    None,
    // The nominal wait ±25% (the seeds' jitter).
    #[default]
    Proportional,
    // Uniform in [0, nominal] ("full jitter", AWS architecture blog).
    Full,
    // nominal/2 + uniform in [0, nominal/2] ("equal jitter").
    Equal,
    // Uniform in [base, previous wait * 3] ("decorrelated jitter").
    Decorrelated,
}

impl std::str::FromStr for JitterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "proportional" => Ok(Self::Proportional),
            "full" => Ok(Self::Full),
            "equal" => Ok(Self::Equal),
            "decorrelated" => Ok(Self::Decorrelated),
            other => Err(format!(
                "unknown jitter kind {other:?}: expected none, proportional, full, equal or decorrelated"
            )),
        }
    }
}

/// A resolved backoff policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backoff {
    pub kind: PolicyKind,
    #[serde(serialize_with = "ser_secs")]
    pub base: Duration,
    #[serde(serialize_with = "ser_secs")]
    pub max: Duration,
    pub multiplier: f64,
    pub jitter: JitterKind,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The waits of one operation: the backoff with its own seeded RNG and the previous wait (for
/// decorrelated jitter), so the engine carries no RNG state (as backon's iterators own theirs).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    backoff: Backoff,
    rng: rand_chacha::ChaCha8Rng,
    previous: Duration,
}

impl Schedule {
    pub(crate) fn new(backoff: Backoff, seed: u64) -> Self {
        use rand::SeedableRng;
        Schedule {
            backoff,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            previous: Duration::ZERO,
        }
    }

    /// The policy's wait after failed attempt `attempt` (draws from the RNG only when asked).
    pub(crate) fn next_delay(&mut self, attempt: u32) -> Duration {
        self.backoff.delay(attempt, self.previous, &mut self.rng)
    }

    /// The wait that was actually taken (whatever chose it): decorrelated jitter grows from it.
    pub(crate) fn waited(&mut self, delay: Duration) {
        self.previous = delay;
    }
}

impl Backoff {
    /// The nominal wait after failed attempt `n` (1-based), before jitter, capped at `max`.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let n = attempt.max(1);
        let base = self.base.as_secs_f64();
        let secs = match self.kind {
            PolicyKind::Exponential => base * self.multiplier.powf(f64::from(n - 1)),
            PolicyKind::Linear => base * f64::from(n),
            PolicyKind::Fixed => base,
        };
        self.cap_secs(secs)
    }

    fn cap_secs(&self, secs: f64) -> Duration {
        let max = self.max.as_secs_f64();
        // NaN comes only from a zero base times a growth that overflowed (0 × 2^1024 = 0 × inf,
        // attempt 1025 with `-d 0`): a zero base means no wait, however many attempts.
        if secs.is_nan() || secs <= 0.0 {
            Duration::ZERO
        } else if secs >= max {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The wait after failed attempt `n`: nominal, then jitter, then the cap (a promise: the
    /// result never exceeds `max`). `previous` is the wait before this one (for decorrelated
    /// jitter; pass zero before the first wait).
    pub fn delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        previous: Duration,
        rng: &mut R,
    ) -> Duration {
        let nominal = self.nominal(attempt).as_secs_f64();
        let secs = match self.jitter {
            JitterKind::None => nominal,
            JitterKind::Proportional => nominal * rng.random_range(0.75..=1.25),
            JitterKind::Full => nominal * rng.random_range(0.0..=1.0),
            JitterKind::Equal => nominal / 2.0 + nominal / 2.0 * rng.random_range(0.0..=1.0),
            JitterKind::Decorrelated => {
                let base = self.base.as_secs_f64();
                let prev = if previous.is_zero() {
                    base
                } else {
                    previous.as_secs_f64()
                };
                let high = (prev * 3.0).max(base);
                if high > base {
                    rng.random_range(base..=high)
                } else {
                    base
                }
            }
        };
        self.cap_secs(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_zero_base_waits_zero_past_the_growth_overflow() {
        // 2.0^1024 is infinite: attempt 1025 and later once waited max_delay instead of 0.
        for jitter in [
            JitterKind::None,
            JitterKind::Proportional,
            JitterKind::Full,
            JitterKind::Equal,
            JitterKind::Decorrelated,
        ] {
            let b = Backoff {
                kind: PolicyKind::Exponential,
                base: Duration::ZERO,
                max: Duration::from_secs(30),
                multiplier: 2.0,
                jitter,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            for attempt in [1, 1024, 1025, 3000, u32::MAX] {
                assert_eq!(b.nominal(attempt), Duration::ZERO, "{jitter:?} {attempt}");
                assert_eq!(b.delay(attempt, Duration::ZERO, &mut rng), Duration::ZERO);
            }
            // A non-zero base still reaches the cap when the growth overflows.
            let b = Backoff {
                base: Duration::from_millis(1),
                ..b
            };
            assert_eq!(b.nominal(5000), Duration::from_secs(30));
        }
    }

    fn backoff(kind: PolicyKind, base: u64, max: u64, mult: f64) -> Backoff {
        Backoff {
            kind,
            base: Duration::from_secs(base),
            max: Duration::from_secs(max),
            multiplier: mult,
            jitter: JitterKind::None,
        }
    }

    fn table(b: &Backoff, n: u32) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        (1..=n)
            .map(|i| b.delay(i, Duration::ZERO, &mut rng).as_secs())
            .collect()
    }

    #[test]
    fn seed_tables_come_out_exactly() {
        // seed 001: 1s → 2 → 4 → 8 → 16, capped at MaxDelay
        assert_eq!(
            table(&backoff(PolicyKind::Exponential, 1, 30, 2.0), 6),
            [1, 2, 4, 8, 16, 30]
        );
        assert_eq!(
            table(&backoff(PolicyKind::Exponential, 1, 16, 2.0), 5),
            [1, 2, 4, 8, 16]
        );
        // seed 003 exponential: 5s, 10s, 20s, 40s, 80s
        assert_eq!(
            table(&backoff(PolicyKind::Exponential, 5, 300, 2.0), 5),
            [5, 10, 20, 40, 80]
        );
        // seed 003 linear: 10s, 20s, 30s, 40s, 50s (capped at 120)
        assert_eq!(
            table(&backoff(PolicyKind::Linear, 10, 120, 2.0), 5),
            [10, 20, 30, 40, 50]
        );
        assert_eq!(
            table(&backoff(PolicyKind::Linear, 10, 25, 2.0), 3),
            [10, 20, 25]
        );
        // seed 003 fixed: 15s every time
        assert_eq!(
            table(&backoff(PolicyKind::Fixed, 15, 300, 2.0), 5),
            [15, 15, 15, 15, 15]
        );
    }

    #[test]
    fn seed_policy_names_parse() {
        for (name, kind) in [
            ("exponential_backoff", PolicyKind::Exponential),
            ("linear_backoff", PolicyKind::Linear),
            ("fixed_delay", PolicyKind::Fixed),
            ("exponential", PolicyKind::Exponential),
            ("linear", PolicyKind::Linear),
            ("fixed", PolicyKind::Fixed),
        ] {
            assert_eq!(name.parse::<PolicyKind>(), Ok(kind));
            let from_json: PolicyKind = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(from_json, kind);
        }
        assert!("sometimes".parse::<PolicyKind>().is_err());
    }

    #[test]
    fn proportional_jitter_stays_within_a_quarter() {
        let mut b = backoff(PolicyKind::Fixed, 4, 100, 2.0);
        b.jitter = JitterKind::Proportional;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let samples: Vec<f64> = (0..1000)
            .map(|_| b.delay(1, Duration::ZERO, &mut rng).as_secs_f64())
            .collect();
        assert!(samples.iter().all(|s| (3.0..=5.0).contains(s)));
        // it really varies: not all the same
        let min = samples.iter().cloned().fold(f64::MAX, f64::min);
        let max = samples.iter().cloned().fold(0.0, f64::max);
        assert!(max - min > 1.0, "jitter should spread: {min}..{max}");
    }

    #[test]
    fn same_seed_same_waits() {
        let mut b = backoff(PolicyKind::Exponential, 1, 60, 2.0);
        for kind in [
            JitterKind::Proportional,
            JitterKind::Full,
            JitterKind::Equal,
            JitterKind::Decorrelated,
        ] {
            b.jitter = kind;
            let run = |seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut prev = Duration::ZERO;
                (1..8)
                    .map(|n| {
                        prev = b.delay(n, prev, &mut rng);
                        prev
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(42), run(42), "{kind:?}");
            assert_ne!(run(42), run(43), "{kind:?}");
        }
    }

    fn any_kind() -> impl Strategy<Value = PolicyKind> {
        prop_oneof![
            Just(PolicyKind::Exponential),
            Just(PolicyKind::Linear),
            Just(PolicyKind::Fixed)
        ]
    }
    fn any_jitter() -> impl Strategy<Value = JitterKind> {
        prop_oneof![
            Just(JitterKind::None),
            Just(JitterKind::Proportional),
            Just(JitterKind::Full),
            Just(JitterKind::Equal),
            Just(JitterKind::Decorrelated)
        ]
    }

    proptest! {
        #[test]
        fn every_wait_lies_within_zero_and_the_cap(
            kind in any_kind(), jitter in any_jitter(),
            base_ms in 0u64..10_000_000, max_ms in 0u64..100_000_000,
            mult in 0.0f64..1000.0, attempt in 1u32..10_000, seed in any::<u64>(), prev_ms in 0u64..1_000_000_000,
        ) {
            let b = Backoff {
                kind, jitter, multiplier: mult,
                base: Duration::from_millis(base_ms), max: Duration::from_millis(max_ms),
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let d = b.delay(attempt, Duration::from_millis(prev_ms), &mut rng);
            prop_assert!(d <= b.max, "{d:?} > cap {:?}", b.max);
        }

        #[test]
        fn without_jitter_exponential_never_shrinks(base_ms in 1u64..10_000, mult in 1.0f64..10.0, n in 1u32..200) {
            let b = Backoff { kind: PolicyKind::Exponential, jitter: JitterKind::None, multiplier: mult,
                base: Duration::from_millis(base_ms), max: Duration::from_secs(3600) };
            prop_assert!(b.nominal(n) <= b.nominal(n + 1));
        }
    }
}
