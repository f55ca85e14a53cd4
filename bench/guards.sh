#!/usr/bin/env bash
# Guards benchmark.
#  1. The added cost of all six guards on a successful run, in-process (engine + guards, a
#     scripted attempt that succeeds at once), so process start-up noise does not drown it.
#     Target: under 0.3 ms.
#  2. The same seen from outside: whole `retryx -n 1 -- true` processes, without and with guards.
#  3. 100 concurrent retryx processes on one key (breaker + budget + adaptive + bulkhead):
#     operations per second, and no lost update (the breaker's and the budget's counters must
#     equal the number of runs exactly).
# Usage: bench/guards.sh [ROUNDS]   (release build; state in a temp dir removed at exit)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rounds=${1:-3}
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release -q
bin=$target/release/retryx
work=$(mktemp -d /tmp/retryx-bench-guards.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== 1. added cost of all guards on a successful run (in-process, release)"
BENCH_DIR=$work cargo test --release -q --test guards_bench -- --ignored --nocapture 2>&1 \
    | grep "guards bench"

echo "== 2. whole processes: retryx -n 1 -- true, 200 runs each, interleaved, guards off vs on"
cat > "$work/all.json" <<JSON
{"circuit_breaker": {}, "bulkhead": {"max_concurrent": 4}, "retry_budget": {}, "adaptive": {},
 "wait_for_network": true, "check_command": "true", "creates": "$work/never"}
JSON
# The same keys with every guard switched off, so both pay the same config validation
# (~50 ms per process for any non-empty config at the time of writing, guards or not).
cat > "$work/none.json" <<JSON
{"circuit_breaker": {"enabled": false}, "bulkhead": {"enabled": false, "max_concurrent": 4},
 "retry_budget": {"enabled": false}, "adaptive": {"enabled": false}, "wait_for_network": false,
 "check_command": "true", "integration": {"idempotency_checker": false}}
JSON
python3 - "$bin" "$work" <<'PY'
import subprocess, sys, time, statistics
bin, work = sys.argv[1], sys.argv[2]
def run(cfg):
    t = time.perf_counter()
    subprocess.run([bin, "-c", f"{work}/{cfg}.json", "-q", "-n", "1", "--state-dir", f"{work}/state1", "--", "true"], check=True)
    return (time.perf_counter() - t) * 1e3
none, all_ = [], []
for _ in range(200):
    none.append(run("none")); all_.append(run("all"))
m0, m1 = statistics.median(none), statistics.median(all_)
print(f"whole process median: no guards {m0:.2f} ms, all guards {m1:.2f} ms, difference {m1-m0:+.2f} ms "
      f"(process noise: stdev {statistics.stdev(none):.2f} ms)")
PY

echo "== 3. 100 concurrent processes on one key, $rounds round(s)"
cat > "$work/shared.json" <<JSON
{"operation": "bench_shared", "state_dir": "$work/state3",
 "circuit_breaker": {"window_size": 1000, "minimum_calls": 1000},
 "retry_budget": {}, "adaptive": {}, "bulkhead": {"max_concurrent": 8, "max_wait": "2m"}}
JSON
python3 - "$bin" "$work" "$rounds" <<'PY'
import json, subprocess, sys, time
bin, work, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
total, elapsed = 0, 0.0
for r in range(rounds):
    t = time.perf_counter()
    ps = [subprocess.Popen([bin, "-c", f"{work}/shared.json", "-q", "-n", "1", "--", "true"]) for _ in range(100)]
    codes = [p.wait() for p in ps]
    dt = time.perf_counter() - t
    assert all(c == 0 for c in codes), codes
    total += 100; elapsed += dt
    print(f"round {r+1}: 100 processes in {dt:.2f} s = {100/dt:.0f} operations/s")
st = json.loads(subprocess.run([bin, "breaker", "status", "bench_shared", "--state-dir", f"{work}/state3"],
                               check=True, capture_output=True).stdout)
with open(f"{work}/state3/budget_bench_shared.json") as f:
    budget = json.load(f)
ok = st["total_calls"] == total and budget["successes"] == total
print(f"breaker total_calls {st['total_calls']}, budget successes {budget['successes']}, runs {total}: "
      f"{'no lost update' if ok else 'LOST UPDATES'}; overall {total/elapsed:.0f} operations/s")
sys.exit(0 if ok else 1)
PY
