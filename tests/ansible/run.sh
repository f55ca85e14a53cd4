#!/usr/bin/env bash
# End-to-end tests of the Ansible side of retryx: the retry_manager module and
# role driven for real through ansible-playbook, ansible-runner and molecule,
# plus ansible-lint and ansible-doc. Needs the built module
# (roles/retry_manager/library/retry_manager, `make build`).
#
#   tests/ansible/run.sh            # everything
#   tests/ansible/run.sh NAME...    # only these (names as printed)
#
# Closes with "ansible: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# RETRYX_ANSIBLE_VENV=.venv-min runs the suite on the oldest supported ansible-core
# (tests/requirements-min.txt); the default .venv has the newest that installs here.
venv="${RETRYX_ANSIBLE_VENV:-.venv}"
if [ "$venv" = ".venv" ]; then
    scripts/setup-python.sh >/dev/null
else
    VENV="$venv" REQUIREMENTS=tests/requirements-min.txt scripts/setup-python.sh >/dev/null
fi || { echo "ansible: setup of $venv failed"; echo "ansible: 0 passed, 1 failed"; exit 1; }

export PATH="$root/$venv/bin:$PATH"
echo "ansible: $(ansible --version 2>/dev/null | sed -n 1p) ($venv)"
export ANSIBLE_CONFIG="$root/ansible/ansible.cfg"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
export ANSIBLE_LOCAL_TEMP="${TMPDIR:-/tmp}/retryx-ansible-local"

module="$root/roles/retry_manager/library/retry_manager"
if [ ! -x "$module" ]; then
    echo "ansible: $module is missing; build it first (make build)"
    echo "ansible: 0 passed, 1 failed"
    exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/retryx-ansible-tests.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
failed_names=()
only=("$@")

