#!/usr/bin/env bash
# Builds the retryx.core collection: dist/retryx-core-<version>.tar.gz, from collection/ (galaxy.yml,
# meta, README, changelog, the action plugin), the built module (roles/retry_manager/library/
# retry_manager, `make build`) with its sidecar documentation, and the role roles/retry_manager
# without its library/ and action_plugins/ (inside the collection the role's `retry_manager:`
# resolves to retryx.core.retry_manager, so the 10 MB binary is packed once).
#   scripts/build-collection.sh            # prints the tarball's path
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
module=roles/retry_manager/library/retry_manager
if [ ! -x "$module" ]; then
    echo "build-collection: $module is missing; run make build" >&2
    exit 1
fi
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
[ -n "$version" ] || { echo "build-collection: no version in Cargo.toml" >&2; exit 1; }
galaxy="${ANSIBLE_GALAXY:-$root/.venv/bin/ansible-galaxy}"
[ -x "$galaxy" ] || galaxy=ansible-galaxy

stage="$(mktemp -d "${TMPDIR:-/tmp}/retryx-collection.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
c="$stage/retryx/core"
mkdir -p "$c/plugins/modules" "$c/roles" "$root/dist"
cp -r collection/. "$c/"
sed -i "s/^version: .*/version: $version/" "$c/galaxy.yml"
install -m 0755 "$module" "$c/plugins/modules/retry_manager"
install -m 0644 roles/retry_manager/library/retry_manager.yml "$c/plugins/modules/retry_manager.yml"
cp -r roles/retry_manager "$c/roles/"
rm -rf "$c/roles/retry_manager/library" "$c/roles/retry_manager/action_plugins"
find "$c" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
out="dist/retryx-core-$version.tar.gz"
rm -f "$out"
"$galaxy" collection build "$c" --output-path "$root/dist" >/dev/null
[ -f "$out" ] || { echo "build-collection: $galaxy did not write $out" >&2; exit 1; }
echo "$out"
