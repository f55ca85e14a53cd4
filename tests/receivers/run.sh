#!/usr/bin/env bash
# tests/receivers/run.sh: the one command for the notification tests (issue 5). Installs the
# real receivers when missing (install.sh), makes sure a Python with pytest, slack_sdk and
# datadog-api-client exists, builds retryx, then runs the pytest suites under tests/receivers
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
if ! "$PY" -c 'import pytest, slack_sdk, datadog_api_client' 2>/dev/null; then
    "$PY" -m pip install -q pytest slack_sdk datadog-api-client
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --quiet --bin retryx
export RETRYX_BIN="$CARGO_TARGET_DIR/debug/retryx"

exec "$PY" -m pytest -q -p no:cacheprovider tests/receivers "$@"
