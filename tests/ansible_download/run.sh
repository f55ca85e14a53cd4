#!/usr/bin/env bash
# ansible-playbook test of the module's `action: download` (issue 7): builds retryx and the
# flaky test server (bench/flaky_server), serves a 5 MiB file that is cut after 2 MiB on the
# first request, and runs download.yml against the module. Uses .venv at the repo root when it
# exists (scripts/setup-python.sh), else a throwaway venv outside the repo with ansible-core
# 2.19 (RETRYX_ANSIBLE_VENV to choose where). Must not touch anything outside its temp dir.
#
# The role (include_role: retry_manager) does not pass action/url/dest/checksum/headers to the
# module, so the test calls the module itself: a library dir holding the built binary.
#
#   tests/ansible_download/run.sh      # ends with "ansible_download: ok" or exits non-zero
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if [ -x "$root/.venv/bin/ansible-playbook" ]; then
    venv="$root/.venv"
else
    venv="${RETRYX_ANSIBLE_VENV:-${TMPDIR:-/tmp}/retryx-ansible-download-venv}"
    if [ ! -x "$venv/bin/ansible-playbook" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet 'ansible-core==2.19.*'
    fi
fi

cargo build --quiet --bin retryx --example flaky_server

tmp="$(mktemp -d "${TMPDIR:-/tmp}/retryx-ansible-download.XXXXXX")"
srv_pid=
cleanup() {
    if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir "$tmp/library" "$tmp/out"
install -m 0755 "$CARGO_TARGET_DIR/debug/retryx" "$tmp/library/retry_manager"
size=$((5 << 20))
head -c "$size" /dev/urandom > "$tmp/src.bin"
sha=$(sha256sum "$tmp/src.bin" | cut -d' ' -f1)

"$CARGO_TARGET_DIR/debug/examples/flaky_server" --file "$tmp/src.bin" --cut-after $((2 << 20)) --cuts 1 > "$tmp/port" &
srv_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(head -1 "$tmp/port")
token="tok-$RANDOM$RANDOM-secret"

export ANSIBLE_LIBRARY="$tmp/library" ANSIBLE_LOCAL_TEMP="$tmp/ansible-local" ANSIBLE_ROLES_PATH="$root/roles"
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
export ANSIBLE_PYTHON_INTERPRETER="$venv/bin/python"
"$venv/bin/ansible-playbook" -i localhost, -v "$root/tests/ansible_download/download.yml" \
    -e "url=http://127.0.0.1:$port/disk.img" -e "missing_url=http://127.0.0.1:$port/missing/disk.img" \
    -e "dest=$tmp/out/disk.img" -e "sha=$sha" -e "size=$size" -e "token=$token" | tee "$tmp/play.log"

# The header value went to the server, never into Ansible's output.
if grep -q "$token" "$tmp/play.log"; then
    echo "ansible_download: the header value appears in the playbook output" >&2
    exit 1
fi
cmp "$tmp/src.bin" "$tmp/out/disk.img"
echo "ansible_download: ok"
