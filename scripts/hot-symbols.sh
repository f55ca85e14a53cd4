#!/usr/bin/env bash
# Regenerates link/hot-symbols.txt: every function retryx runs on its common paths (a plain run,
# retries and classification, a config file, records, the module), listed for lld's
# --symbol-ordering-file, which `make build` passes so the linker puts them together at the
# start of .text. Start-up then touches ~15 contiguous 64 KiB windows of the 8 MB text instead
# of ~60 scattered ones (the kernel maps a whole window per fault): fewer page faults and a
# smaller RSS. Names missing from a build (another rustc, changed code) are ignored by the
# linker, so a stale list only loses the effect. Run it after changes to the hot paths; needs
# valgrind (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-apt.sh valgrind
target=x86_64-unknown-linux-gnu
make build  # keeps the symbol table (profile strip = "debuginfo"); names do not depend on RUSTFLAGS
bin=target/$target/release/retryx
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0
trace() { # callgrind lists every function a run executes; the exit status does not matter
  n=$((n + 1))
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$n" "$@" \
    >/dev/null 2>&1 </dev/null || true
}
# The benchmark's path first, so the plainest run touches the fewest windows.
trace "$bin" -qq -- /bin/true
trace "$bin" -- /bin/true
trace "$bin" -n 3 -d 0 -- sh -c 'echo "connection refused" >&2; exit 1'
trace "$bin" -n 2 -d 0 --retry-if 'busy' --fail-if 'denied' -t 5s --result-json - -- sh -c 'echo busy; exit 3'
trace "$bin" -n 1 -- /nonexistent/command
printf '{"max_attempts": 2, "base_delay": 0, "operation_configs": {"api": {"max_attempts": 1}}}' >"$work/config.json"
trace "$bin" -c "$work/config.json" --operation api -- /bin/false
trace "$bin" --artifacts-dir "$work/records" -n 2 -d 0 -- /bin/false
printf '{"command": "/bin/true", "max_attempts": 1, "artifacts_dir": "%s/module-records"}' "$work" >"$work/args.json"
trace "$bin" "$work/args.json"
python3 - "$bin" "$work" "$n" >link/hot-symbols.txt <<'PY'
import re, subprocess, sys
bin_, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Text and IFUNC symbols of this build (static glibc runs every IFUNC resolver at start-up).
known = set()
for line in subprocess.run(["nm", "--defined-only", bin_], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwWi":
        known.add(parts[2])
order, seen = [], set()
for i in range(1, n + 1):
    for line in open(f"{work}/cg.{i}"):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
        if not m:
            continue
        name = re.sub(r"'\d+$", "", m.group(1))  # callgrind's recursion marker
        if name in known and name not in seen:
            seen.add(name)
            order.append(name)
print("\n".join(order))
PY
echo "link/hot-symbols.txt: $(wc -l <link/hot-symbols.txt) functions" >&2
# Cargo does not know about the list: relink the binary so it uses the new one.
touch src/main.rs
make build
