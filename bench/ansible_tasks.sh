#!/usr/bin/env bash
# retry_tasks against Ansible's own until: ten failing attempts of an
# ansible.builtin.uri task (a service on 127.0.0.1 that always answers 503)
#   role:  the retry_manager role with retry_tasks (max_attempts 10, no delay)
#   until: the same uri task with until / retries: 9 / delay: 0
# Whole ansible-playbook processes, interleaved rounds (bench/interleave.py).
#   bench/ansible_tasks.sh            ROUNDS=7 bench/ansible_tasks.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-python.sh >/dev/null
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$root/ansible/ansible.cfg" ANSIBLE_NOCOLOR=1
rounds="${ROUNDS:-5}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/retryx-bench-tasks.XXXXXX")"
python3 tests/ansible/services/http_service.py "$tmp/port" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$tmp/port")/status/503"

cat >"$tmp/call.yml" <<YAML
---
- name: Call the service
  ansible.builtin.uri:
    url: "$url"
YAML
cat >"$tmp/role.yml" <<YAML
---
- name: Ten failing uri attempts through the role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Retry the tasks file
      ansible.builtin.include_role:
        name: retry_manager
      vars:
        retry_current_operation: bench_uri
        retry_tasks: "$tmp/call.yml"
        retry_fail_on_error: false
        retry_artifacts_dir: "$tmp/artifacts"
        retry_manager: {max_attempts: 10, base_delay: 0, max_delay: 0}
    - name: Ten attempts were made
      ansible.builtin.assert:
        that: retry_result.retry.attempt_count == 10
YAML
cat >"$tmp/until.yml" <<YAML
---
- name: Ten failing uri attempts with until
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Call the service
      ansible.builtin.uri:
        url: "$url"
      register: answer
      until: answer.status == 200
      retries: 9
      delay: 0
      ignore_errors: true
YAML
# one checked run of each: the role must really make its ten attempts
ansible-playbook "$tmp/role.yml" >"$tmp/check.log" 2>&1 || { tail -30 "$tmp/check.log"; exit 1; }
python3 bench/interleave.py "$rounds" 1 \
    "role=[\"ansible-playbook\", \"$tmp/role.yml\"]" \
    "until=[\"ansible-playbook\", \"$tmp/until.yml\"]" >"$tmp/times.json"
python3 - "$tmp/times.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
role, until = t["role"]["median"], t["until"]["median"]
print(f"ten failing uri attempts: role (retry_tasks) {role:.0f} ms, uri+until {until:.0f} ms, ratio {role / until:.2f}")
PY
