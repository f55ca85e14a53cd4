#!/usr/bin/env bash
# Breaker and bulkhead through ansible-playbook: 8 local hosts, forks 8, the retry_manager
# module being the retryx binary. Uses the repo's .venv when present (scripts/setup-python.sh),
# else $ANSIBLE_PLAYBOOK, else ansible-playbook on PATH; without any, says SKIPPED and exits 77.
# Usage: tests/ansible_guards/run.sh [path/to/retryx]   (default: target/debug/retryx)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$repo/target}/debug/retryx}
if [[ ! -x $bin ]]; then
    echo "run.sh: no retryx binary at $bin (cargo build first)" >&2
    exit 2
fi
if [[ -x $repo/.venv/bin/ansible-playbook ]]; then
    playbook=$repo/.venv/bin/ansible-playbook
elif [[ -n ${ANSIBLE_PLAYBOOK:-} ]]; then
    playbook=$ANSIBLE_PLAYBOOK
elif command -v ansible-playbook >/dev/null; then
    playbook=$(command -v ansible-playbook)
else
    echo "SKIPPED tests/ansible_guards: no ansible-playbook (run scripts/setup-python.sh)" >&2
    exit 77
fi
work=$(mktemp -d /tmp/retryx-ansible-guards.XXXXXX)
redis_pid=""
trap '[[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir "$work/library"
cp "$bin" "$work/library/retry_manager"
# A redis-server on 127.0.0.1 for the shared-state play (persistence off, stopped by pid);
# without one the play is skipped, unless RETRYX_REQUIRE_REDIS=1.
redis_url=""
if command -v redis-server >/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$work" \
        --requirepass ansible-pw >/dev/null 2>&1 &
    redis_pid=$!
    for _ in $(seq 200); do
        redis-cli -p "$port" --no-auth-warning -a ansible-pw PING 2>/dev/null | grep -q PONG && break
        sleep 0.05
    done
    redis_url="redis://:ansible-pw@127.0.0.1:$port/0"
elif [[ ${RETRYX_REQUIRE_REDIS:-} == 1 ]]; then
    echo "run.sh: redis-server is required (RETRYX_REQUIRE_REDIS=1)" >&2
    exit 1
fi
ANSIBLE_CONFIG=$here/ansible.cfg ANSIBLE_LIBRARY=$work/library ANSIBLE_LOCAL_TEMP=$work/tmp \
    "$playbook" -i "$here/inventory.ini" "$here/playbook.yml" \
    -e "work=$work" -e "retryx=$bin" -e "redis_url=$redis_url" | tee "$work/out.log"
if grep -q "ansible-pw" "$work/out.log"; then
    echo "FAIL: the Redis password is in ansible-playbook's output" >&2
    exit 1
fi
# The bulkhead's log in append order: never more than 2 between start and end, and 8 runs.
awk '
    /^start/ { now++; runs++; if (now > max) max = now }
    /^end/   { now-- }
    END {
        printf "bulkhead: %d runs, at most %d at once (limit 2)\n", runs, max
        if (runs != 8 || max > 2 || max < 2) { print "FAIL: bulkhead overlap" > "/dev/stderr"; exit 1 }
    }' "$work/bulkhead.log"
echo "ansible_guards: OK"
