"""End-to-end tests of retryx notifications: the built binary (CLI runs, `retryx notify test`,
module `action: notify`) against the real receivers (Pushgateway, Prometheus remote write,
node_exporter textfile, VictoriaMetrics' Datadog intake) and the Slack/Datadog mocks, plus the
fault cases (refused, hanging, 500-then-200, 429 with Retry-After, 400). Every network target is
on 127.0.0.1. Timing is asserted only as generous bounds on real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DD_KEY, REPO, SLACK_HOOK
from mock_services import Reply, closed_port, dd_error, rate_limited, slack_reply
from receivers import wait_until

BEARER = "Bearer rw-t0k3n-abcdef123456"
SECRETS = [SLACK_HOOK.rsplit("/", 1)[1], DD_KEY, "rw-t0k3n-abcdef123456"]
FAIL_CMD = ["sh", "-c", "echo 'connection refused by db01' >&2; exit 3"]


def write_config(tmp_path: Path, systems: list[dict], **extra) -> Path:
    p = tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*')))}.json"
    p.write_text(json.dumps({"external_systems": systems, **extra}))
    return p


def run_op(retryx_bin, tmp_path, cfg, cmd=FAIL_CMD, operation="deploy_app", attempts=2, timeout=60,
           env=None):
    out = tmp_path / f"result_{time.monotonic_ns()}.json"
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(retryx_bin), "-n", str(attempts), "-d", "10ms", "-j", "none", "--operation", operation,
         "-c", str(cfg), "--result-json", str(out), "--", *cmd],
        capture_output=True, text=True, timeout=timeout, env=env)
    elapsed = time.monotonic() - t0
    result = json.loads(out.read_text())
    return proc, result, elapsed


def notif(result: dict, name: str) -> dict:
    found = [n for n in result["retry"]["notifications"] if n["system"] == name]
    assert len(found) == 1, result["retry"]["notifications"]
    return found[0]


def assert_no_secrets(*texts: str) -> None:
    for t in texts:
        for s in SECRETS:
            assert s not in t, f"secret {s[:6]}… leaked"


def assert_failed_op_intact(proc, result):
    assert proc.returncode == 3
    assert result["rc"] == 3 and result["failed"] is True
    assert result["retry"]["status"] == "failed"
    assert result["retry"]["attempt_count"] == 2


def slack_sys(mock, **kw):
    return {"name": "slack_alerts", "url": mock.base + SLACK_HOOK, "method": "POST", **kw}


def dd_sys(mock, **kw):
    return {"name": "datadog", "type": "datadog", "url": mock.base,
            "auth_header": f"DD-API-KEY {DD_KEY}", **kw}


# ------------------------------------------------------------------ payloads and receivers


def test_failed_run_notifies_slack_datadog_events_and_webhook(retryx_bin, tmp_path, mock):
    cfg = write_config(tmp_path, [
        slack_sys(mock),
        dd_sys(mock),
        {"name": "dd_events", "url": mock.base + "/api/v1/events",
         "auth_header": f"DD-API-KEY {DD_KEY}"},
        {"name": "ops_hook", "url": mock.base + "/hook/retryx", "auth_header": BEARER},
    ])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg)
    assert_failed_op_intact(proc, result)
    for name in ("slack_alerts", "datadog", "dd_events", "ops_hook"):
        n = notif(result, name)
        assert (n["status"], n["attempts"], n["error"]) == ("sent", 1, None), n
    assert notif(result, "slack_alerts")["inferred"] is True
    assert notif(result, "dd_events")["kind"] == "datadog_events"
    assert notif(result, "ops_hook")["kind"] == "webhook"
    assert notif(result, "datadog")["inferred"] is False

    (slack,) = mock.seen("slack")
    assert slack.problems == [] and slack.status == 200
    body = slack.json
    assert "deploy_app" in body["text"] and "failed" in body["text"]
    flat = json.dumps(body["blocks"])
    session = result["retry"]["session_id"]
    for want in ("deploy_app", "*Status*\\nfailed", "*Attempts*\\n2 / 2", "connection_error",
                 "connection refused by db01", session, "*Host*"):
        assert want in flat, want

    (series,) = mock.seen("datadog_series")
    assert series.problems == [] and series.status == 202
    assert series.header("Content-Encoding") == "gzip"
    names = {s["metric"] for s in series.json["series"]}
    assert names == {"retry.attempts", "retry.retries", "retry.duration", "retry.success",
                     "retry.operations"}
    by_name = {s["metric"]: s for s in series.json["series"]}
    assert by_name["retry.attempts"]["points"][0]["value"] == 2
    assert by_name["retry.success"]["points"][0]["value"] == 0
    tags = by_name["retry.attempts"]["tags"]
    for prefix in ("operation:deploy_app", "status:failed", "host:"):
        assert any(t.startswith(prefix) for t in tags), (prefix, tags)
    # The session tag is opt-in (session_tag: true): a new value each run.
    assert not any(t.startswith("session:") for t in tags), tags

    (event,) = mock.seen("datadog_events")
    assert event.problems == []
    assert event.json["alert_type"] == "error"
    assert event.json["aggregation_key"] == "retryx:deploy_app"

    (hook,) = mock.seen("webhook")
    assert hook.header("Authorization") == BEARER
    assert hook.json["operation_name"] == "deploy_app"
    assert hook.json["status"] == "failed"
    assert len(hook.json["attempts"]) == 2
    # The same figures as Datadog's, from the same table.
    assert set(hook.json["metrics"]) == {"attempts", "retries", "duration", "success", "operations"}
    for name, value in hook.json["metrics"].items():
        assert by_name[f"retry.{name}"]["points"][0]["value"] == value, name
    assert (hook.json["metrics"]["retries"], hook.json["metrics"]["operations"]) == (1, 1)
    assert_no_secrets(json.dumps(result), proc.stderr)


def test_slack_payload_stays_valid_with_huge_values(retryx_bin, tmp_path, mock):
    cfg = write_config(tmp_path, [slack_sys(mock)])
    long_op = "op_" + "x" * 400
    cmd = ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' 'e' >&2; echo >&2; exit 3"]
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, cmd=cmd, operation=long_op)
    assert notif(result, "slack_alerts")["status"] == "sent"
    (req,) = mock.seen("slack")
    assert req.problems == [], req.problems
    header = req.json["blocks"][0]["text"]["text"]
    assert len(header) <= 150 and header.endswith("…")


def test_datadog_v1_deflate_and_site_url(retryx_bin, tmp_path, mock):
    cfg = write_config(tmp_path, [dd_sys(mock, api_version=1, compression="deflate")])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg)
    assert notif(result, "datadog")["status"] == "sent"
    (req,) = mock.seen("datadog_series")
    assert req.path == "/api/v1/series" and req.header("Content-Encoding") == "deflate"
    assert req.problems == []
    assert {s["type"] for s in req.json["series"]} == {"count", "gauge"}


def test_datadog_api_key_from_environment(retryx_bin, tmp_path, mock):
    system = {"name": "datadog", "url": "http://127.0.0.1:%d/api/v2/series" % mock.port}
    cfg = write_config(tmp_path, [system])
    env = {k: v for k, v in os.environ.items() if k != "DD_API_KEY"}
    _, result, _ = run_op(retryx_bin, tmp_path, cfg, env=env)
    n = notif(result, "datadog")
    assert (n["status"], n["attempts"]) == ("failed", 0), n
    assert "DD_API_KEY" in n["error"]
    assert mock.requests == []
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, env={**env, "DD_API_KEY": DD_KEY})
    n = notif(result, "datadog")
    assert (n["status"], n["http_status"], n["inferred"]) == ("sent", 202, True), n
    (req,) = mock.seen("datadog_series")
    assert req.header("DD-API-KEY") == DD_KEY and req.problems == []
    assert_no_secrets(json.dumps(result), proc.stderr)


def test_victoria_metrics_datadog_intake(retryx_bin, tmp_path, victoria):
    cfg = write_config(tmp_path, [{"name": "vm", "type": "datadog", "api_version": 1,
                                   "session_tag": True, "url": victoria.datadog_base,
                                   "auth_header": f"DD-API-KEY {DD_KEY}"}])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, operation="vm_check")
    n = notif(result, "vm")
    assert (n["status"], n["http_status"]) == ("sent", 202), n
    rows = wait_until(lambda: victoria.export('{__name__="retry.attempts",operation="vm_check"}'))
    assert rows, "no retry.attempts in VictoriaMetrics"
    assert rows[0]["values"] == [2]
    assert rows[0]["metric"]["status"] == "failed"
    assert rows[0]["metric"]["session"] == result["retry"]["session_id"]


def test_pushgateway_grouping_key_and_readback(retryx_bin, tmp_path, pushgateway):
    cfg = write_config(tmp_path, [{"name": "pushgateway", "url": pushgateway.base,
                                   "method": "POST", "job": "batch/nightly"}])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, operation="deploy/web")
    n = notif(result, "pushgateway")
    assert n["kind"] == "prometheus_pushgateway" and n["status"] == "sent", n
    # Scheme, host and port only (a grouping key shows the operation; the readback checks it).
    assert n["target"] == "POST " + pushgateway.base.rstrip("/"), n
    groups = pushgateway.metrics()
    (g,) = [g for g in groups if g["labels"].get("operation") == "deploy/web"]
    assert g["labels"]["job"] == "batch/nightly"
    assert g["retryx_operation_attempts"]["metrics"][0]["value"] == "2"
    assert g["retryx_operation_success"]["metrics"][0]["value"] == "0"
    attempts = g["retryx_attempt_duration_seconds"]["metrics"]
    assert sorted(m["labels"]["attempt"] for m in attempts) == ["1", "2"]


def test_pushgateway_body_passes_promtool(retryx_bin, tmp_path, mock):
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing (apt package prometheus)")
    cfg = write_config(tmp_path, [{"name": "pg", "type": "prometheus_pushgateway",
                                   "url": mock.base + "/capture"}])
    run_op(retryx_bin, tmp_path, cfg)
    (req,) = mock.seen("capture")
    assert req.method == "PUT"  # the group is replaced whole
    text = req.raw.decode()
    assert text.endswith("\n") and "# TYPE retryx_operation_attempts gauge" in text
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_remote_write_to_prometheus(retryx_bin, tmp_path, prometheus, mock):
    cfg = write_config(tmp_path, [
        {"name": "prometheus", "url": prometheus.url("/api/v1/write"), "auth_header": BEARER},
        {"name": "rw_capture", "type": "prometheus_remote_write", "url": mock.base + "/capture/rw"},
    ])
    cmd = ["sh", "-c", "sleep 0.05; exit 3"]
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, cmd=cmd, operation="rw_op", attempts=3)
    n = notif(result, "prometheus")
    assert (n["kind"], n["status"], n["http_status"]) == ("prometheus_remote_write", "sent", 204), n
    (req,) = mock.seen("capture")
    assert req.header("Content-Encoding") == "snappy"
    assert req.header("Content-Type") == "application/x-protobuf"
    assert req.header("X-Prometheus-Remote-Write-Version") == "0.1.0"
    series = wait_until(lambda: prometheus.query('retryx_operation_attempts{operation="rw_op"}[1h]'))
    assert series, "no samples in Prometheus"
    values = series[0]["values"]
    assert [v for _, v in values] == ["1", "2", "3"]
    assert [t for t, _ in values] == sorted(t for t, _ in values)
    assert series[0]["metric"]["job"] == "retryx"
    ok = prometheus.query('retryx_operation_success{operation="rw_op"}[1h]')
    assert ok and ok[0]["values"][-1][1] == "0"


def test_textfile_for_node_exporter(retryx_bin, tmp_path, node_exporter):
    d = node_exporter.textfile_dir
    cfg = write_config(tmp_path, [{"name": "node", "textfile_dir": str(d)}])
    run_op(retryx_bin, tmp_path, cfg, operation="tf_op")
    run_op(retryx_bin, tmp_path, cfg, operation="tf_op")
    run_op(retryx_bin, tmp_path, cfg, cmd=["true"], operation="tf_other", attempts=1)
    files = sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
    assert files == ["retryx.prom"]
    assert not list(d.glob("*.tmp"))
    text = (d / "retryx.prom").read_text()
    assert 'retryx_attempts_total{operation="tf_op"} 4\n' in text
    assert 'retryx_operations_total{operation="tf_op",status="failed"} 2\n' in text
    assert 'retryx_operation_success{operation="tf_other"} 1\n' in text
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    scraped = node_exporter.scrape()
    assert 'retryx_attempts_total{operation="tf_op"} 4' in scraped
    assert 'node_textfile_scrape_error 0' in scraped


def test_notify_test_command_prints_each_answer(retryx_bin, tmp_path, mock, pushgateway):
    cfg = write_config(tmp_path, [
        slack_sys(mock),
        dd_sys(mock),
        {"name": "gone", "url": mock.base + "/services/T0RETRYX1/B0GONE/g0neT0k3n"},
        {"name": "pg", "url": pushgateway.base + "/metrics/job/retryx"},
        {"name": "off", "url": mock.base + "/hook/off", "enabled": False},
    ])
    proc = subprocess.run([str(retryx_bin), "notify", "test", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1  # one system failed
    assert any(l.startswith("slack_alerts (slack") and 'sent HTTP 200 "ok"' in l for l in lines), lines
    assert any(l.startswith("datadog (datadog)") and "sent HTTP 202" in l for l in lines), lines
    assert any(l.startswith("gone (slack") and "HTTP 404" in l and "no_service" in l
               for l in lines), lines
    assert any(l.startswith("pg (prometheus_pushgateway, inferred from url path /metrics/job/)")
               for l in lines), lines
    assert any(l.startswith("off (webhook") and ": disabled" in l for l in lines), lines
    assert_no_secrets(proc.stdout, proc.stderr, "g0neT0k3n")
    assert "g0neT0k3n" not in proc.stdout
    assert len(mock.seen("slack")) == 2 and not mock.seen("webhook")


def test_external_integration_false_sends_nothing(retryx_bin, tmp_path, mock):
    cfg = write_config(tmp_path, [slack_sys(mock), dd_sys(mock)], external_integration=False)
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg)
    assert_failed_op_intact(proc, result)
    assert result["retry"]["notifications"] == []
    assert mock.requests == []


def test_notify_on_success_only(retryx_bin, tmp_path, mock):
    cfg = write_config(tmp_path, [slack_sys(mock, notify_on=["success"]),
                                  {"name": "hook", "url": mock.base + "/hook/x"}])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, cmd=["true"], attempts=1)
    assert proc.returncode == 0
    assert notif(result, "slack_alerts")["status"] == "sent"
    assert notif(result, "hook")["status"] == "skipped"  # default: failure and alert
    assert len(mock.seen("slack")) == 1 and not mock.seen("webhook")


# -------------------------------------------------------------------------------- faults


def test_refused_connection_is_retried_and_reported(retryx_bin, tmp_path):
    port = closed_port()
    cfg = write_config(tmp_path, [{"name": "slack_alerts",
                                   "url": f"http://127.0.0.1:{port}{SLACK_HOOK}",
                                   "retry_count": 2, "retry_delay": "100ms"}])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg)
    assert_failed_op_intact(proc, result)
    n = notif(result, "slack_alerts")
    assert (n["status"], n["http_status"], n["attempts"]) == ("failed", None, 3), n
    assert "refused" in n["error"] or "connection" in n["error"]
    assert "notification failed" in proc.stderr and "system=slack_alerts" in proc.stderr
    assert_no_secrets(json.dumps(result), proc.stderr)


def test_success_survives_a_dead_receiver(retryx_bin, tmp_path):
    cfg = write_config(tmp_path, [{"name": "hook", "url": f"http://127.0.0.1:{closed_port()}/hook",
                                   "notify_on": ["success"], "retry_count": 0}])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, cmd=["true"], attempts=1)
    assert proc.returncode == 0 and result["failed"] is False and result["rc"] == 0
    assert notif(result, "hook")["status"] == "failed"


def test_hanging_receiver_is_bounded_by_timeout(retryx_bin, tmp_path, mock):
    mock.script("/hook/", Reply(hang=True))
    cfg = write_config(tmp_path, [{"name": "hook", "url": mock.base + "/hook/hang",
                                   "timeout": 1, "retry_count": 0}])
    proc, result, elapsed = run_op(retryx_bin, tmp_path, cfg)
    assert_failed_op_intact(proc, result)
    n = notif(result, "hook")
    assert (n["status"], n["attempts"], n["http_status"]) == ("failed", 1, None), n
    assert "timed out" in n["error"]
    assert 0.9 <= n["duration"] < 5
    assert elapsed < 15


def test_total_notification_time_is_bounded(retryx_bin, tmp_path, mock):
    mock.script("/hook/", *[Reply(hang=True)] * 5)
    cfg = write_config(tmp_path, [{"name": "hook", "url": mock.base + "/hook/hang",
                                   "timeout": 10, "retry_count": 4, "retry_delay": "100ms"}],
                       notification_timeout=2)
    proc, result, elapsed = run_op(retryx_bin, tmp_path, cfg)
    assert_failed_op_intact(proc, result)
    n = notif(result, "hook")
    assert n["status"] == "failed" and n["duration"] < 4, n
    assert elapsed < 15


def test_500_then_200_is_retried(retryx_bin, tmp_path, mock):
    mock.script("/api/v2/series", dd_error(500, "Internal Server Error"))
    cfg = write_config(tmp_path, [dd_sys(mock, retry_count=2, retry_delay="200ms")])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg)
    assert_failed_op_intact(proc, result)
    n = notif(result, "datadog")
    assert (n["status"], n["attempts"], n["http_status"], n["error"]) == ("sent", 2, 202, None), n
    assert [r.status for r in mock.seen("datadog_series")] == [500, 202]


def test_429_waits_for_retry_after(retryx_bin, tmp_path, mock):
    mock.script("/services/", rate_limited("slack", 1))
    cfg = write_config(tmp_path, [slack_sys(mock, retry_count=2, retry_delay="50ms")])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg)
    n = notif(result, "slack_alerts")
    assert (n["status"], n["attempts"], n["http_status"]) == ("sent", 2, 200), n
    first, second = mock.seen("slack")
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.9, second.at - first.at


@pytest.mark.parametrize("kind,path,reply,want", [
    ("datadog", "/api/v2/series", dd_error(400, "Payload is not in the expected format"), 400),
    ("datadog", "/api/v2/series", dd_error(403, "Forbidden"), 403),
    ("datadog", "/api/v2/series", dd_error(413, "Payload too large"), 413),
    ("slack", "/services/", slack_reply("invalid_payload"), 400),
    ("slack", "/services/", slack_reply("channel_not_found"), 404),
])
def test_client_errors_are_not_retried(retryx_bin, tmp_path, mock, kind, path, reply, want):
    mock.script(path, reply)
    system = dd_sys(mock, retry_count=3) if kind == "datadog" else slack_sys(mock, retry_count=3)
    cfg = write_config(tmp_path, [system])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg)
    assert_failed_op_intact(proc, result)
    n = notif(result, system["name"])
    assert (n["status"], n["attempts"], n["http_status"]) == ("failed", 1, want), n
    assert str(want) in n["error"]
    body = reply.body if isinstance(reply.body, str) else reply.body.decode()
    if kind == "slack":
        assert n["response"] == body
    else:
        assert json.loads(body)["errors"][0] in n["error"]


def test_required_system_failure_fails_the_result(retryx_bin, tmp_path, mock):
    mock.script("/hook/", Reply(400, "bad"))
    cfg = write_config(tmp_path, [{"name": "audit", "url": mock.base + "/hook/audit",
                                   "required": True, "notify_on": ["success", "failure"]}])
    proc, result, _ = run_op(retryx_bin, tmp_path, cfg, cmd=["true"], attempts=1)
    assert result["rc"] == 0
    assert result["failed"] is True and "required notification failed: audit" in result["msg"]
    assert proc.returncode != 0


# ------------------------------------------------------------------------------ module


def run_module(retryx_bin, tmp_path, args: dict) -> dict:
    p = tmp_path / f"args_{time.monotonic_ns()}.json"
    p.write_text(json.dumps(args))
    proc = subprocess.run([str(retryx_bin), str(p)], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout)


def test_module_action_notify_metrics_and_alerts(retryx_bin, tmp_path, mock):
    session = "retry_1700000000_abcdef"
    art = tmp_path / "artifacts"
    art.mkdir()
    (art / f"retry_session_{session}.json").write_text(json.dumps({
        "session_id": session, "session_status": "completed",
        "session_start": "2026-01-21T15:00:00Z", "session_end": "2026-01-21T15:05:30Z",
        "session_duration": 330,
        "final_statistics": {"total_operations": 5, "successful_operations": 4,
                             "failed_operations": 1, "total_retry_attempts": 3,
                             "success_rate": 80.0},
        "alerts": [{"name": "min_success_rate", "message": "success rate 80.0% < 85%",
                    "severity": "warning"}],
    }))
    systems = [slack_sys(mock), dd_sys(mock)]
    base = {"action": "notify", "session_id": session, "artifacts_dir": str(art),
            "external_systems": systems}
    res = run_module(retryx_bin, tmp_path, {**base, "notify_kind": "metrics"})
    assert res["failed"] is False and res["changed"] is True, res
    statuses = {n["system"]: n["status"] for n in res["retry"]["notifications"]}
    assert statuses == {"slack_alerts": "skipped", "datadog": "sent"}
    (series,) = mock.seen("datadog_series")
    ops = [s for s in series.json["series"] if s["metric"] == "retry.session.total_operations"]
    assert ops[0]["points"][0]["value"] == 5
    res = run_module(retryx_bin, tmp_path, {**base, "notify_kind": "alerts"})
    statuses = {n["system"]: n["status"] for n in res["retry"]["notifications"]}
    assert statuses == {"slack_alerts": "sent", "datadog": "skipped"}
    (slack,) = mock.seen("slack")
    assert slack.problems == [] and "min_success_rate" in json.dumps(slack.json["blocks"])
    res = run_module(retryx_bin, tmp_path, {**base, "notify_kind": "metrics",
                                            "_ansible_check_mode": True})
    assert res.get("skipped") is True and len(mock.seen("datadog_series")) == 1
    res = run_module(retryx_bin, tmp_path, {**base, "session_id": "../etc", "notify_kind": "metrics"})
    assert res["failed"] is True
    assert_no_secrets(json.dumps(res))


# ------------------------------------------------------------------------- ansible-playbook

HANDLER_ARGS = """
        action: notify
        notify_kind: {kind}
        session_id: "{{{{ retry_session_id }}}}"
        artifacts_dir: "{{{{ retry_session_artifacts_dir }}}}"
        external_systems: "{{{{ retry_session_config.external_systems }}}}"
        monitoring: "{{{{ retry_session_config.monitoring }}}}"
