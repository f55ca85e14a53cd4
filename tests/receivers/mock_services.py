"""Local stand-ins for Slack incoming webhooks and the Datadog intake (v2 series, v1 series,
v1 events) plus a generic JSON webhook, for the notification tests.

They answer as the real services do (status codes, bodies, 429 with Retry-After), validate every
payload (Slack blocks through ``slack_sdk.models.blocks`` plus Block Kit limits that slack_sdk does
not check; Datadog bodies decompressed per Content-Encoding and built strictly into
``datadog_api_client`` models), record every request for assertions, and can be scripted to fail
(an answer sequence such as 500-then-200, 429-then-200, a hang that never answers) or replaced by
a closed port (``closed_port()``).

Listens on 127.0.0.1 only and must never forward anything anywhere.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import signal
import socket
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from datadog_api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    ModelSimple,
    none_type,
)
from datadog_api_client.v1.model.event_create_request import EventCreateRequest
from datadog_api_client.v1.model.metrics_payload import MetricsPayload
from datadog_api_client.v2.model.metric_payload import MetricPayload
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

# Datadog documents these intake limits for metric submission.
DD_MAX_COMPRESSED = 512_000
DD_MAX_DECOMPRESSED = 5 * 1024 * 1024
# Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION_TEXT = 3000
SLACK_MAX_FIELD_TEXT = 2000
SLACK_MAX_HEADER_TEXT = 150
SLACK_MAX_FIELDS = 10
SLACK_MAX_BLOCK_ID = 255
SLACK_MAX_MESSAGE_TEXT = 40_000
SLACK_KNOWN_BLOCKS = {
    "actions", "context", "divider", "file", "header", "image", "input", "rich_text",
    "section", "video", "markdown",
}

# Slack incoming webhook answers: name -> (status, body). From Slack's "Handling errors" table.
SLACK_ERRORS = {
    "invalid_payload": 400,
    "no_text": 400,
    "invalid_blocks": 400,
    "too_many_attachments": 400,
    "no_service_id": 400,
    "no_team": 400,
    "action_prohibited": 403,
    "posting_to_general_channel_denied": 403,
    "invalid_token": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "team_disabled": 404,
    "channel_is_archived": 410,
}


class CaseInsensitive(dict):
    """Header dict whose ``get`` ignores the case of names (as HTTP does)."""

    def get(self, key, default=None):  # type: ignore[override]
        for k, v in self.items():
            if k.lower() == str(key).lower():
                return v
        return default


class DDInvalid(Exception):
    """A Datadog body that does not fit the API model."""


# --------------------------------------------------------------------------- Datadog models


def _check_validations(cls: type, attr: str, value: Any, path: str) -> None:
    rules = getattr(cls, "validations", {}).get(attr, {})
    if "max_length" in rules and isinstance(value, str) and len(value) > rules["max_length"]:
        raise DDInvalid(f"{path}: length must be <= {rules['max_length']}")
    if "min_length" in rules and isinstance(value, str) and len(value) < rules["min_length"]:
        raise DDInvalid(f"{path}: length must be >= {rules['min_length']}")
    if "max_items" in rules and isinstance(value, list) and len(value) > rules["max_items"]:
        raise DDInvalid(f"{path}: at most {rules['max_items']} items")
    if "min_items" in rules and isinstance(value, list) and len(value) < rules["min_items"]:
        raise DDInvalid(f"{path}: at least {rules['min_items']} items")
    if "inclusive_maximum" in rules and isinstance(value, (int, float)) and value > rules["inclusive_maximum"]:
        raise DDInvalid(f"{path}: must be <= {rules['inclusive_maximum']}")
    if "inclusive_minimum" in rules and isinstance(value, (int, float)) and value < rules["inclusive_minimum"]:
        raise DDInvalid(f"{path}: must be >= {rules['inclusive_minimum']}")


def _conform(types: tuple, value: Any, path: str) -> Any:
    first: DDInvalid | None = None
    for t in types:
        try:
            return _convert(t, value, path)
        except DDInvalid as err:
            first = first or err
    raise first or DDInvalid(f"{path}: no type")


def _convert(t: Any, v: Any, path: str) -> Any:
    if isinstance(t, list):
        if not isinstance(v, list):
            raise DDInvalid(f"{path}: expected a list")
        return [_conform(tuple(t), x, f"{path}[{i}]") for i, x in enumerate(v)]
    if isinstance(t, dict):
        if not isinstance(v, dict):
            raise DDInvalid(f"{path}: expected an object")
        (vt,) = t.values()
        return {k: _conform(vt, x, f"{path}.{k}") for k, x in v.items()}
    if t is none_type:
        if v is not None:
            raise DDInvalid(f"{path}: expected null")
        return v
    if t is bool:
        if not isinstance(v, bool):
            raise DDInvalid(f"{path}: expected a boolean")
        return v
    if t is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise DDInvalid(f"{path}: expected an integer, got {type(v).__name__}")
        return v
    if t is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DDInvalid(f"{path}: expected a number, got {type(v).__name__}")
        return float(v)
    if t is str:
        if not isinstance(v, str):
            raise DDInvalid(f"{path}: expected a string, got {type(v).__name__}")
        return v
    if inspect.isclass(t) and issubclass(t, ModelSimple):
        allowed = getattr(t, "allowed_values", None)
        if allowed:
            if isinstance(v, (list, dict)) or v not in allowed:
                raise DDInvalid(f"{path}: {v!r} not one of {sorted(allowed, key=str)}")
            return t(v)
        inner = t.openapi_types["value"]
        conv = _conform(inner, v, path)
        _check_validations(t, "value", v, path)
        return t(conv)
    if inspect.isclass(t) and issubclass(t, ModelComposed):
        schemas = t._composed_schemas.get("oneOf", [])
        return _conform(tuple(schemas), v, path)
    if inspect.isclass(t) and issubclass(t, ModelNormal):
        return build_model(t, v, path)
    raise DDInvalid(f"{path}: unsupported type {t!r}")


def build_model(cls: type, data: Any, path: str = "body") -> Any:
    """Build a datadog_api_client model from JSON, strictly: unknown keys, missing required
    keys, wrong types, enum values and length limits are all errors (the client's own
    deserializer lets nested mistakes through)."""
    if not isinstance(data, dict):
        raise DDInvalid(f"{path}: expected an object")
    by_json = {j: a for a, j in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise DDInvalid(f"{path}: unknown field(s) {unknown}")
    sig = inspect.signature(cls.__init__)
    required = [
        n for n, p in sig.parameters.items()
        if n not in ("self_", "self", "kwargs", "args") and p.default is inspect.Parameter.empty
    ]
    for r in required:
        if cls.attribute_map.get(r, r) not in data:
            raise DDInvalid(f"{path}: missing required field '{cls.attribute_map.get(r, r)}'")
    kwargs = {}
    for key, value in data.items():
        attr = by_json[key]
        sub = f"{path}.{key}"
        conv = _conform(cls.openapi_types[attr], value, sub)
        _check_validations(cls, attr, value, sub)
        kwargs[attr] = conv
    try:
        return cls(**kwargs)
    except Exception as err:  # the client's own checks (types, validations)
        raise DDInvalid(f"{path}: {err}") from err


# --------------------------------------------------------------------------- Slack blocks


def validate_slack(payload: Any) -> list[str]:
    """Problems Slack would reject an incoming-webhook payload for (empty list: valid)."""
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]
    problems: list[str] = []
    text = payload.get("text")
    blocks = payload.get("blocks")
    if text is None and not blocks and not payload.get("attachments"):
        problems.append("no_text")
    if text is not None and (not isinstance(text, str) or len(text) > SLACK_MAX_MESSAGE_TEXT):
        problems.append("text must be a string of at most 40000 characters")
    if blocks is None:
        return problems
    if not isinstance(blocks, list):
        return problems + ["blocks must be a list"]
    if len(blocks) > SLACK_MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {SLACK_MAX_BLOCKS}")
    for i, raw in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(raw, dict) or raw.get("type") not in SLACK_KNOWN_BLOCKS:
            problems.append(f"{where}: unknown block type")
            continue
        if len(str(raw.get("block_id", ""))) > SLACK_MAX_BLOCK_ID:
            problems.append(f"{where}: block_id > {SLACK_MAX_BLOCK_ID}")
        try:
            parsed = Block.parse(raw)
            if parsed is None:
                problems.append(f"{where}: slack_sdk could not parse it")
                continue
            parsed.to_dict()  # runs slack_sdk's validate_json (length limits it knows)
        except (SlackObjectFormationError, KeyError, TypeError, AttributeError) as err:
            problems.append(f"{where}: {err}")
            continue
        kind = raw["type"]
        if kind == "header":
            t = raw.get("text") or {}
            if t.get("type") != "plain_text":
                problems.append(f"{where}: header text must be plain_text")
            if len(t.get("text", "")) > SLACK_MAX_HEADER_TEXT:
                problems.append(f"{where}: header text > {SLACK_MAX_HEADER_TEXT}")
        if kind == "section":
            t = raw.get("text")
            if t is not None and len(t.get("text", "")) > SLACK_MAX_SECTION_TEXT:
                problems.append(f"{where}: section text > {SLACK_MAX_SECTION_TEXT}")
            fields = raw.get("fields") or []
            if len(fields) > SLACK_MAX_FIELDS:
                problems.append(f"{where}: more than {SLACK_MAX_FIELDS} fields")
            for j, f in enumerate(fields):
                if len(f.get("text", "")) > SLACK_MAX_FIELD_TEXT:
                    problems.append(f"{where}.fields[{j}]: text > {SLACK_MAX_FIELD_TEXT}")
            for t in ([t] if t else []) + list(fields):
                if not t.get("text"):
                    problems.append(f"{where}: empty text object")
    return problems


# --------------------------------------------------------------------------- server


@dataclass
class Reply:
    """One scripted answer. ``hang`` accepts the request and never answers (until the mock
    stops); ``delay`` waits before answering."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    delay: float = 0.0


