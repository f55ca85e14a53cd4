#!/usr/bin/env bash
# Fleet simulation (issue 16): simulated hosts against a local service that goes down, without
# guards, with per-host file guards and with guards shared through Redis, for each jitter kind;
# then what the Redis backend adds to one run. Loopback only; bounded (see bench/fleet.py).
# Usage: bench/fleet.sh [HOSTS] [JITTERS]   e.g. bench/fleet.sh 200 none,full,decorrelated
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release -q
exec python3 bench/fleet.py "$target/release/retryx" "${1:-200}" "${2:-none,proportional,full,equal,decorrelated}"