"""


def test_role_handlers_through_ansible_playbook(retryx_bin, tmp_path, mock):
    """The role's two notification handlers run by ansible-playbook against the binary module:
    roles/retry_manager/handlers/main.yml imported as it is when the repository has it (or
    $RETRYX_ROLE_HANDLERS), else the same two handlers written inline. The session record is
    the seed's "Session Statistics" shape."""
    venv_bin = Path(sys.executable).parent
    playbook_bin = shutil.which("ansible-playbook", path=f"{venv_bin}:{os.environ['PATH']}")
    if playbook_bin is None:
        pytest.fail("ansible-playbook missing (pip install ansible-core, see tests/requirements.txt)")
    library = tmp_path / "library"
    library.mkdir()
    (library / "retry_manager").symlink_to(retryx_bin)
    art = tmp_path / "artifacts"
    art.mkdir()
    session = "retry_1700000000_424242"
    (art / f"retry_session_{session}.json").write_text(json.dumps({
        "session_id": session, "session_status": "completed",
        "session_start": "2026-01-21T15:00:00Z", "session_end": "2026-01-21T15:05:30Z",
        "session_duration": 330,
        "final_statistics": {"total_operations": 5, "successful_operations": 4,
                             "failed_operations": 1, "total_retry_attempts": 3,
                             "average_retry_count": 0.6, "total_execution_time": 330,
                             "success_rate": 80.0, "failure_rate": 20.0},
    }))
    config = {
        "external_systems": [slack_sys(mock), dd_sys(mock, session_tag=True)],
        "monitoring": {"alerts": {"min_success_rate": 85, "max_average_retries": 2.5,
                                  "max_execution_time": 1800, "max_error_rate": 15}},
    }
    role_handlers = Path(os.environ.get("RETRYX_ROLE_HANDLERS",
                                        REPO / "roles/retry_manager/handlers/main.yml"))
    if role_handlers.is_file():
        # The role's own handler file, imported as it is.
        handlers = f"    - ansible.builtin.import_tasks: {role_handlers}"
    else:
        # Not on this branch yet: the same two handlers, written as the role writes them.
        handlers = f"""    - name: send retry metrics to external systems
      retry_manager:{HANDLER_ARGS.format(kind="metrics")}
    - name: send retry alerts
      retry_manager:{HANDLER_ARGS.format(kind="alerts")}"""
    play = f"""
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {sys.executable}
  tasks:
    - name: Session facts as the role leaves them for its handlers
      ansible.builtin.set_fact:
        retry_session_id: {session}
        retry_session_artifacts_dir: {art}
        retry_session_config: {json.dumps(config)}
      no_log: true
    - name: An operation that wants metrics and alerts sent
      ansible.builtin.command: "true"
      changed_when: true
      notify:
        - send retry metrics to external systems
        - send retry alerts
  handlers:
{handlers}
"""
    pb = tmp_path / "notify.yml"
    pb.write_text(play)
    env = {**os.environ, "ANSIBLE_LIBRARY": str(library), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_HOME": str(tmp_path / "ah"),
           "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
           "ANSIBLE_LOCALHOST_WARNING": "False"}
    proc = subprocess.run([playbook_bin, "-i", "localhost,", str(pb)], capture_output=True,
                          text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "failed=0" in proc.stdout
    (series,) = mock.seen("datadog_series")
    assert series.problems == []
    ops = [s for s in series.json["series"] if s["metric"] == "retry.session.total_operations"]
    assert ops[0]["points"][0]["value"] == 5
    assert f"session:{session}" in ops[0]["tags"]
    (slack,) = mock.seen("slack")
    assert slack.problems == []
    blocks = json.dumps(slack.json["blocks"])
    assert "min_success_rate" in blocks and "max_error_rate" in blocks
    assert "max_average_retries" not in blocks
    assert_no_secrets(proc.stdout, proc.stderr)
