#!/usr/bin/env bash
# tests/receivers/run.sh: the one command for the notification tests (issue 5). Installs the
# real receivers when missing (install.sh), makes sure a Python with pytest, slack_sdk,
# datadog-api-client and ansible-core exists, builds retryx, then runs the pytest suites under tests/receivers
# against the built binary. Everything it starts listens on 127.0.0.1 and is stopped by the
# fixtures; it never starts a system service.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

bash tests/receivers/install.sh

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x scripts/setup-python.sh ] && [ ! -x .venv/bin/python ]; then
        scripts/setup-python.sh
    fi
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    PY=.venv/bin/python
fi
if ! "$PY" -c 'import pytest, slack_sdk, datadog_api_client, ansible' 2>/dev/null; then
    # The versions tests/requirements.txt pins.
    "$PY" -m pip install -q pytest==9.2.0 slack_sdk==3.47.0 datadog-api-client==2.62.0 \
        ansible-core==2.19.14
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --quiet --bin retryx
export RETRYX_BIN="$CARGO_TARGET_DIR/debug/retryx"

exec "$PY" -m pytest -q -p no:cacheprovider tests/receivers "$@"
