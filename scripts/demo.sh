#!/usr/bin/env bash
# The README's first command: retryx takes a real flaky command to success, showing the seeds'
# log lines, the result document and the exit code.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/x86_64-unknown-linux-gnu/release/retryx
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A real flaky command: it fails twice (connection refused, then HTTP 503), then succeeds.
cat > "$work/flaky.sh" <<'SH'
#!/bin/sh
n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > "$1"
case $n in
  1) echo "curl: (7) Failed to connect to api.internal port 443: Connection refused" >&2; exit 7 ;;
  2) echo "curl: (22) The requested URL returned error: 503" >&2; exit 22 ;;
  *) echo "deployed build 42 on attempt $n (RETRYX_ATTEMPT=$RETRYX_ATTEMPT)" ;;
esac
SH
chmod +x "$work/flaky.sh"

echo "== retryx -n 5 -d 500ms -- flaky.sh"
"$bin" -n 5 -d 500ms --result-json "$work/result.json" -- "$work/flaky.sh" "$work/count"
echo "exit code: $?"
echo "== attempts from the result document"
python3 - "$work/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for a in doc["retry"]["attempts"]:
    print(f'  attempt {a["attempt_number"]}: {a["status"]:<7} {a["error_type"] or "":<20} waited {a["delay_before_retry"]:.2f}s')
PY
echo "== a permanent failure is not retried"
"$bin" -n 5 -d 500ms -- sh -c 'echo "open /etc/app.key: permission denied" >&2; exit 1' || echo "exit code: $?"
