#!/usr/bin/env bash
# ansible-playbook test of the record handlers of the retry_manager role (finalize, cleanup on
# error, compress, cleanup old). Uses .venv at the repo root (scripts/setup-python.sh); builds
# the binary and hands it to Ansible as the retry_manager module.
# Ends with "ansible_records: passed" or "ansible_records: FAILED".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
venv=""
for v in "$root/.venv"; do
  [ -x "$v/bin/ansible-playbook" ] && venv="$v" && break
done
[ -n "$venv" ] || { echo "ansible_records: no venv with ansible-playbook (run scripts/setup-python.sh)"; exit 1; }
cargo build -q
bin="${CARGO_TARGET_DIR:-$root/target}/debug/retryx"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/retryx-ansible-records.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/library"
cp "$bin" "$tmp/library/retry_manager"
export ANSIBLE_LIBRARY="$tmp/library" ANSIBLE_ROLES_PATH="$root/roles" ANSIBLE_NOCOLOR=1
export ANSIBLE_LOCAL_TEMP="$tmp/ansible-local" ANSIBLE_HOME="$tmp/ansible-home"
export ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
if "$venv/bin/ansible-playbook" -i localhost, -c local \
     -e "test_tmp=$tmp" -e "retryx_bin=$bin" -e "ansible_python_interpreter=$venv/bin/python" \
     tests/ansible_records/records.yml > "$tmp/log" 2>&1; then
  grep -E '^(PLAY RECAP|localhost)' "$tmp/log" | tail -2
  echo "ansible_records: passed"
else
  tail -n 80 "$tmp/log"
  echo "ansible_records: FAILED"
  exit 1
fi
