#!/usr/bin/env bash
# Time and peak memory of `retryx session finalize` and `retryx compress` on sessions of 1,000
# and 10,000 operations x 3 attempts (records generated directly in retryx's format, so the
# bench measures the records code, not 10,000 process starts). Prints the 10k/1k ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${RETRYX_BIN:-target/x86_64-unknown-linux-gnu/release/retryx}"
[ -x "$bin" ] || make build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gen() { # gen DIR N: a running session of N operations, 3 attempts each (2 failed, then success)
  python3 - "$1" "$2" <<'PY'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, mode=0o700, exist_ok=True)
sid = "retry_bench_%d" % n
def t(s): return "2026-01-01T00:%02d:%02d.%03dZ" % (s // 60000 % 60, s // 1000 % 60, s % 1000)
ops = []
for i in range(n):
    oid = "op%d_1767225600_%016x" % (i, i)
    base = i * 10
    attempts = [{"attempt_number": k + 1, "start_time": t(base + 3 * k), "end_time": t(base + 3 * k + 1),
                 "status": "success" if k == 2 else "failed", "error_type": None if k == 2 else "connection_error",
                 "error_message": None if k == 2 else "connection refused", "should_retry": k < 2,
                 "delay_before_retry": 0.002 if k < 2 else 0.0, "execution_time": 0.001, "exit_code": 0 if k == 2 else 7,
                 "signal": None, "timed_out": False, "retry_reason": None, "stdout_bytes": 0, "stderr_bytes": 19} for k in range(3)]
    op = {"operation_id": oid, "operation_name": "op%d" % i, "session_id": sid, "start_time": t(base), "end_time": t(base + 9),
          "status": "completed", "attempt_count": 3, "max_attempts": 3, "execution_time": 0.009, "attempts": attempts,
          "exit_code": 0, "final_error_type": None, "final_error_message": None, "stop_reason": "succeeded", "command": "x",
          "context": None, "host": "bench", "policy": {}, "jitter_seed": 1, "guards": {}}
    p = os.path.join(d, "retry_operation_%s.json" % oid)
    with open(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        json.dump(op, f)
    ops.append({"operation_id": oid, "operation_name": op["operation_name"], "status": "completed", "attempt_count": 3,
                "execution_time": 0.009, "start_time": op["start_time"], "end_time": op["end_time"], "final_error_type": None})
doc = {"session_id": sid, "session_start": ops[0]["start_time"], "session_end": None, "session_duration": None,
       "session_status": "running", "final_statistics": {k: 0 for k in ["total_operations", "successful_operations", "failed_operations",
       "retried_operations", "total_retry_attempts", "max_retry_count"]} | {k: 0.0 for k in ["average_retry_count",
       "total_execution_time", "average_execution_time", "success_rate", "failure_rate", "retry_rate", "operations_per_minute"]},
       "operations": ops, "alerts": [], "thresholds": None, "updated_at": ops[-1]["end_time"]}
with open(os.open(os.path.join(d, "retry_session_%s.json" % sid), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
    json.dump(doc, f)
PY
}

measure() { # measure N -> "finalize_s finalize_kib compress_s compress_kib"
  local n=$1 d="$work/s$1"
  gen "$d" "$n"
  local f c
  f=$( { /usr/bin/time -f "%e %M" "$bin" session finalize "retry_bench_$n" --artifacts-dir "$d" >/dev/null; } 2>&1 | tail -1)
  c=$( { /usr/bin/time -f "%e %M" "$bin" compress --artifacts-dir "$d" >/dev/null; } 2>&1 | tail -1)
  echo "$f $c"
}

read -r f1 m1 c1 cm1 <<<"$(measure 1000)"
read -r f10 m10 c10 cm10 <<<"$(measure 10000)"
python3 - "$f1" "$m1" "$c1" "$cm1" "$f10" "$m10" "$c10" "$cm10" <<'PY'
import sys
f1, m1, c1, cm1, f10, m10, c10, cm10 = map(float, sys.argv[1:])
r = lambda a, b: a / b if b > 0 else float("nan")
print(f"finalize   1,000 ops: {f1:6.2f} s  {m1/1024:6.1f} MiB    10,000 ops: {f10:6.2f} s  {m10/1024:6.1f} MiB   time ratio {r(f10, f1):.1f}")
print(f"compress   1,000 ops: {c1:6.2f} s  {cm1/1024:6.1f} MiB    10,000 ops: {c10:6.2f} s  {cm10/1024:6.1f} MiB   time ratio {r(c10, c1):.1f}")
print("targets: 10,000 ops under 1 s and 64 MiB; ratio near 10 (linear)")
PY
