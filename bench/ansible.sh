#!/usr/bin/env bash
# Ansible-side benchmark of retryx, in one ansible-playbook run on localhost:
#   1. ten failing attempts with zero delay: the retry_manager role (one module
#      call that retries inside) vs ansible.builtin.command with
#      until / retries: 9 / delay: 0 (ten module executions by Ansible);
#   2. the same ten attempts in one direct module call (no role around it);
#   3. one retry_manager module call vs one ansible.builtin.command call;
#   4. over ssh (OpenSSH's sshd on 127.0.0.1, tests/common/sshd.sh, pipelining on, the module
#      from the built retryx.core collection), then the same over `connection: local`: ten
#      module tasks (the action plugin's cached copy), ten module tasks on Ansible's plain path
#      (the binary copied every task, as before the action plugin), ten ansible.builtin.command
#      tasks; rotating order in every round.
# Each is measured REPEAT times (default 5) inside the play (time around the
# task), and the median is reported with the ratio. The stripped module's size is printed.
#   bench/ansible.sh            REPEAT=9 bench/ansible.sh     SSH=0 bench/ansible.sh (no ssh rows)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-python.sh >/dev/null
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$root/ansible/ansible.cfg" ANSIBLE_NOCOLOR=1
repeat="${REPEAT:-5}"
if [ ! -x roles/retry_manager/library/retry_manager ]; then
    echo "bench: roles/retry_manager/library/retry_manager is missing; run make build" >&2
    exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/retryx-bench.XXXXXX")"
# shellcheck source=../tests/common/sshd.sh
source "$root/tests/common/sshd.sh"
trap 'sshd_stop; rm -rf "$tmp"' EXIT

cat >"$tmp/measure.yml" <<'YAML'
---
- name: Start the clock
  ansible.builtin.set_fact:
    bench_t0: "{{ now().timestamp() }}"

- name: Ten failing attempts through the role
  ansible.builtin.include_role:
    name: retry_manager
  vars:
    retry_current_operation: bench_fail
    retry_command: "echo x >> {{ bench_tmp }}/role_runs; exit 1"
    retry_fail_on_error: false
    retry_artifacts_dir: "{{ bench_tmp }}/artifacts"
    retry_manager:
      max_attempts: 10
      base_delay: 0
      max_delay: 0
      jitter_enabled: false

- name: Check the role made ten attempts
  ansible.builtin.set_fact:
    bench_t1: "{{ now().timestamp() }}"
    bench_role_attempts: "{{ retry_result.retry.attempt_count }}"

- name: Ten failing attempts with until/retries
  ansible.builtin.command: sh -c 'echo x >> {{ bench_tmp }}/until_runs; exit 1'
  register: bench_until
  until: bench_until.rc == 0
  retries: 9
  delay: 0
  changed_when: false
  failed_when: false

- name: Ten failing attempts, module called directly
  ansible.builtin.set_fact:
    bench_t2: "{{ now().timestamp() }}"

- name: Ten failing attempts in one module call
  retry_manager:
    command: "echo x >> {{ bench_tmp }}/module_runs; exit 1"
    max_attempts: 10
    base_delay: 0
    max_delay: 0
    jitter: none
    artifacts_dir: "{{ bench_tmp }}/artifacts"
  register: bench_module
  failed_when: bench_module.retry.attempt_count != 10

- name: One retry_manager call
  ansible.builtin.set_fact:
    bench_t2m: "{{ now().timestamp() }}"

- name: One successful retry_manager call
  retry_manager:
    argv: ["true"]
    artifacts_dir: "{{ bench_tmp }}/artifacts"

- name: One command call
  ansible.builtin.set_fact:
    bench_t3: "{{ now().timestamp() }}"

- name: One successful command call
  ansible.builtin.command: "true"
  changed_when: false

