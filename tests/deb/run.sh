#!/usr/bin/env bash
# The Debian package of `make deb`, installed with dpkg into a private root (a dpkg database of
# its own, so the machine's /usr is left alone) and used from there as a person would: the
# binary runs, `man retryx` finds the page by name, the completions are where bash-completion,
# zsh and fish look. Fails loudly on anything missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
deb=$(ls -t dist/retryx_*.deb | head -1)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-not-root --log=/dev/null -i "$deb" >/dev/null
dpkg --root="$root" -s retryx | grep -q '^Status: install ok installed'

version=$("$root/usr/bin/retryx" --version)
want="retryx $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
[ "$version" = "$want" ] || { echo "retryx --version: got '$version', want '$want'"; exit 1; }

page=$(MANPATH="$root/usr/share/man" MANPAGER=cat MANWIDTH=100 man retryx 2>&1)
grep -q -- '--max-attempts' <<<"$page" || { echo "man retryx did not render:"; echo "$page" | head; exit 1; }

bash -n "$root/usr/share/bash-completion/completions/retryx"
test -s "$root/usr/share/zsh/vendor-completions/_retryx"
test -s "$root/usr/share/fish/vendor_completions.d/retryx.fish"
echo "deb: $deb installs; retryx --version, man retryx and the completions work"
