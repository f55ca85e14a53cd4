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
trap 'rm -rf "$work"' EXIT
mkdir "$work/library"
cp "$bin" "$work/library/retry_manager"
ANSIBLE_CONFIG=$here/ansible.cfg ANSIBLE_LIBRARY=$work/library ANSIBLE_LOCAL_TEMP=$work/tmp \
    "$playbook" -i "$here/inventory.ini" "$here/playbook.yml" \
    -e "work=$work" -e "retryx=$bin"
# The bulkhead's log in append order: never more than 2 between start and end, and 8 runs.
awk '
    /^start/ { now++; runs++; if (now > max) max = now }
    /^end/   { now-- }
    END {
        printf "bulkhead: %d runs, at most %d at once (limit 2)\n", runs, max
        if (runs != 8 || max > 2 || max < 2) { print "FAIL: bulkhead overlap" > "/dev/stderr"; exit 1 }
    }' "$work/bulkhead.log"
echo "ansible_guards: OK"