- name: Record this round
  ansible.builtin.set_fact:
    bench_rounds: "{{ bench_rounds | default([]) + [{
        'role10': bench_t1 | float - bench_t0 | float,
        'until10': bench_t2 | float - bench_t1 | float,
        'module10': bench_t2m | float - bench_t2 | float,
        'module1': bench_t3 | float - bench_t2m | float,
        'command1': now().timestamp() - bench_t3 | float,
        'role_attempts': bench_role_attempts | int}] }}"
YAML

cat >"$tmp/bench.yml" <<'YAML'
---
- name: Benchmark retry_manager against Ansible's own retries
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Measure
      ansible.builtin.include_tasks: measure.yml
      loop: "{{ range(bench_repeat | int) | list }}"

    - name: Save the rounds
      ansible.builtin.copy:
        dest: "{{ bench_tmp }}/rounds.json"
        content: "{{ bench_rounds | to_json }}"
        mode: "0600"
YAML

start=$EPOCHREALTIME
ansible-playbook "$tmp/bench.yml" -e "bench_tmp=$tmp" -e "bench_repeat=$repeat" >"$tmp/play.log" 2>&1 || {
    tail -40 "$tmp/play.log" >&2
    echo "bench: the benchmark play failed" >&2
    exit 1
}
end=$EPOCHREALTIME

python3 - "$tmp" "$repeat" "$start" "$end" <<'PY'
import json, os, statistics, sys
tmp = sys.argv[1]
rounds = json.load(open(os.path.join(tmp, "rounds.json")))
repeat, wall = int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3])
# both sides must have run the command exactly ten times per round
runs = {k: len(open(os.path.join(tmp, k + "_runs")).readlines()) for k in ("role", "until", "module")}
if runs != {"role": 10 * repeat, "until": 10 * repeat, "module": 10 * repeat} or any(r["role_attempts"] != 10 for r in rounds):
    sys.exit(f"bench: expected {10 * repeat} runs of the command on each side, got {runs}")
med = {k: statistics.median(r[k] for r in rounds) for k in ("role10", "until10", "module10", "module1", "command1")}
print(f"ansible bench: median of {repeat} rounds, localhost, {wall:.1f}s wall for the whole play")
print(f"  10 failing attempts, delay 0:  retry_manager role {med['role10']*1000:8.1f} ms   "
      f"command+until {med['until10']*1000:8.1f} ms   ratio {med['until10']/med['role10']:5.1f}x")
print(f"  same, module without the role: retry_manager      {med['module10']*1000:8.1f} ms   "
      f"command+until {med['until10']*1000:8.1f} ms   ratio {med['until10']/med['module10']:5.1f}x")
print(f"  one call:                      retry_manager      {med['module1']*1000:8.1f} ms   "
      f"command       {med['command1']*1000:8.1f} ms   ratio {med['command1']/med['module1']:5.2f}x")
PY

echo "  stripped module: $(stat -c %s roles/retry_manager/library/retry_manager) bytes (roles/retry_manager/library/retry_manager)"

[ "${SSH:-1}" = 1 ] || exit 0
sshd_start "$tmp/sshd" || { echo "bench: sshd did not start" >&2; exit 1; }
tarball="$(bash scripts/build-collection.sh)"
ansible-galaxy collection install -p "$tmp/collections" "$tarball" >"$tmp/galaxy.log" 2>&1 \
    || { cat "$tmp/galaxy.log" >&2; exit 1; }
