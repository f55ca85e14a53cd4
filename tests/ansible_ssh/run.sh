#!/usr/bin/env bash
# The retryx.core collection over a real SSH connection: builds the collection (make
# collection's script), installs it with ansible-galaxy into a temporary collections path, starts
# OpenSSH's sshd on 127.0.0.1 (tests/common/sshd.sh: generated host and user keys, a free port,
# stopped by its pid), and drives the module and the role by FQCN over ansible_connection: ssh
# on a host without Python: a flaky command succeeding on attempt 2, become to an unprivileged
# user (created here, removed at the end), check mode, no_log, delegate_to, async (the plain
# path), a second run that sends nothing, a tampered cached copy removed and never run, and a
# module built for another architecture refused with a message naming both.
#   tests/ansible_ssh/run.sh          RETRYX_REQUIRE_SSHD=1 tests/ansible_ssh/run.sh (make test)
#   KEEP_TMP=1 tests/ansible_ssh/run.sh   (keeps the logs, keys and homes for a look)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/ansible_ssh"
cd "$root"
scripts/setup-python.sh >/dev/null || { echo "ansible_ssh: setup of .venv failed"; exit 1; }
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0

tmp="$(mktemp -d "${TMPDIR:-/tmp}/retryx-ansible-ssh.XXXXXX")"
chmod 0711 "$tmp"  # the become user's home is below it
user="retryx-ssh-$$"
# shellcheck source=../common/sshd.sh
source "$root/tests/common/sshd.sh"
cleanup() {
    sshd_stop
    id "$user" >/dev/null 2>&1 && userdel "$user" 2>/dev/null
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "ansible_ssh: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

fail() { echo "ansible_ssh: FAIL: $*"; exit 1; }

tarball="$(bash scripts/build-collection.sh)" || fail "the collection did not build"
ansible-galaxy collection install -p "$tmp/collections" "$tarball" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log"; fail "ansible-galaxy collection install"; }
coll="$tmp/collections/ansible_collections/retryx/core"
[ -x "$coll/plugins/modules/retry_manager" ] || fail "the installed collection has no module"

sshd_start "$tmp/sshd"
rc=$?
[ "$rc" -eq 77 ] && { echo "ansible_ssh: skipped (no sshd)"; exit 0; }
[ "$rc" -eq 0 ] || fail "sshd did not start"
useradd -m -d "$tmp/sshd/home_user" -s /bin/sh "$user" || fail "useradd $user"

# A config of its own: only the installed collection provides retry_manager (no roles/, no library/).
cat >"$tmp/ansible.cfg" <<CFG
[defaults]
collections_path = $tmp/collections
inventory = $tmp/inventory.ini
host_key_checking = true
retry_files_enabled = false
stdout_callback = default
local_tmp = $tmp/local_tmp
[ssh_connection]
pipelining = true
control_path_dir = $tmp/cp
CFG
cat >"$tmp/inventory.ini" <<INV
[ssh]
sshhost ansible_host=127.0.0.1 ansible_port=$SSHD_PORT ansible_user=root ansible_connection=ssh ansible_ssh_private_key_file=$SSHD_KEY ansible_ssh_common_args="-o UserKnownHostsFile=$SSHD_KNOWN_HOSTS" ansible_python_interpreter=/nonexistent/python3
[local]
localhost ansible_connection=local ansible_python_interpreter=$root/.venv/bin/python
INV
export ANSIBLE_CONFIG="$tmp/ansible.cfg"

ansible-doc retryx.core.retry_manager >"$tmp/doc.txt" 2>&1 || { cat "$tmp/doc.txt"; fail "ansible-doc retryx.core.retry_manager"; }
grep -q "max_attempts" "$tmp/doc.txt" || fail "ansible-doc does not render the options"
ansible-doc -t role retryx.core.retry_manager >"$tmp/roledoc.txt" 2>&1 || { cat "$tmp/roledoc.txt"; fail "ansible-doc -t role"; }

play() {  # play LOG ARGS...: one playbook run, its log kept
    local log="$1"; shift
    if ! ansible-playbook -v "$here/ssh.yml" -e "t=$tmp" -e "become_to=$user" -e "ssh_home=$SSHD_HOME" "$@" >"$log" 2>&1; then
        tail -n 80 "$log"
        fail "ansible-playbook $* (log above)"
    fi
}
cache="$SSHD_HOME/.ansible/retryx"
digest="$(sha256sum "$coll/plugins/modules/retry_manager" | cut -d' ' -f1)"

# 1. everything, from an empty cache: one copy is sent per host user (root, the become user)
play "$tmp/run1.log" -vvv
sent1="$(grep -c '<127.0.0.1> retry_manager: sending' "$tmp/run1.log")"
[ "$sent1" -eq 2 ] || fail "first run: expected 2 transfers (root and $user), got $sent1"
# the local-connection task keeps the controller user's own copy (in the real home, as ~/.ansible/tmp)
[ -f "$HOME/.ansible/retryx/retry_manager-$digest" ] || fail "no copy for the local connection"
[ -f "$cache/retry_manager-$digest" ] || fail "no copy at $cache/retry_manager-$digest"
[ "$(stat -c %a "$cache")" = 700 ] || fail "$cache is $(stat -c %a "$cache"), not 700"
[ "$(stat -c '%a %U' "$tmp/sshd/home_user/.ansible/retryx/retry_manager-$digest")" = "700 $user" ] \
    || fail "the become user's copy is not theirs or not 0700"
grep -q 'SECRET-TOKEN-42' "$tmp/run1.log" && fail "no_log: the secret reached the output"
inode1="$(stat -c %i "$cache/retry_manager-$digest")"

# 2. the same again: nothing is sent, the copy is the same file
play "$tmp/run2.log" -vvv
sent2="$(grep -c 'retry_manager: sending' "$tmp/run2.log")"
[ "$sent2" -eq 0 ] || fail "second run sent the binary $sent2 times"
[ "$(stat -c %i "$cache/retry_manager-$digest")" = "$inode1" ] || fail "second run replaced the copy"

# 3. a tampered copy (same name, other content) is removed, never run, and replaced
printf '#!/bin/sh\ntouch %s/tampered_ran\necho "{\\"changed\\": false, \\"tampered\\": true}"\n' "$tmp" \
    >"$cache/retry_manager-$digest"
chmod 0700 "$cache/retry_manager-$digest"
play "$tmp/run3.log" -e only_flaky=true
[ -e "$tmp/tampered_ran" ] && fail "the tampered copy was run"
grep -q 'cached copy on this host had sha256' "$tmp/run3.log" || fail "no warning about the tampered copy"
[ "$(sha256sum "$cache/retry_manager-$digest" | cut -d' ' -f1)" = "$digest" ] || fail "the copy was not replaced"

# 4. a module built for another architecture: a clear failure, nothing sent or run
other="$tmp/other/ansible_collections/retryx"
mkdir -p "$other" && cp -r "$coll" "$other/"
printf '\xb7\x00' | dd of="$other/core/plugins/modules/retry_manager" bs=1 seek=18 conv=notrunc status=none
ANSIBLE_COLLECTIONS_PATH="$tmp/other" ansible -i "$tmp/inventory.ini" sshhost -m retryx.core.retry_manager \
    -a 'argv=["true"]' >"$tmp/arch.log" 2>&1 && { cat "$tmp/arch.log"; fail "an aarch64 module ran on x86_64"; }
grep -q 'static Linux aarch64 binary' "$tmp/arch.log" && grep -q 'this host is Linux .*x86_64' "$tmp/arch.log" \
    || { cat "$tmp/arch.log"; fail "the arch failure does not name both platforms"; }

echo "ansible_ssh: ok (collection $tarball; transfers: first run $sent1, second run $sent2)"
