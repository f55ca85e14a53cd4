#!/usr/bin/env bash
# Whole-process benchmarks of retryx against the retry CLIs it replaces: Debian's `retry` and the
# `attempt-cli` crate (installed here when absent). Prints ms and ratios; targets are in the
# README. Timings come from interleaved rounds (bench/interleave.py); memory from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-apt.sh retry time
peers="$PWD/.tmp/peers"
if ! [ -x "$peers/bin/attempt" ]; then
  cargo install --quiet --locked attempt-cli --root "$peers"
fi
attempt="$peers/bin/attempt"
bin="${RETRYX_BIN:-target/x86_64-unknown-linux-gnu/release/retryx}"
[ -x "$bin" ] || make build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Interleaved rounds (bench/interleave.py), not hyperfine's one-command-after-another batches:
# on a shared VM the drift between batches moved the ratios by 15%.
j() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@"; }
echo "== per-invocation overhead over a bare exec of /bin/true (success on the first attempt; median of 1000 interleaved rounds)"
python3 bench/interleave.py 1000 30 \
  "true=$(j /bin/true)" \
  "retryx=$(j "$bin" -- /bin/true)" \
  "retryx_flags=$(j "$bin" -n 3 -d 1s -t 30s -- /bin/true)" \
  "retry=$(j retry -t 3 -- /bin/true)" \
  "attempt=$(j "$attempt" /bin/true)" >"$work/once.json"
python3 - "$work/once.json" <<'PY'
import json, sys
r = {k: v["median"] for k, v in json.load(open(sys.argv[1])).items()}
base = r["true"]
o = lambda k: r[k] - base
print(f"  bare /bin/true                    {base:7.3f} ms")
print(f"  retryx -- /bin/true       overhead {o('retryx'):7.3f} ms   /retry = {o('retryx')/o('retry'):.2f}   /attempt = {o('retryx')/o('attempt'):.2f}")
print(f"  retryx -n 3 -d 1s -t 30s  overhead {o('retryx_flags'):7.3f} ms   /retry = {o('retryx_flags')/o('retry'):.2f}   /attempt = {o('retryx_flags')/o('attempt'):.2f}")
print(f"  retry -t 3                overhead {o('retry'):7.3f} ms")
print(f"  attempt                   overhead {o('attempt'):7.3f} ms")
PY

echo "== per-retry cost, 100 attempts of /bin/false with zero delay (median of 15 interleaved rounds)"
python3 bench/interleave.py 15 1 \
  "retryx=$(j "$bin" -qq -n 100 -d 0 -j none -- /bin/false)" \
  "retry=$(j retry -t 100 -d 0 -- /bin/false)" \
  "attempt=$(j "$attempt" -q -a 100 fixed -w 0 -F -- /bin/false)" >"$work/retry.json"
python3 - "$work/retry.json" <<'PY'
import json, sys
r = {k: v["median"] / 100 for k, v in json.load(open(sys.argv[1])).items()}
rx, rt, at = r["retryx"], r["retry"], r["attempt"]
print(f"  retryx  {rx:.3f} ms/attempt   retry {rt:.3f} ms/attempt ({rx/rt:.2f}x)   attempt {at:.3f} ms/attempt ({rx/at:.2f}x)")
PY

echo "== peak RSS (KiB)"
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
echo "  retryx -- /bin/true:                  $(rss "$bin" -- /bin/true)"
echo "  retryx -n 100 -d 0 -- /bin/false:     $(rss "$bin" -qq -n 100 -d 0 -- /bin/false)"
echo "  retry -t 3 -- /bin/true:              $(rss retry -t 3 -- /bin/true)"
echo "  attempt /bin/true:                    $(rss "$attempt" /bin/true)"

echo "== pass-through of 1 GiB of stdout, against cat (median of 9 interleaved rounds)"
gib=1073741824
python3 bench/interleave.py 9 1 \
  "cat=$(j sh -c "head -c $gib /dev/zero | cat")" \
  "retryx=$(j "$bin" -qq -- head -c $gib /dev/zero)" >"$work/tp.json"
python3 - "$work/tp.json" <<'PY'
import json, sys
r = {k: v["median"] for k, v in json.load(open(sys.argv[1])).items()}
cat, rx = r["cat"], r["retryx"]
print(f"  cat     {1024 / (cat/1000):8.0f} MiB/s")
print(f"  retryx  {1024 / (rx/1000):8.0f} MiB/s   ({cat/rx*100:.0f}% of cat)")
PY
echo "  retryx peak RSS while passing 1 GiB through: $(/usr/bin/time -f %M "$bin" -qq -- head -c $gib /dev/zero 2>&1 >/dev/null | tail -1) KiB"
