#!/usr/bin/env bash
# Create (or refresh) the repository's Python virtualenv at .venv and install
# tests/requirements.txt into it. Idempotent: when the stamp file holds the hash
# of the requirements file and of the interpreter, pip is not run at all.
#
#   scripts/setup-python.sh          # quiet; prints one line
#   PYTHON=python3.11 scripts/setup-python.sh
#   VENV=.venv-min REQUIREMENTS=tests/requirements-min.txt scripts/setup-python.sh
#                                    # the oldest supported ansible-core (role suite only)
#
# Afterwards: PATH="$PWD/.venv/bin:$PATH" (ansible, molecule, ansible-lint,
# ansible-runner, pytest).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/${VENV:-.venv}"
req="$root/${REQUIREMENTS:-tests/requirements.txt}"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup-python: $python not found" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "setup-python: Python >= 3.11 is required (ansible-core 2.19), got $("$python" -V 2>&1)" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    rm -f "$stamp"
fi

want="$( { sha256sum "$req" | cut -d' ' -f1; "$venv/bin/python" -V 2>&1; } | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup-python: ${VENV:-.venv} up to date"
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install --quiet --no-input -r "$req"
"$venv/bin/python" -m pip check >/dev/null || {
    "$venv/bin/python" -m pip check >&2
    echo "setup-python: dependency conflicts in ${VENV:-.venv}" >&2
    exit 1
}
printf '%s\n' "$want" >"$stamp"
echo "setup-python: installed $(grep -cE '^[A-Za-z0-9]' "$req") pinned packages into ${VENV:-.venv}"
