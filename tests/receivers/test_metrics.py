"""The figures retryx sends, checked against the records they come from: a real session of five
operations (run, retried and finalized through the binary) notified by the module's
`action: notify` to the Datadog mock, the real Pushgateway, the node_exporter textfile and a
webhook, which must all carry the session's `final_statistics`; a session that ended hours ago
(sent as of now, accepted by real Prometheus remote write); `retryx notify test` writing only its
own series and removing it; Datadog's tag limit. Every network target is on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import DD_KEY
from receivers import wait_until

# (operation, attempts it uses, succeeds on the last?): retries 0+1+2+1+0 = 4, 1 failed.
SESSION_OPS = [("op_a", 1, True), ("op_b", 2, True), ("op_c", 3, True), ("op_d", 2, False),
               ("op_e", 1, True)]

# The Prometheus family of each of the seed's 13 statistics (src/sinks/metrics.rs).
PROM_OF = {
    "total_operations": "retryx_session_operations",
    "successful_operations": "retryx_session_successful_operations",
    "failed_operations": "retryx_session_failed_operations",
    "retried_operations": "retryx_session_retried_operations",
    "total_retry_attempts": "retryx_session_retry_attempts",
    "average_retry_count": "retryx_session_average_retry_count",
    "max_retry_count": "retryx_session_max_retry_count",
    "total_execution_time": "retryx_session_execution_time_seconds",
    "average_execution_time": "retryx_session_average_execution_time_seconds",
    "success_rate": "retryx_session_success_rate_percent",
    "failure_rate": "retryx_session_failure_rate_percent",
    "retry_rate": "retryx_session_retry_rate_percent",
    "operations_per_minute": "retryx_session_operations_per_minute",
}


def dd_sys(mock, **kw):
    return {"name": "datadog", "type": "datadog", "url": mock.base,
            "auth_header": f"DD-API-KEY {DD_KEY}", **kw}


def run(retryx_bin, *args, check=True):
    proc = subprocess.run([str(retryx_bin), *map(str, args)], capture_output=True, text=True,
                          timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def finalized_session(retryx_bin, tmp_path: Path) -> tuple[str, dict, Path]:
    """Runs SESSION_OPS into one session, finalizes it; returns (id, record, artifacts dir)."""
    art = tmp_path / "records"
    session = None
    for i, (name, attempts, ok) in enumerate(SESSION_OPS):
        count = tmp_path / f"{name}.n"
        script = (f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; "
                  f"[ $n -ge {attempts} ] && [ {str(ok).lower()} = true ] && exit 0; "
                  "echo 'service unavailable' >&2; exit 3")
        out = tmp_path / f"{name}.json"
        join = ["--keep-open"] if session is None else ["--session-id", session]
        proc = run(retryx_bin, "-n", attempts, "-d", "10ms", "-j", "none", "--operation", name,
                   "--artifacts-dir", art, "--result-json", out, *join, "--", "sh", "-c",
                   script, check=False)
        assert (proc.returncode == 0) == ok, proc.stderr
        result = json.loads(out.read_text())
        assert result["retry"]["attempt_count"] == attempts
        session = session or result["retry"]["session_id"]
    run(retryx_bin, "session", "finalize", session, "--artifacts-dir", art)
    record = json.loads((art / f"retry_session_{session}.json").read_text())
    return session, record, art


def module_notify(retryx_bin, tmp_path, args: dict) -> dict:
    p = tmp_path / f"args_{time.monotonic_ns()}.json"
    p.write_text(json.dumps({"action": "notify", "notify_kind": "metrics", **args}))
    proc = run(retryx_bin, p, check=False)
    return json.loads(proc.stdout)


def samples(text: str, selector: str) -> dict[str, float]:
    """``name -> value`` of the exposition lines whose labels contain ``selector``."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or selector not in line:
            continue
        name, rest = line.split("{", 1)
        out[name] = float(rest.rsplit(" ", 1)[1])
    return out


