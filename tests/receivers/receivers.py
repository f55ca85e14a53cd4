"""Start and stop the real metric receivers (Debian packages, see install.sh) for the
notification tests: Prometheus Pushgateway, Prometheus with the remote-write receiver,
node_exporter with only the textfile collector, VictoriaMetrics (its Datadog v1 intake).

Each runs from its own binary on a free 127.0.0.1 port with a temporary data directory, is
waited on until ready, and is stopped (TERM, then KILL) afterwards; usable as pytest fixtures
(see conftest.py) or by hand (``python receivers.py up``). Read-back helpers query each one's
own API. This module must never bind anything but 127.0.0.1, nor start a system service.
"""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

BINARIES = {
    "pushgateway": "prometheus-pushgateway",
    "prometheus": "prometheus",
    "node_exporter": "prometheus-node-exporter",
    "victoria_metrics": "victoria-metrics",
}


class ReceiverError(RuntimeError):
    pass


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def available(kind: str) -> bool:
    return shutil.which(BINARIES[kind]) is not None


class Receiver:
    """One receiver process. ``argv(port, datadir)`` builds its command line."""

    def __init__(self, kind: str, argv: Callable[[int, Path], list[str]], ready_path: str,
                 datadir: Path | None = None):
        self.kind = kind
        self._argv = argv
        self.ready_path = ready_path
        self._own_dir = datadir is None
        self.datadir = Path(datadir or tempfile.mkdtemp(prefix=f"retryx-{kind}-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = self.datadir / f"{kind}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start(self, ready_timeout: float = 45.0) -> "Receiver":
        binary = BINARIES[self.kind]
        if shutil.which(binary) is None:
            raise ReceiverError(f"{binary} is not installed (run tests/receivers/install.sh)")
        last = ""
        for _ in range(3):  # a port picked free can be taken before the binary binds it
            self.port = free_port()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                self._argv(self.port, self.datadir), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.datadir, start_new_session=True)
            log.close()
            atexit.register(self.stop)  # never outlive the Python process that started it
            end = time.monotonic() + ready_timeout
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    break
                try:
                    status, _ = http_get(self.url(self.ready_path), timeout=1.0)
                    if status == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.1)
            last = self.log_tail()
            self._kill()
        raise ReceiverError(f"{self.kind} did not become ready:\n{last}")

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._kill()
        if self._own_dir:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------- the receivers


class Pushgateway(Receiver):
    def __init__(self) -> None:
        super().__init__("pushgateway", lambda port, d: [
            BINARIES["pushgateway"], f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=", "--log.level=warn"], "/-/ready")

    def metrics(self) -> list[dict]:
        """``/api/v1/metrics``: one entry per group (labels + metric families)."""
        status, body = http_get(self.url("/api/v1/metrics"))
        if status != 200:
            raise ReceiverError(f"pushgateway /api/v1/metrics: {status} {body[:200]!r}")
        return json.loads(body)["data"]

    def scrape(self) -> str:
        return http_get(self.url("/metrics"))[1].decode()


class Prometheus(Receiver):
    """Prometheus with ``--web.enable-remote-write-receiver`` and an empty scrape config."""

    def __init__(self) -> None:
        def argv(port: int, d: Path) -> list[str]:
            cfg = d / "prometheus.yml"
            cfg.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
            return [BINARIES["prometheus"], f"--config.file={cfg}",
                    f"--storage.tsdb.path={d / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-remote-write-receiver", "--log.level=warn"]
        super().__init__("prometheus", argv, "/-/ready")

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        q = {"query": promql}
        if at is not None:
            q["time"] = f"{at:.3f}"
        status, body = http_get(self.url("/api/v1/query?" + urllib.parse.urlencode(q)))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise ReceiverError(f"prometheus query {promql!r}: {status} {body[:300]!r}")
        return doc["data"]["result"]

    def query_range_raw(self, selector: str, window: str = "10m") -> list[dict]:
        """All raw samples of ``selector`` over the last ``window`` (a range-vector query)."""
        return self.query(f"{selector}[{window}]")


class NodeExporter(Receiver):
    """node_exporter with every collector off except textfile, reading ``textfile_dir``."""

    def __init__(self, textfile_dir: Path) -> None:
        self.textfile_dir = Path(textfile_dir)
        self.textfile_dir.mkdir(parents=True, exist_ok=True)
        super().__init__("node_exporter", lambda port, d: [
            BINARIES["node_exporter"], f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults", "--collector.textfile",
            f"--collector.textfile.directory={self.textfile_dir}", "--log.level=warn"],
            "/metrics")

    def scrape(self) -> str:
        status, body = http_get(self.url("/metrics"))
        if status != 200:
            raise ReceiverError(f"node_exporter /metrics: {status}")
        return body.decode()


class VictoriaMetrics(Receiver):
    """VictoriaMetrics single node; its ``/datadog/api/v1/series`` takes Datadog v1 series."""

    def __init__(self) -> None:
        super().__init__("victoria_metrics", lambda port, d: [
            BINARIES["victoria_metrics"], f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={d / 'data'}", "-loggerLevel=WARN",
            "-search.disableCache", "-search.latencyOffset=0s"], "/health")

    @property
    def datadog_base(self) -> str:
        """What a Datadog client is pointed at (``<base>/api/v1/series`` is appended)."""
        return self.url("/datadog")

    def export(self, match: str) -> list[dict]:
        """``/api/v1/export``: one JSON line per series (metric labels, values, timestamps)."""
        http_get(self.url("/internal/force_flush"))  # make just-ingested rows searchable
        q = urllib.parse.urlencode({"match[]": match})
        status, body = http_get(self.url("/api/v1/export?" + q))
        if status != 200:
            raise ReceiverError(f"victoria-metrics export: {status} {body[:200]!r}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def wait_until(fn: Callable[[], Any], timeout: float = 15.0, every: float = 0.2) -> Any:
    """Poll ``fn`` until it returns something truthy (receivers make data visible a little
    after they accept it); returns the last value."""
    end = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < end:
        time.sleep(every)
        value = fn()
    return value


def main(argv: list[str]) -> int:
    """``python receivers.py up``: start all four, print their URLs as JSON, stop on TERM/INT."""
    if argv[1:2] != ["up"]:
        print("usage: receivers.py up", file=sys.stderr)
        return 2
    tf = Path(tempfile.mkdtemp(prefix="retryx-textfile-"))
    started: list[Receiver] = []
    try:
        for r in (Pushgateway(), Prometheus(), NodeExporter(tf), VictoriaMetrics()):
            started.append(r.start())
        print(json.dumps({r.kind: r.base for r in started} | {"textfile_dir": str(tf)}),
              flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        for r in started:
            r.stop()
        shutil.rmtree(tf, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main(sys.argv))
