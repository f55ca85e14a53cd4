#!/usr/bin/env bash
# Whole-process benchmarks of retryx against the retry CLIs it replaces: Debian's `retry` and the
# `attempt-cli` crate (installed here when absent). Prints ms and ratios; targets are in the
# README. Timings come from hyperfine (no shell, warm-up runs); memory from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-apt.sh hyperfine retry time
peers="$PWD/.tmp/peers"
if ! [ -x "$peers/bin/attempt" ]; then
  cargo install --quiet --locked attempt-cli --root "$peers"
fi
attempt="$peers/bin/attempt"
bin="${RETRYX_BIN:-target/x86_64-unknown-linux-gnu/release/retryx}"
[ -x "$bin" ] || make build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mean_ms() { # hyperfine JSON -> mean ms of the Nth command
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print('%.3f' % (r[int(sys.argv[2])]['mean']*1000))" "$1" "$2"
}

echo "== per-invocation overhead over a bare exec of /bin/true (success on the first attempt)"
hyperfine -N --warmup 30 --runs 400 --export-json "$work/once.json" \
  "/bin/true" "$bin -- /bin/true" "retry -t 3 -- /bin/true" "$attempt /bin/true" >/dev/null 2>&1
base=$(mean_ms "$work/once.json" 0)
rx=$(mean_ms "$work/once.json" 1); rt=$(mean_ms "$work/once.json" 2); at=$(mean_ms "$work/once.json" 3)
python3 - "$base" "$rx" "$rt" "$at" <<'PY'
import sys
base, rx, rt, at = map(float, sys.argv[1:])
o = lambda x: x - base
print(f"  bare /bin/true      {base:7.3f} ms")
print(f"  retryx    overhead  {o(rx):7.3f} ms")
print(f"  retry     overhead  {o(rt):7.3f} ms   retryx/retry   = {o(rx)/o(rt):.2f}")
print(f"  attempt   overhead  {o(at):7.3f} ms   retryx/attempt = {o(rx)/o(at):.2f}")
PY

echo "== per-retry cost, 100 attempts of /bin/false with zero delay"
hyperfine -N --warmup 3 --runs 20 -i --export-json "$work/retry.json" \
  "$bin -qq -n 100 -d 0 -j none -- /bin/false" \
  "retry -t 100 -d 0 -- /bin/false" \
  "$attempt -q -a 100 fixed -w 0 -F -- /bin/false" >/dev/null 2>&1
python3 - "$(mean_ms "$work/retry.json" 0)" "$(mean_ms "$work/retry.json" 1)" "$(mean_ms "$work/retry.json" 2)" <<'PY'
import sys
rx, rt, at = (float(x) / 100 for x in sys.argv[1:])
print(f"  retryx  {rx:.3f} ms/attempt   retry {rt:.3f} ms/attempt ({rx/rt:.2f}x)   attempt {at:.3f} ms/attempt ({rx/at:.2f}x)")
PY

echo "== peak RSS (KiB)"
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
echo "  retryx -- /bin/true:                  $(rss "$bin" -- /bin/true)"
echo "  retryx -n 100 -d 0 -- /bin/false:     $(rss "$bin" -qq -n 100 -d 0 -- /bin/false)"
echo "  retry -t 3 -- /bin/true:              $(rss retry -t 3 -- /bin/true)"
echo "  attempt /bin/true:                    $(rss "$attempt" /bin/true)"

echo "== pass-through of 1 GiB of stdout, against cat"
gib=1073741824
hyperfine --warmup 1 --runs 5 --export-json "$work/tp.json" \
  "head -c $gib /dev/zero | cat > /dev/null" \
  "$bin -qq -- head -c $gib /dev/zero > /dev/null" >/dev/null 2>&1
python3 - "$(mean_ms "$work/tp.json" 0)" "$(mean_ms "$work/tp.json" 1)" <<'PY'
import sys
cat, rx = (float(x) for x in sys.argv[1:])
gib = 1024.0
print(f"  cat     {gib / (cat/1000):8.0f} MiB/s")
print(f"  retryx  {gib / (rx/1000):8.0f} MiB/s   ({cat/rx*100:.0f}% of cat)")
PY
echo "  retryx peak RSS while passing 1 GiB through: $(/usr/bin/time -f %M "$bin" -qq -- head -c $gib /dev/zero 2>&1 >/dev/null | tail -1) KiB"