def test_session_figures_agree_across_every_sink(retryx_bin, tmp_path, mock, pushgateway,
                                                 node_exporter):
    session, record, art = finalized_session(retryx_bin, tmp_path)
    stats = record["final_statistics"]
    assert (stats["total_operations"], stats["total_retry_attempts"],
            stats["failed_operations"], stats["retried_operations"]) == (5, 4, 1, 3), stats
    systems = [
        dd_sys(mock),
        {"name": "pushgateway", "url": pushgateway.base + "/metrics/job/retryx"},
        {"name": "node", "textfile_dir": str(node_exporter.textfile_dir)},
        {"name": "hook", "type": "webhook", "url": mock.base + "/hook/session"},
    ]
    res = module_notify(retryx_bin, tmp_path, {"session_id": session, "artifacts_dir": str(art),
                                               "external_systems": systems})
    assert res["failed"] is False, res
    assert {n["system"]: n["status"] for n in res["retry"]["notifications"]} == {
        "datadog": "sent", "pushgateway": "sent", "node": "sent", "hook": "sent"}, res

    (series,) = mock.seen("datadog_series")
    assert series.problems == [] and series.status == 202
    dd = {s["metric"]: s for s in series.json["series"]}
    assert set(dd) == {f"retry.session.{k}" for k in PROM_OF}
    now = time.time()
    for stat in PROM_OF:
        point = dd[f"retry.session.{stat}"]["points"][0]
        assert point["value"] == stats[stat], stat
        assert abs(point["timestamp"] - now) < 120
        assert not any(t.startswith("session:") for t in dd[f"retry.session.{stat}"]["tags"])

    (group,) = [g for g in pushgateway.metrics() if g["labels"].get("operation") == "session"]
    for stat, prom in PROM_OF.items():
        assert float(group[prom]["metrics"][0]["value"]) == stats[stat], prom

    scraped = node_exporter.scrape()
    got = samples(scraped, 'operation="session"')
    for stat, prom in PROM_OF.items():
        assert got.get(prom) == stats[stat], (prom, got)
    # The session is not an operation: no counter of runs bumped by it.
    assert 'retryx_operations_total{operation="session"' not in scraped
    assert 'retryx_retries_total{operation="session"' not in scraped

    (hook,) = mock.seen("webhook")
    assert hook.json["session_id"] == session
    for stat in PROM_OF:
        assert hook.json["metrics"][f"session.{stat}"] == stats[stat], stat
        assert hook.json["final_statistics"][stat] == stats[stat], stat