cat >"$tmp/ssh.cfg" <<CFG
[defaults]
collections_path = $tmp/collections
host_key_checking = true
retry_files_enabled = false
local_tmp = $tmp/local_tmp
[ssh_connection]
pipelining = true
control_path_dir = $tmp/cp
CFG
cat >"$tmp/ssh.ini" <<INV
sshhost ansible_host=127.0.0.1 ansible_port=$SSHD_PORT ansible_user=root ansible_connection=ssh ansible_ssh_private_key_file=$SSHD_KEY ansible_ssh_common_args="-o UserKnownHostsFile=$SSHD_KNOWN_HOSTS" ansible_python_interpreter=/usr/bin/python3
localhost ansible_connection=local ansible_python_interpreter=$root/.venv/bin/python
INV
for kind in module plain command; do
    {
        echo "---"
        for i in $(seq 1 10); do
            case $kind in
                module) printf -- '- name: module %s\n  retryx.core.retry_manager: {argv: [/bin/true], artifacts_dir: "{{ bench_tmp }}/ssh_artifacts"}\n' "$i" ;;
                plain) printf -- '- name: plain %s\n  retryx.core.retry_manager: {argv: [/bin/true], artifacts_dir: "{{ bench_tmp }}/ssh_artifacts"}\n  vars: {retryx_module_cache: false}\n' "$i" ;;
                command) printf -- '- name: command %s\n  ansible.builtin.command: /bin/true\n  changed_when: false\n' "$i" ;;
            esac
        done
    } >"$tmp/ten_$kind.yml"
done
cat >"$tmp/ssh_round.yml" <<'YAML'
---
- name: Ten tasks of each kind, the order rotating with the round
  ansible.builtin.include_tasks: ssh_kind.yml
  loop: "{{ (['module', 'plain', 'command'] * 2)[(round | int) % 3:(round | int) % 3 + 3] }}"
  loop_control: {loop_var: kind}
YAML
cat >"$tmp/ssh_kind.yml" <<'YAML'
---
- name: Start the clock
  ansible.builtin.set_fact: {bench_k0: "{{ now().timestamp() }}"}
- name: Ten tasks
  ansible.builtin.include_tasks: "ten_{{ kind }}.yml"
- name: Stop the clock
  ansible.builtin.set_fact:
    bench_ssh: "{{ bench_ssh | default([]) + [{'kind': kind, 'round': round | int, 's': now().timestamp() - bench_k0 | float}] }}"
YAML
cat >"$tmp/ssh_bench.yml" <<'YAML'
---
- name: Ten module tasks against ten command tasks
  hosts: "{{ bench_host }}"
  gather_facts: false
  tasks:
    - name: Warm up (the first module task sends the binary, the first command task finds Python)
      ansible.builtin.include_tasks: ssh_kind.yml
      loop: [module, command]
      loop_control: {loop_var: kind}
      vars: {round: -1}
    - name: Rounds
      ansible.builtin.include_tasks: ssh_round.yml
      loop: "{{ range(bench_repeat | int) | list }}"
      loop_control: {loop_var: round}
    - name: Save the rounds
      ansible.builtin.copy:
        dest: "{{ bench_tmp }}/rounds_{{ bench_host }}.json"
        content: "{{ bench_ssh | to_json }}"
        mode: "0600"
      delegate_to: localhost
YAML
for host in sshhost localhost; do
    ANSIBLE_CONFIG="$tmp/ssh.cfg" ansible-playbook -i "$tmp/ssh.ini" "$tmp/ssh_bench.yml" -e "bench_tmp=$tmp" \
        -e "bench_repeat=$repeat" -e "bench_host=$host" >"$tmp/ssh.log" 2>&1 \
        || { tail -40 "$tmp/ssh.log" >&2; echo "bench: the $host play failed" >&2; exit 1; }
    python3 - "$tmp/rounds_$host.json" "$repeat" "$host" <<'PY'
import json, statistics, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["round"] >= 0]
med = {k: statistics.median(r["s"] for r in rows if r["kind"] == k) for k in ("module", "plain", "command")}
how = "ssh to 127.0.0.1, pipelining on" if sys.argv[3] == "sshhost" else "connection: local"
print(f"ansible bench, {how}: median of {sys.argv[2]} rotating rounds of ten tasks each")
print(f"  retry_manager, cached copy   {med['module']*1000:8.1f} ms   /command = {med['module']/med['command']:.2f}")
print(f"  retry_manager, plain path    {med['plain']*1000:8.1f} ms   /command = {med['plain']/med['command']:.2f}")
print(f"  ansible.builtin.command      {med['command']*1000:8.1f} ms")
PY
done
