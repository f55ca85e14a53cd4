# OpenSSH's sshd on 127.0.0.1 for the SSH tests and bench/ansible.sh (sourced, bash).
# sshd_start DIR: generates a host key and a user key under DIR, starts /usr/sbin/sshd on a free
# port (root logs in with the key only; every session's HOME is DIR/home_root so nothing lands in
# the real home directory), waits until it answers, and sets SSHD_PORT, SSHD_PID, SSHD_KEY,
# SSHD_KNOWN_HOSTS and SSHD_HOME. sshd_stop stops it by its pid. It never touches /etc/ssh or a
# running system sshd.
#   RETRYX_REQUIRE_SSHD=1: a missing sshd is a failure (make test), not a skip (return 77).

sshd_start() {
    local dir="$1" bin=/usr/sbin/sshd i
    if [ ! -x "$bin" ] || ! command -v sudo >/dev/null; then
        bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/setup-apt.sh" openssh-server sudo >&2 || true
    fi
    if [ ! -x "$bin" ]; then
        echo "sshd: $bin is missing (apt-get install openssh-server)" >&2
        [ "${RETRYX_REQUIRE_SSHD:-0}" = 1 ] && return 1
        return 77
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "sshd: the SSH tests start sshd and create a user: they need root" >&2
        [ "${RETRYX_REQUIRE_SSHD:-0}" = 1 ] && return 1
        return 77
    fi
    mkdir -p "$dir" /run/sshd
    chmod 0711 "$dir"  # the become user's home is below it
    ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" -C retryx-test-host || return 1
    ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key" -C retryx-test-user || return 1
    cp "$dir/user_key.pub" "$dir/authorized_keys"
    chmod 0600 "$dir/authorized_keys"
    SSHD_HOME="$dir/home_root"
    mkdir -p -m 0700 "$SSHD_HOME"
    SSHD_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    cat >"$dir/sshd_config" <<CFG
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv HOME=$SSHD_HOME
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp internal-sftp
LogLevel ERROR
CFG
    "$bin" -D -e -f "$dir/sshd_config" 2>>"$dir/sshd.log" &
    SSHD_PID=$!
    SSHD_KEY="$dir/user_key"
    SSHD_KNOWN_HOSTS="$dir/known_hosts"
    printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$SSHD_KNOWN_HOSTS"
    # readiness: sshd answers a login (a bounded poll, not a timing assumption)
    for i in $(seq 1 100); do
        if ssh -q -o BatchMode=yes -o UserKnownHostsFile="$SSHD_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
            -i "$SSHD_KEY" -p "$SSHD_PORT" root@127.0.0.1 true 2>/dev/null; then
            return 0
        fi
        kill -0 "$SSHD_PID" 2>/dev/null || { cat "$dir/sshd.log" >&2; return 1; }
        sleep 0.1
    done
    echo "sshd: no answer on 127.0.0.1:$SSHD_PORT" >&2
    cat "$dir/sshd.log" >&2
    return 1
}

sshd_stop() {
    if [ -n "${SSHD_PID:-}" ]; then
        kill "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
        SSHD_PID=""
    fi
}
