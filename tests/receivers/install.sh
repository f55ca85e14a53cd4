#!/usr/bin/env bash
# tests/receivers/install.sh: install the real metric receivers the notification tests talk to
# (Debian 12 package names, checked with apt-cache policy). Idempotent: installs only what is
# missing and runs `apt-get update` at most once. It never starts or enables a service: the
# tests start the binaries themselves on free 127.0.0.1 ports (tests/receivers/receivers.py).
set -euo pipefail

PKGS=(prometheus-pushgateway prometheus prometheus-node-exporter victoria-metrics)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "receivers: all installed (${PKGS[*]})"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "receivers: installing ${missing[*]}"
$SUDO apt-get update -qq
# policy-rc.d-less containers: keep maintainer scripts from starting daemons where they can.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "receivers: installed ${missing[*]}"