selected() {
    [ ${#only[@]} -eq 0 ] && return 0
    local n
    for n in "${only[@]}"; do [ "$n" = "$1" ] && return 0; done
    return 1
}

# check NAME CMD...: run CMD, count it, show the tail of its log on failure.
check() {
    local name="$1"; shift
    selected "$name" || return 0
    local log="$tmp/$name.log" start end
    start=$EPOCHREALTIME
    if "$@" >"$log" 2>&1; then
        end=$EPOCHREALTIME
        passed=$((passed + 1))
        printf 'ok    %-24s %6.1fs\n' "$name" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
    else
        end=$EPOCHREALTIME
        failed=$((failed + 1))
        failed_names+=("$name")
        printf 'FAIL  %-24s %6.1fs\n' "$name" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
        tail -n 60 "$log" | sed 's/^/      | /'
    fi
}

playbook() {
    local dir="$tmp/pb.$1"
    mkdir -p "$dir"
    ansible-playbook "$root/tests/ansible/playbooks/$1.yml" -e "test_tmp=$dir"
}

example() {
    (cd "$root/ansible" && ansible-playbook "$@")
}

# no_log: the play's own assertions, then the console output (at -vvv) and every
# file of the artifacts dir (gzip included) are searched for the secret.
no_log_test() {
    local dir="$tmp/pb.no_log" out="$tmp/no_log.console"
    mkdir -p "$dir"
    RETRYX_TEST_SECRET="nolog-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
    export RETRYX_TEST_SECRET
    ansible-playbook -vvv "$root/tests/ansible/playbooks/no_log.yml" -e "test_tmp=$dir" >"$out" 2>&1
    local rc=$?
    python3 - "$out" "$dir" <<'PY'
import gzip, os, sys
secret = os.environ["RETRYX_TEST_SECRET"].encode()
console, root = sys.argv[1], sys.argv[2]
leaks = []
if secret in open(console, "rb").read():
    leaks.append("console output")
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        data = open(p, "rb").read()
        if p.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except OSError:
                pass
        if secret in data:
            leaks.append(os.path.relpath(p, root))
if leaks:
    print("secret found in: " + ", ".join(leaks))
    sys.exit(1)
print("secret found nowhere")
PY
    local leak=$?
    unset RETRYX_TEST_SECRET
    # the console is shown on failure only with the secret masked
    sed -e 's/nolog-[0-9a-f]\{24\}/<SECRET>/g' "$out"
    [ $rc -eq 0 ] && [ $leak -eq 0 ]
}

# A local webhook receiver (127.0.0.1, a free port) for the notify handler test.
handlers_notify_test() {
    local dir="$tmp/pb.handlers_notify" port rc
    mkdir -p "$dir"
    : >"$dir/received.jsonl"
    python3 - "$dir/received.jsonl" "$dir/port" <<'PY' &
import http.server, json, sys
log, portfile = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        with open(log, "a") as f:
            f.write(json.dumps({"method": "POST", "path": self.path, "body": body}) + "\n")
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
srv.timeout = 1
open(portfile + ".tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(portfile + ".tmp", portfile)
for _ in range(120):          # bounded: two minutes at most
    srv.handle_request()
PY
    local server=$!
    for _ in $(seq 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
    port="$(cat "$dir/port" 2>/dev/null)"
    # a port nothing listens on: bound, then closed
    dead="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    local args=(-e "test_tmp=$dir" -e "receiver_url=http://127.0.0.1:$port/hook"
        -e "receiver_log=$dir/received.jsonl" -e "dead_url=http://127.0.0.1:$dead/hook")
    # 1. the failed delivery is a warning, the handler ok and the play goes on
    ansible-playbook "$root/tests/ansible/playbooks/handlers_notify.yml" "${args[@]}" \
        >"$dir/out1" 2>&1
    rc=$?
    cat "$dir/out1"
    if [ $rc -eq 0 ] && ! grep -q '\[WARNING\]: notification to dead_hook (webhook) failed' "$dir/out1"; then
        echo "no warning for the failed delivery"
        rc=1
    fi
    # 2. required: true: the same failure fails the handler, naming the system
    if [ $rc -eq 0 ]; then
        : >"$dir/received.jsonl"
        mkdir -p "$dir/required"
        ansible-playbook "$root/tests/ansible/playbooks/handlers_notify.yml" "${args[@]}" \
            -e dead_required=true -e "test_tmp=$dir/required" >"$dir/out2" 2>&1
        local rc2=$?
        cat "$dir/out2"
        if [ $rc2 -eq 0 ] || ! grep -q 'required notification failed: dead_hook' "$dir/out2"; then
            echo "a required system's failed delivery did not fail the handler (rc $rc2)"
            rc=1
        fi
    fi
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    return $rc
}

# debug_mode: the play's assertions, then the per-attempt lines in the default
# (non -v) console output, and retry_tasks' progress line.
debug_mode_test() {
    local dir="$tmp/pb.debug_mode" out
    mkdir -p "$dir"
    out="$dir/console"
    ansible-playbook "$root/tests/ansible/playbooks/debug_mode.yml" -e "test_tmp=$dir" >"$out" 2>&1
    local rc=$?
    cat "$out"
    [ $rc -eq 0 ] || return 1
    grep -q '"attempt 1/3: rc 1, class connection_error' "$out" \
        && grep -q "attempt 1/3: rc 3, failed task 'Fail on the first attempt'" "$out" \
        || { echo "the attempts' lines are not in the default output"; return 1; }
    # the progress line of retry_tasks' failed attempt, before the next one
    grep -q 'FAILED - RETRYING: debug_tasks (attempt 1 of 3 failed: connection_error, ' "$out" \
        || { echo "no progress line for the failed attempt"; return 1; }
}

# A small HTTP service (tests/ansible/services/http_service.py) on 127.0.0.1 for
# the playbooks that retry tasks against it; started and stopped by pid.
with_service() {
    local name="$1" dir="$tmp/pb.$1" rc server
    shift
    mkdir -p "$dir"
    python3 "$root/tests/ansible/services/http_service.py" "$dir/port" &
    server=$!
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
    if [ ! -s "$dir/port" ]; then
        kill "$server" 2>/dev/null
        echo "the HTTP service did not start"
        return 1
    fi
    ansible-playbook "$@" "$root/tests/ansible/playbooks/$name.yml" -e "test_tmp=$dir" \
        -e "service=http://127.0.0.1:$(cat "$dir/port")"
    rc=$?
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    return $rc
}

# The role passes on every key of the module's schema except those it sets
# itself and the download-only ones; argument_specs documents the same keys.
role_schema_sync() {
    python3 - "$root" <<'PY'
import json, sys, yaml
root = sys.argv[1]
props = set(json.load(open(f"{root}/schemas/retry_manager.schema.json"))["properties"])
role_sets = {"operation", "context", "session_id", "artifacts_dir", "state_dir", "notify_kind"}
download_only = {"url", "dest", "checksum", "headers", "force"}
want = props - role_sets
spec = yaml.safe_load(open(f"{root}/roles/retry_manager/meta/argument_specs.yml"))
documented = set(spec["argument_specs"]["main"]["options"]["retry_manager"]["options"])
tasks = yaml.safe_load(open(f"{root}/roles/retry_manager/tasks/run_command.yml"))
call = next(t for b in tasks for t in b.get("block", []) if "retry_manager" in t)["retry_manager"]
bad = False
# the task passes the role's own keys, the explicit command, and everything else as one
# `config` dict (the merged retry_manager); so argument_specs must list every other key
if documented != want:
    bad = True
    print(f"argument_specs: missing {sorted(want - documented)}, extra {sorted(documented - want)}")
if set(call) != role_sets - {"notify_kind"} | {"command", "argv", "config"}:
    bad = True
    print(f"tasks/run_command.yml passes {sorted(call)}")
if call.get("config") != "{{ retry_manager_effective }}":
    bad = True
    print("tasks/run_command.yml: config must be the merged retry_manager_effective")
sidecar = yaml.safe_load(open(f"{root}/roles/retry_manager/library/retry_manager.yml"))
if "config" not in sidecar["DOCUMENTATION"]["options"]:
    bad = True
    print("library/retry_manager.yml does not document config")
unknown = (role_sets | download_only) - props
if unknown:
    bad = True
    print(f"keys the runner expects but the schema lacks: {sorted(unknown)}")
print(f"{len(want)} keys agree" if not bad else "out of sync")
sys.exit(1 if bad else 0)
PY
}

lint() {
    ansible-lint --nocolor -q roles/ ansible/ molecule/ tests/ansible/playbooks/
}

doc() {
    local out
    out="$(ansible-doc -M "$root/roles/retry_manager/library" retry_manager)" || return 1
    printf '%s\n' "$out" | head -5
    grep -q "max_attempts" <<<"$out" && grep -q "RETURN VALUES" <<<"$out" && grep -q "EXAMPLES" <<<"$out"
}

molecule_test() {
    env -u ANSIBLE_CONFIG molecule test
}

runner_test() {
    python -m pytest -q -p no:cacheprovider "$root/tests/ansible/test_runner.py"
}

check retry_tasks          with_service retry_tasks
check tasks_keywords       with_service tasks_keywords
check success_after_retries playbook success_after_retries
check non_retryable        playbook non_retryable
check timeout              playbook timeout
check check_mode           playbook check_mode
check no_log               no_log_test
check bad_args             playbook bad_args
check role                 playbook role
check handlers             playbook handlers
check handlers_cleanup     playbook handlers_cleanup
check handlers_finalize_once playbook handlers_finalize_once
check handlers_notify      handlers_notify_test
check debug_mode           debug_mode_test
check example_basic        example basic.yml
check example_advanced     example advanced.yml
check example_demo         example demo.yml
check example_multi        example multi_operation.yml -e retry_artifacts_dir="$tmp/multi_artifacts"
check ansible_runner       runner_test
check role_schema_sync     role_schema_sync
check ansible_lint         lint
check ansible_doc          doc
check molecule             molecule_test

if [ $failed -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
echo "ansible: $passed passed, $failed failed"
[ $failed -eq 0 ]
