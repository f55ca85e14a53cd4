#!/usr/bin/env bash
# Time and peak memory of `retryx session finalize` and `retryx compress` on a session of N
# operations x 3 attempts (N = 1,000 and 10,000; target for 10,000: under 1 s and 64 MiB, and
# the 10k/1k ratio near 10, i.e. linear). The session is made from one real operation record
# (3 attempts, written by retryx itself) cloned N times with fresh ids, as N concurrent runs
# would leave it; memory and time come from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${RETRYX_BIN:-}"
if [ -z "$bin" ]; then
  # The newest release build (make's static target or plain cargo's).
  bin=$(ls -t target/x86_64-unknown-linux-gnu/release/retryx "${CARGO_TARGET_DIR:-target}/release/retryx" 2>/dev/null | head -1 || true)
fi
[ -n "$bin" ] || { cargo build --release -q; bin="${CARGO_TARGET_DIR:-target}/release/retryx"; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
work=$(mktemp -d)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT

# One real operation with 3 attempts.
"$bin" -qq --artifacts-dir "$work/seed" --session-id retry_seed -o vmware_vm_create -n 3 -d 0 \
  -- sh -c 'echo "connection refused" >&2; exit 1' 2>/dev/null || true
template=$(ls "$work"/seed/retry_session_retry_seed/operation_*.json)

make_session() { # dir n
  python3 - "$template" "$1" "$2" <<'PY'
import json, os, sys
tpl, d, n = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
sid = "retry_bench_%d" % n
sdir = os.path.join(d, "retry_session_" + sid)
os.makedirs(sdir, mode=0o700)
os.chmod(d, 0o700)
for i in range(n):
    op = dict(tpl)
    op["session_id"] = sid
    op["operation_name"] = "op%d" % (i % 50)
    op["operation_id"] = "op%d_1700000000_%016x" % (i % 50, i)
    if i % 10 == 0:
        op["status"] = "completed"
    path = os.path.join(sdir, "operation_%s.json" % op["operation_id"])
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        json.dump(op, f, indent=2)
PY
}

measure() { # label cmd... -> prints the figures, leaves the CPU seconds in $secs
  # Wall time from bash's microsecond clock; CPU (user+sys) and peak RSS from time(1). Wall
  # time includes fsync, which on a shared disk depends on everyone's writes: CPU is the
  # figure that shows how the work scales.
  local label=$1; shift
  local t0=$EPOCHREALTIME
  /usr/bin/time -o "$work/time" -f '%U %S %M' "$@" >/dev/null
  local t1=$EPOCHREALTIME
  local u s kb; read -r u s kb < <(tail -1 "$work/time")
  local wall; wall=$(echo "$t1 - $t0" | bc -l)
  secs=$(echo "$u + $s" | bc -l)
  printf '%-20s wall %7.3f s  cpu %6.2f s  peak RSS %6.1f MiB\n' "$label" "$wall" "$secs" "$(echo "$kb/1024" | bc -l)"
}

declare -A fin comp
for n in 1000 10000; do
  d="$work/s$n"; mkdir -p "$d"
  make_session "$d" "$n"
  sync  # our fsyncs must not pay for flushing the generator's writes
  measure "finalize $n ops" "$bin" session finalize "retry_bench_$n" --artifacts-dir "$d"; fin[$n]=$secs
  measure "compress $n ops" "$bin" compress --artifacts-dir "$d" --session-id "retry_bench_$n"; comp[$n]=$secs
  ops=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['final_statistics']['total_operations'])" "$d/retry_session_retry_bench_$n.json")
  [ "$ops" = "$n" ] || { echo "finalize counted $ops operations, expected $n" >&2; exit 1; }
done
python3 - "${fin[1000]}" "${fin[10000]}" "${comp[1000]}" "${comp[10000]}" <<'PY'
import sys
f1, f10, c1, c10 = map(float, sys.argv[1:])
r = lambda a, b: b / a if a > 0 else float("nan")
print("cpu ratio 10k/1k: finalize %.1f, compress %.1f (linear is ~10; time(1) counts CPU in 10 ms steps)" % (r(f1, f10), r(c1, c10)))
PY
