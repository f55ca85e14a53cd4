//! Benchmark (ignored in normal test runs; `bench/guards.sh` runs it in release mode): the added
//! cost of every guard on a successful run, measured in-process so process start-up noise does
//! not drown it. The engine runs a scripted attempt that succeeds at once, with no guards and
//! then with all six configured on one key in a fresh state dir; the difference per operation
//! is the guards' cost. It asserts nothing about speed (machines differ); it prints figures.

use std::time::{Duration, Instant};

use retryx::config::Resolved;
use retryx::engine::{self, Attempter, Identity};
use retryx::exec::{AttemptOutput, ExitKind};
use retryx::guards::{self, GuardSet};
use retryx::log::Logger;
use retryx::sys::clock::RealTimer;
use retryx::sys::stop::Cancel;
use serde_json::{Map, json};

struct Succeeds;

impl Attempter for Succeeds {
    fn attempt(&mut self, _: u32, _: u32, _: Option<Duration>, _: &Cancel) -> AttemptOutput {
        AttemptOutput::synthetic(ExitKind::Code(0))
    }
}

fn who() -> Identity {
    Identity {
        operation_id: "bench_1_x".into(),
        session_id: "retry_1_x".into(),
        command: None,
        context: None,
        host: "h".into(),
    }
}

fn per_op(n: u32, config: serde_json::Value, with_guards: bool, dir: &std::path::Path) -> Duration {
    let r = Resolved::from_value(config, Map::new(), false).unwrap();
    let (timer, cancel, log) = (RealTimer::new(), Cancel::new(), Logger::memory(-2));
    let start = Instant::now();
    for _ in 0..n {
        let mut set = if with_guards {
            guards::build(&r.config, &r.plan, dir).unwrap()
        } else {
            GuardSet::default()
        };
        let mut plan = r.plan.clone();
        let out = engine::run(
            &mut plan,
            &mut Succeeds,
            &timer,
            &cancel,
            &mut set,
            &log,
            who(),
        );
        assert_eq!(out.exit_code(), 0);
    }
    start.elapsed() / n
}

#[test]
#[ignore = "benchmark: run by bench/guards.sh"]
fn added_cost_of_all_guards_on_a_successful_run() {
    let d =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let all = json!({
        "command": "true", "operation": "bench",
        "circuit_breaker": {}, "bulkhead": {"max_concurrent": 4}, "retry_budget": {},
        "adaptive": {}, "wait_for_network": true, "check_command": "true",
        "creates": d.path().join("never").to_string_lossy()
    });
    let all = match std::env::var("BENCH_CONFIG") {
        Ok(text) => {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["command"] = json!("true");
            v["operation"] = json!("bench");
            v
        }
        Err(_) => all,
    };
    let n: u32 = std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    // warm up both paths (page cache, state files created)
    per_op(50, all.clone(), true, d.path());
    per_op(50, all.clone(), false, d.path());
    let mut base = Vec::new();
    let mut with = Vec::new();
    for _ in 0..5 {
        base.push(per_op(n, all.clone(), false, d.path()));
        with.push(per_op(n, all.clone(), true, d.path()));
    }
    base.sort();
    with.sort();
    let (b, w) = (base[2], with[2]);
    println!(
        "guards bench: {n} ops x 5 rounds, median per operation: no guards {:.1} us, all six guards {:.1} us, added {:.1} us ({:.3} ms)",
        b.as_secs_f64() * 1e6,
        w.as_secs_f64() * 1e6,
        (w.saturating_sub(b)).as_secs_f64() * 1e6,
        (w.saturating_sub(b)).as_secs_f64() * 1e3
    );
}
