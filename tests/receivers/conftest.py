"""pytest fixtures for the notification tests: the mock Slack/Datadog services, the real
receivers (started once per session on free 127.0.0.1 ports, stopped at the end) and the path
of the built retryx binary. Must not start anything bound beyond 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mock_services import MockServices  # noqa: E402
from receivers import NodeExporter, Prometheus, Pushgateway, VictoriaMetrics  # noqa: E402

REPO = HERE.parent.parent

# Every receiver is on 127.0.0.1: never let a proxy from the environment carry that traffic
# (urllib here and ureq in retryx both honour NO_PROXY).
for _var in ("NO_PROXY", "no_proxy"):
    _have = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(_have + [h for h in ("127.0.0.1", "localhost") if h not in _have])
SLACK_HOOK = "/services/T0RETRYX1/B0RETRYX1/s3cr3tW3bh00kT0k3n"
DD_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def mock():
    m = MockServices(
        slack_hooks={
            SLACK_HOOK: "ok",
            "/services/T0RETRYX1/B0GONE/g0neT0k3n": "no_service",
            "/services/T0RETRYX1/B0NOCHAN/n0chanT0k3n": "channel_not_found",
        },
        dd_api_keys={DD_KEY},
    ).start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def pushgateway():
    with Pushgateway() as r:
        yield r


@pytest.fixture(scope="session")
def prometheus():
    with Prometheus() as r:
        yield r


@pytest.fixture(scope="session")
def victoria():
    with VictoriaMetrics() as r:
        yield r


@pytest.fixture
def node_exporter(tmp_path):
    with NodeExporter(tmp_path / "textfile") as r:
        yield r


@pytest.fixture(scope="session")
def retryx_bin() -> Path:
    """The retryx binary under test: $RETRYX_BIN, else $CARGO_TARGET_DIR/debug/retryx, else
    target/debug/retryx (run.sh builds it first)."""
    env = os.environ.get("RETRYX_BIN")
    if env:
        path = Path(env)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        path = target / "debug" / "retryx"
    if not path.is_file():
        pytest.fail(f"retryx binary not found at {path}: build it (tests/receivers/run.sh does)")
    return path
