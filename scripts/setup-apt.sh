#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only those missing.
# apt does not start services here; the tests start the binaries they need themselves.
set -euo pipefail
want=("$@")
[ ${#want[@]} -gt 0 ] || exit 0
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup-apt: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