def test_a_session_that_ended_hours_ago_is_sent_as_of_now(retryx_bin, tmp_path, mock, prometheus):
    # A fresh sample first, so Prometheus' head is at "now" and older samples are out of bounds.
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"external_systems": [
        {"name": "prometheus", "url": prometheus.url("/api/v1/write")}]}))
    out = tmp_path / "fresh.json"
    run(retryx_bin, "-n", "1", "--operation", "fresh_op", "-c", cfg, "--result-json", out, "--",
        "true")
    assert json.loads(out.read_text())["retry"]["notifications"][0]["status"] == "sent"

    session, record, art = finalized_session(retryx_bin, tmp_path)
    ended = datetime.now(timezone.utc) - timedelta(hours=3)
    record["session_start"] = (ended - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    record["session_end"] = ended.strftime("%Y-%m-%dT%H:%M:%SZ")
    (art / f"retry_session_{session}.json").write_text(json.dumps(record))
    systems = [dd_sys(mock), {"name": "prometheus", "url": prometheus.url("/api/v1/write"),
                              "job": "old_session"}]
    res = module_notify(retryx_bin, tmp_path, {"session_id": session, "artifacts_dir": str(art),
                                               "external_systems": systems})
    by = {n["system"]: n for n in res["retry"]["notifications"]}
    assert by["datadog"]["status"] == "sent", by
    assert (by["prometheus"]["status"], by["prometheus"]["http_status"]) == ("sent", 204), by
    now = time.time()
    (series,) = mock.seen("datadog_series")
    for s in series.json["series"]:
        assert abs(s["points"][0]["timestamp"] - now) < 120, s
    rows = wait_until(lambda: prometheus.query('retryx_session_retry_attempts{job="old_session"}'))
    assert rows, "the session's figures are not in Prometheus"
    ts, value = rows[0]["value"]
    assert float(value) == record["final_statistics"]["total_retry_attempts"]


def test_notify_test_writes_its_own_series_and_removes_it(retryx_bin, tmp_path, mock, pushgateway,
                                                         node_exporter, prometheus):
    tf = node_exporter.textfile_dir
    real = [{"name": "pushgateway", "url": pushgateway.base + "/metrics/job/retryx"},
            {"name": "node", "textfile_dir": str(tf)}]
    cfg = tmp_path / "real.json"
    cfg.write_text(json.dumps({"external_systems": real}))
    run(retryx_bin, "-n", "1", "--operation", "real_op", "-c", cfg, "--", "true")
    groups_before = sorted(json.dumps(g, sort_keys=True) for g in pushgateway.metrics())
    textfile_before = (tf / "retryx.prom").read_bytes()

    test_cfg = tmp_path / "test.json"
    test_cfg.write_text(json.dumps({"external_systems": real + [
        dd_sys(mock),
        {"name": "prometheus", "url": prometheus.url("/api/v1/write")},
    ]}))
    proc = run(retryx_bin, "notify", "test", "--json", "--config", test_cfg)
    by = {n["system"]: n for n in json.loads(proc.stdout)}
    assert all(n["status"] == "sent" for n in by.values()), by
    pg = by["pushgateway"]
    # the target shows scheme, host and port only; the note names the test group
    assert pg["target"] == "PUT " + pushgateway.base, pg
    assert "deleted" in pg["note"] and "job retryx_notify_test" in pg["note"], pg
    assert "retryx_notify_test" in by["node"]["note"] and "removed" in by["node"]["note"]
    assert "delete_series" in by["prometheus"]["note"], by["prometheus"]
    assert "retryx.notify_test" in by["datadog"]["note"], by["datadog"]

    # Nothing of the real series touched, nothing of the test left behind.
    groups_after = sorted(json.dumps(g, sort_keys=True) for g in pushgateway.metrics())
    assert groups_after == groups_before
    assert not [g for g in pushgateway.metrics() if g["labels"].get("job") == "retryx_notify_test"]
    assert (tf / "retryx.prom").read_bytes() == textfile_before
    assert not list(tf.glob("*notify_test*"))
    (series,) = mock.seen("datadog_series")
    assert [s["metric"] for s in series.json["series"]] == ["retryx.notify_test"]
    rows = wait_until(lambda: prometheus.query('retryx_notify_test{job="retryx_notify_test"}'))
    assert rows and rows[0]["value"][1] == "1"
    assert not prometheus.query('retryx_operation_attempts{job="retryx_notify_test"}')
    # The plain output says the same, one line per system.
    proc = run(retryx_bin, "notify", "test", "--config", test_cfg)
    assert "test group (job retryx_notify_test) deleted afterwards" in proc.stdout, proc.stdout
    assert "delete_series" in proc.stdout


def test_datadog_tags_are_cut_to_200_characters(retryx_bin, tmp_path, mock):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"external_systems": [dd_sys(mock, tags=["team:" + "t" * 300])]}))
    op = "deploy_" + "x" * 406  # a 413-character operation name
    run(retryx_bin, "-n", "1", "--operation", op, "-c", cfg, "--", "true")
    (series,) = mock.seen("datadog_series")
    assert series.problems == []
    for s in series.json["series"]:
        assert all(len(t) <= 200 for t in s["tags"]), s["tags"]
        assert any(t.startswith("operation:deploy_xxx") for t in s["tags"])
        assert any(t.startswith("team:ttt") for t in s["tags"])