@dataclass
class Request:
    """One request the mock saw."""

    kind: str
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: bytes | None
    json: Any
    problems: list[str]
    status: int
    reply: bytes
    at: float

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


def slack_reply(name: str) -> Reply:
    """The answer Slack gives for an error name (e.g. ``no_service``)."""
    return Reply(SLACK_ERRORS[name], name, {"Content-Type": "text/html"})


def rate_limited(kind: str, retry_after: int = 1) -> Reply:
    """429 as Slack (body ``rate_limited``) or Datadog (JSON errors) send it."""
    if kind == "slack":
        return Reply(429, "rate_limited", {"Retry-After": str(retry_after)})
    return Reply(429, json.dumps({"errors": ["Too many requests"]}),
                 {"Retry-After": str(retry_after), "Content-Type": "application/json"})


def dd_error(status: int, message: str) -> Reply:
    return Reply(status, json.dumps({"errors": [message]}), {"Content-Type": "application/json"})


class MockServices:
    """Threaded HTTP server: Slack webhooks under ``/services/``, Datadog under ``/api/``,
    a generic JSON webhook under ``/hook/``, and ``/capture/`` which takes any body (to look at
    exactly what a client sends, e.g. a Pushgateway body for promtool).

    ``slack_hooks`` maps a hook path (``/services/T.../B.../secret``) to ``"ok"`` or an error
    name from ``SLACK_ERRORS``; unknown hook paths get 404 ``no_service`` as on Slack.
    ``dd_api_keys`` are the API keys Datadog accepts; others get 403."""

    def __init__(self, slack_hooks: dict[str, str] | None = None,
                 dd_api_keys: set[str] | None = None,
                 dd_max_compressed: int = DD_MAX_COMPRESSED,
                 dd_max_decompressed: int = DD_MAX_DECOMPRESSED):
        self.slack_hooks = dict(slack_hooks or {})
        self.dd_api_keys = set(dd_api_keys or set())
        self.dd_max_compressed = dd_max_compressed
        self.dd_max_decompressed = dd_max_decompressed
        self.requests: list[Request] = []
        self._scripts: list[tuple[str, list[Reply]]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._event_id = 1000

    # -- control

    def start(self) -> "MockServices":
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                mock._handle(self)

            do_PUT = do_POST
            do_GET = do_POST
            do_DELETE = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "MockServices":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "mock not started"
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path_prefix: str, *replies: Reply) -> None:
        """Answer the next requests whose path starts with ``path_prefix`` with ``replies`` in
        order; after they are used up the normal answer (validated) comes back."""
        with self._lock:
            self._scripts.append((path_prefix, list(replies)))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripts.clear()

    def seen(self, kind: str | None = None, path_prefix: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if (kind is None or r.kind == kind) and r.path.startswith(path_prefix)]

    def wait_for(self, count: int, kind: str | None = None, timeout: float = 10.0) -> list[Request]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.seen(kind)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.seen(kind)

    # -- request handling

    def _next_script(self, path: str) -> Reply | None:
        with self._lock:
            for prefix, replies in self._scripts:
                if path.startswith(prefix) and replies:
                    return replies.pop(0)
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        path = h.path.split("?", 1)[0]
        # Header names as sent (HTTP/1.1 clients may lowercase them); look-ups ignore case.
        headers = CaseInsensitive(h.headers.items())
        if path.startswith("/services/"):
            kind, default = "slack", self._slack
        elif path in ("/api/v2/series", "/api/v1/series"):
            kind, default = "datadog_series", self._dd_series
        elif path == "/api/v1/events":
            kind, default = "datadog_events", self._dd_events
        elif path.startswith("/hook/"):
            kind, default = "webhook", self._webhook
        elif path.startswith("/capture/"):
            kind, default = "capture", lambda *_: (Reply(200, ""), raw, None, [])
        else:
            kind, default = "unknown", lambda *_: (Reply(404, "not found"), None, None, [])

        reply, body, parsed, problems = default(h.command, path, headers, raw)
        scripted = self._next_script(path)
        if scripted is not None:
            reply = scripted
        rec = Request(kind, h.command, h.path, headers, raw, body, parsed, problems,
                      reply.status, b"", time.time())
        with self._lock:
            self.requests.append(rec)

        if reply.hang:
            self._release.wait(300)
            h.close_connection = True
            return
        if reply.delay:
            self._release.wait(reply.delay)
        data = reply.body.encode() if isinstance(reply.body, str) else reply.body
        rec.reply = data
        try:
            h.send_response(reply.status)
            sent = {k.lower() for k in reply.headers}
            for k, v in reply.headers.items():
                h.send_header(k, v)
            if "content-type" not in sent:
                h.send_header("Content-Type", "text/plain; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- the services

    @staticmethod
    def _json(raw: bytes) -> tuple[Any, str | None]:
        try:
            return json.loads(raw.decode("utf-8")), None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, f"body is not JSON: {err}"

    def _slack(self, method: str, path: str, headers: dict, raw: bytes):
        behaviour = self.slack_hooks.get(path, "no_service")
        if method != "POST":
            return slack_reply("invalid_payload"), raw, None, [f"method {method}"]
        if behaviour != "ok":
            return slack_reply(behaviour), raw, None, []
        payload, err = self._json(raw)
        if err:
            return slack_reply("invalid_payload"), raw, None, [err]
        problems = validate_slack(payload)
        if problems == ["no_text"]:
            return slack_reply("no_text"), raw, payload, problems
        if problems:
            name = "invalid_blocks" if payload.get("blocks") is not None else "invalid_payload"
            return slack_reply(name), raw, payload, problems
        return Reply(200, "ok", {"Content-Type": "text/html"}), raw, payload, []

    def _dd_decode(self, headers: dict, raw: bytes) -> tuple[Reply | None, bytes | None, str | None]:
        enc = (headers.get("Content-Encoding") or "identity").strip().lower()
        if len(raw) > self.dd_max_compressed:
            return dd_error(413, "Payload too large"), None, "payload too large"
        try:
            if enc == "gzip":
                body = gzip.decompress(raw)
            elif enc == "deflate":
                body = zlib.decompress(raw)  # zlib-wrapped, as Datadog's agents send it
            elif enc == "identity":
                body = raw
            else:
                return dd_error(415, f"Unsupported Content-Encoding {enc}"), None, f"encoding {enc}"
        except (OSError, zlib.error, EOFError) as err:
            return dd_error(400, "Unable to decompress payload"), None, f"decompress: {err}"
        if len(body) > self.dd_max_decompressed:
            return dd_error(413, "Payload too large"), body, "decompressed payload too large"
        return None, body, None

    def _dd_auth(self, headers: dict) -> Reply | None:
        key = headers.get("DD-API-KEY")
        if not key or key not in self.dd_api_keys:
            return dd_error(403, "Forbidden")
        return None

    def _dd_series(self, method: str, path: str, headers: dict, raw: bytes):
        denied = self._dd_auth(headers)
        fail, body, problem = self._dd_decode(headers, raw)
        if method != "POST":
            return dd_error(405, "Method Not Allowed"), body, None, [f"method {method}"]
        if denied:
            return denied, body, None, []
        if fail:
            return fail, body, None, [problem or "decode"]
        payload, err = self._json(body or b"")
        if err:
            return dd_error(400, "Payload is not in the expected format: invalid JSON"), body, None, [err]
        model = MetricPayload if path == "/api/v2/series" else MetricsPayload
        try:
            build_model(model, payload)
        except DDInvalid as err:
            return dd_error(400, f"Payload is not in the expected format: {err}"), body, payload, [str(err)]
        if path == "/api/v2/series":
            ok = Reply(202, json.dumps({"errors": []}), {"Content-Type": "application/json"})
        else:
            ok = Reply(202, json.dumps({"status": "ok"}), {"Content-Type": "application/json"})
        return ok, body, payload, []

    def _dd_events(self, method: str, path: str, headers: dict, raw: bytes):
        denied = self._dd_auth(headers)
        fail, body, problem = self._dd_decode(headers, raw)
        if denied:
            return denied, body, None, []
        if fail:
            return fail, body, None, [problem or "decode"]
        payload, err = self._json(body or b"")
        if err:
            return dd_error(400, "Payload is not in the expected format: invalid JSON"), body, None, [err]
        try:
            build_model(EventCreateRequest, payload)
        except DDInvalid as err:
            return dd_error(400, str(err)), body, payload, [str(err)]
        with self._lock:
            self._event_id += 1
            eid = self._event_id
        event = {
            "id": eid,
            "id_str": str(eid),
            "title": payload["title"],
            "text": payload["text"],
            "date_happened": payload.get("date_happened", int(time.time())),
            "priority": payload.get("priority"),
            "tags": payload.get("tags", []),
            "url": f"https://app.datadoghq.com/event/event?id={eid}",
        }
        return (Reply(202, json.dumps({"status": "ok", "event": event}),
                      {"Content-Type": "application/json"}), body, payload, [])

    def _webhook(self, method: str, path: str, headers: dict, raw: bytes):
        payload, err = self._json(raw)
        if err:
            return Reply(400, "bad json"), raw, None, [err]
        return Reply(200, json.dumps({"received": True}), {"Content-Type": "application/json"}), raw, payload, []


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (connections are refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main(argv: list[str] | None = None) -> int:
    """Run the mock standalone (manual checks): prints its base URL, serves until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slack-hook", action="append", default=[],
                    help="hook path that answers ok, e.g. /services/T1/B1/secret")
    ap.add_argument("--dd-api-key", action="append", default=[])
    args = ap.parse_args(argv)
    mock = MockServices({p: "ok" for p in args.slack_hook}, set(args.dd_api_key)).start()
    print(json.dumps({"base": mock.base}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for r in mock.requests:
        print(json.dumps({"kind": r.kind, "path": r.path, "status": r.status,
                          "problems": r.problems}), file=sys.stderr)
    mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
