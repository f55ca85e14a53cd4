"""Self-checks of mock_services.py: it answers as Slack and Datadog do and its validators reject
what the real services reject, so the retryx tests that rely on it can fail. Talks only to the
mock on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.error
import urllib.request
import zlib

import pytest

from conftest import DD_KEY, SLACK_HOOK
from mock_services import Reply, closed_port, dd_error, rate_limited


def post(url, body, headers=None, method="POST", timeout=5.0):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def series_v2(ts=None):
    return {"series": [{"metric": "retry.attempts", "type": 1,
                        "points": [{"timestamp": ts or int(time.time()), "value": 3.0}],
                        "tags": ["operation:x"], "resources": [{"name": "h", "type": "host"}]}]}


def test_slack_ok_and_errors(mock):
    ok = {"text": "fallback", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "retryx"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*op* failed"},
         "fields": [{"type": "mrkdwn", "text": "*attempts*\n3"}]}]}
    assert post(mock.base + SLACK_HOOK, ok)[:2] == (200, "ok")
    assert post(mock.base + "/services/T0RETRYX1/B0GONE/g0neT0k3n", ok)[:2] == (404, "no_service")
    assert post(mock.base + "/services/T0RETRYX1/B0NOCHAN/n0chanT0k3n", ok)[:2] == (404, "channel_not_found")
    assert post(mock.base + "/services/T9/B9/unknown", ok)[:2] == (404, "no_service")
    assert post(mock.base + SLACK_HOOK, b"{not json")[:2] == (400, "invalid_payload")
    assert post(mock.base + SLACK_HOOK, {"username": "x"})[:2] == (400, "no_text")
    assert [r.status for r in mock.seen("slack")] == [200, 404, 404, 404, 400, 400]


@pytest.mark.parametrize("block", [
    {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
    {"type": "header", "text": {"type": "mrkdwn", "text": "h"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}},
    {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11},
    {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]},
    {"type": "section"},
    {"type": "no_such_block"},
])
def test_slack_rejects_invalid_blocks(mock, block):
    status, body, _ = post(mock.base + SLACK_HOOK, {"text": "t", "blocks": [block]})
    assert (status, body) == (400, "invalid_blocks")
    assert mock.seen("slack")[0].problems


def test_slack_rejects_more_than_50_blocks(mock):
    blocks = [{"type": "divider"}] * 51
    assert post(mock.base + SLACK_HOOK, {"text": "t", "blocks": blocks})[:2] == (400, "invalid_blocks")


def test_slack_rate_limit_script(mock):
    mock.script("/services/", rate_limited("slack", 7))
    status, body, headers = post(mock.base + SLACK_HOOK, {"text": "t"})
    assert (status, body, headers.get("Retry-After")) == (429, "rate_limited", "7")
    assert post(mock.base + SLACK_HOOK, {"text": "t"})[:2] == (200, "ok")


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
def test_datadog_series_v2_encodings(mock, encoding):
    raw = json.dumps(series_v2()).encode()
    body = {"identity": raw, "gzip": gzip.compress(raw), "deflate": zlib.compress(raw)}[encoding]
    status, text, _ = post(mock.base + "/api/v2/series", body,
                           {"DD-API-KEY": DD_KEY, "Content-Encoding": encoding})
    assert (status, json.loads(text)) == (202, {"errors": []})
    assert mock.seen("datadog_series")[0].json == series_v2(mock.seen("datadog_series")[0].json["series"][0]["points"][0]["timestamp"])


def test_datadog_auth_and_validation(mock):
    url = mock.base + "/api/v2/series"
    assert post(url, series_v2(), {"DD-API-KEY": "wrong"})[:2] == (403, '{"errors": ["Forbidden"]}')
    assert post(url, series_v2())[0] == 403
    bad = [
        {"series": [{"metric": "m"}]},                                            # no points
        {"series": [{"metric": "m", "points": [{"timestamp": "x", "value": 1}]}]},  # bad type
        {"series": [{"metric": "m", "type": 9, "points": []}]},                     # bad enum
        {"series": [{"metric": "m", "points": [], "tgs": []}]},                     # unknown key
        {"serie": []},
    ]
    for b in bad:
        status, text, _ = post(url, b, {"DD-API-KEY": DD_KEY})
        assert status == 400, b
        assert json.loads(text)["errors"]
    assert post(url, b"\x1f\x8bnot gzip", {"DD-API-KEY": DD_KEY, "Content-Encoding": "gzip"})[0] == 400


def test_datadog_v1_series_and_events(mock):
    v1 = {"series": [{"metric": "retry.attempts", "type": "count", "host": "h",
                      "points": [[int(time.time()), 3]], "tags": ["a:b"]}]}
    assert post(mock.base + "/api/v1/series", v1, {"DD-API-KEY": DD_KEY})[:2] == (202, '{"status": "ok"}')
    v1["series"][0]["points"] = [[1, 2, 3]]
    assert post(mock.base + "/api/v1/series", v1, {"DD-API-KEY": DD_KEY})[0] == 400
    ev = {"title": "retry failed", "text": "x", "alert_type": "error", "aggregation_key": "k"}
    status, text, _ = post(mock.base + "/api/v1/events", ev, {"DD-API-KEY": DD_KEY})
    assert status == 202 and json.loads(text)["event"]["title"] == "retry failed"
    for bad in ({**ev, "text": "x" * 4001}, {**ev, "alert_type": "bogus"},
                {**ev, "aggregation_key": "k" * 101}, {"text": "no title"}):
        assert post(mock.base + "/api/v1/events", bad, {"DD-API-KEY": DD_KEY})[0] == 400, bad


def test_datadog_too_large(mock):
    mock.dd_max_compressed = 100
    status, text, _ = post(mock.base + "/api/v2/series", series_v2(), {"DD-API-KEY": DD_KEY})
    assert (status, json.loads(text)) == (413, {"errors": ["Payload too large"]})


def test_sequence_500_then_200_and_429(mock):
    mock.script("/api/v2/series", dd_error(500, "Internal Server Error"), rate_limited("datadog", 1))
    url = mock.base + "/api/v2/series"
    assert post(url, series_v2(), {"DD-API-KEY": DD_KEY})[0] == 500
    status, _, headers = post(url, series_v2(), {"DD-API-KEY": DD_KEY})
    assert (status, headers.get("Retry-After")) == (429, "1")
    assert post(url, series_v2(), {"DD-API-KEY": DD_KEY})[0] == 202
    assert [r.status for r in mock.seen("datadog_series")] == [500, 429, 202]


def test_hang_is_bounded_by_client_timeout(mock):
    mock.script("/hook/", Reply(hang=True))
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        post(mock.base + "/hook/x", {"a": 1}, timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert len(mock.seen("webhook")) == 1


def test_closed_port_refuses():
    with pytest.raises(urllib.error.URLError) as err:
        post(f"http://127.0.0.1:{closed_port()}/hook/x", {"a": 1})
    assert isinstance(err.value.reason, ConnectionRefusedError)
