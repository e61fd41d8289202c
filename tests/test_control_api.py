"""The control API over real HTTP, with a stand-in backend: every endpoint, auth, bad input."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from blackhole.control.app import HTTP_LOG
from blackhole.control.backend import RuleConflictError, RuleError, UnknownRuleError
from blackhole.control.serve import ControlServer, start
from blackhole.observe.counters import Counters
from blackhole.observe.layout import ACCEPTED, Layout, verb_index
from blackhole.observe.record import Recorder
from blackhole.observe.snapshot import Figures, RuleFigures, Snapshot
from tests.proctools import wait_until

TOKEN = "s3cret-token"
LAYOUT = Layout(("127.0.0.1:2525",))
LOOP_THREAD = "control-api-loop"
RULE_FIELDS = {"name", "at", "reply", "recipient", "delay", "drop"}


class FakeBackend:
    """Rules in a list, counts in private counters, a real record ring."""

    def __init__(self) -> None:
        self.serving = True
        self.counters = Counters.private(LAYOUT)
        self.api_rules: list[dict[str, Any]] = []
        self.recorder = Recorder(5)
        self.resets = 0

    def health(self) -> tuple[bool, list[str]]:
        return (True, []) if self.serving else (False, ["worker 2"])

    def figures(self) -> Figures:
        values = tuple(self.counters.value(i) for i in range(LAYOUT.size))
        rules = {r["name"]: RuleFigures(1, 0, 0.0) for r in self.api_rules}
        return Figures(Snapshot(LAYOUT, values), rules, 2, 3.5)

    def rules(self) -> list[dict[str, Any]]:
        return self.api_rules

    async def add_rule(self, fields: dict[str, Any], ttl: float | None) -> dict[str, Any]:
        for name in fields:
            if name not in RULE_FIELDS:
                raise RuleError(name, "unknown field")
        if not isinstance(fields.get("name"), str):
            raise RuleError("name", "a rule needs a name")
        if fields["name"] == "explode":
            raise RuntimeError("a bug with a secret in its text")
        if any(r["name"] == fields["name"] for r in self.api_rules):
            raise RuleConflictError(fields["name"])
        stored = {**fields, "source": "api", "hits": 0, "spent": False, "expires": ttl}
        self.api_rules.insert(0, stored)
        return stored

    async def remove_rule(self, name: str) -> None:
        if not any(r["name"] == name for r in self.api_rules):
            raise UnknownRuleError(name)
        self.api_rules = [r for r in self.api_rules if r["name"] != name]

    async def remove_all_rules(self) -> None:
        self.api_rules = []

    async def reset(self) -> None:
        self.resets += 1
        self.recorder.clear()

    def messages(self, limit: int | None) -> list[dict[str, Any]]:
        return self.recorder.messages(limit)


@dataclass
class Running:
    backend: FakeBackend
    port: int

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def json(self, method: str, path: str, value: Any = None, **kwargs: Any) -> tuple[int, Any]:
        body = None if value is None else json.dumps(value).encode()
        status, _headers, data = self.request(method, path, body, **kwargs)
        return status, json.loads(data) if data else None


def serve(token: str | None) -> Iterator[Running]:
    """The app on an ephemeral port, on an event loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name=LOOP_THREAD)
    thread.start()
    backend = FakeBackend()
    future = asyncio.run_coroutine_threadsafe(start(backend, "127.0.0.1", 0, token), loop)
    server: ControlServer = future.result(timeout=10)
    try:
        yield Running(backend, server.port)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def api() -> Iterator[Running]:
    yield from serve(TOKEN)


@pytest.fixture
def open_api() -> Iterator[Running]:
    yield from serve(None)


# --- endpoints ------------------------------------------------------------------------


def test_healthz_ok_and_missing(api: Running) -> None:
    assert api.request("GET", "/healthz", token=None)[::2] == (200, b"ok\n")
    api.backend.serving = False
    assert api.request("GET", "/healthz", token=None)[::2] == (503, b"missing: worker 2\n")


def test_metrics_without_token(api: Running) -> None:
    api.backend.counters.message(0, ACCEPTED, 10)
    status, headers, body = api.request("GET", "/metrics", token=None)
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b'blackhole_messages_total{listener="127.0.0.1:2525",outcome="accepted"} 1.0' in body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl")
def test_stats_with_curl(api: Running) -> None:
    api.backend.counters.connection(0)
    api.backend.counters.message(0, ACCEPTED, 100)
    api.backend.counters.reply(verb_index("DATA"), 250, 0.001)
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            f"http://127.0.0.1:{api.port}/stats",
        ],
        capture_output=True,
        check=True,
    )
    assert json.loads(result.stdout) == {
        "uptime": 3.5,
        "workers": 2,
        "sessions_open": 1,
        "connections": 1,
        "messages": {"accepted": 1, "rejected": 0, "deferred": 0, "dropped": 0},
        "bytes": 100,
        "replies": {"250": 1},
        "tls": {"ok": 0, "failed": 0},
        "rules": {},
    }


def test_rules_lifecycle(api: Running) -> None:
    rule = {"name": "full", "at": "rcpt", "reply": "452 4.2.2 Mailbox full"}
    status, stored = api.json("POST", "/rules", {**rule, "ttl": 30})
    assert status == 201
    assert stored == {**rule, "source": "api", "hits": 0, "spent": False, "expires": 30.0}
    assert api.json("POST", "/rules", rule) == (
        409,
        {"error": "a rule named 'full' is already in force", "field": "name"},
    )
    assert api.json("GET", "/rules") == (200, [stored])
    assert api.json("GET", "/stats")[1]["rules"] == {"full": 1}
    assert api.json("DELETE", "/rules/full") == (204, None)
    assert api.json("DELETE", "/rules/full") == (404, {"error": "no API rule named 'full'"})
    api.json("POST", "/rules", {"name": "a"})
    api.json("POST", "/rules", {"name": "b"})
    assert api.json("DELETE", "/rules") == (204, None)
    assert api.json("GET", "/rules") == (200, [])


def test_messages_are_encoded_off_the_event_loop(api: Running) -> None:
    # record = 100000 of them take seconds to encode: the loop must go on
    # answering (the hub's heartbeat, the rules' decisions) meanwhile.
    encoders: list[str] = []

    class Seen(dict[str, Any]):
        def items(self) -> Any:  # json's encoder asks a dict subclass for its items
            encoders.append(threading.current_thread().name)
            return super().items()

    api.backend.recorder.add(Seen(queue_id="Q1", headers=[]))
    status, messages = api.json("GET", "/messages")
    assert status == 200 and [m["queue_id"] for m in messages] == ["Q1"]
    assert encoders and LOOP_THREAD not in encoders


def test_reset_and_messages(api: Running) -> None:
    for n in range(7):
        api.backend.recorder.add({"queue_id": f"Q{n}", "headers": []})
    status, messages = api.json("GET", "/messages?limit=2")
    assert status == 200
    assert [m["queue_id"] for m in messages] == ["Q6", "Q5"]
    assert len(api.json("GET", "/messages")[1]) == 5
    assert api.json("POST", "/reset") == (204, None)
    assert api.json("POST", "/reset", {}) == (204, None)
    assert api.backend.resets == 2
    assert api.json("GET", "/messages") == (200, [])


def test_no_token_configured_means_no_auth(open_api: Running) -> None:
    assert open_api.json("GET", "/rules", token=None) == (200, [])


# --- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", f"bearer{TOKEN}"],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/stats"), ("POST", "/reset")])
def test_token_refused(api: Running, authorization: str | None, method: str, path: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, response_headers, body = api.request(method, path, token=None, headers=headers)
    assert status == 401
    assert response_headers["www-authenticate"] == "Bearer"
    assert json.loads(body) == {"error": "missing or wrong bearer token"}
    assert api.backend.resets == 0


def test_token_scheme_is_case_insensitive(api: Running) -> None:
    headers = {"Authorization": f"bEaReR {TOKEN}"}
    assert api.request("GET", "/stats", token=None, headers=headers)[0] == 200


# --- bad requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        (b"", "the body must be a JSON object", None),
        (b"[1, 2]", "the body must be a JSON object", None),
        (b'"name"', "the body must be a JSON object", None),
        (b'{"name": ', "the body is not valid JSON: Expecting value at line 1 column 10", None),
        (b"\xff\xfe{}", "the body is not UTF-8", None),
        (b'{"name": "a", "name": "b"}', "field 'name' is given twice", "name"),
        (b'{"name": "a", "ttl": NaN}', "NaN is not a JSON number", None),
        (b'{"name": "a", "ttl": "10"}', "ttl must be a number of seconds", "ttl"),
        (b'{"name": "a", "ttl": true}', "ttl must be a number of seconds", "ttl"),
        (b'{"name": "a", "ttl": 0}', "ttl must be more than 0 seconds", "ttl"),
        (b'{"name": "a", "ttl": 1e999}', "ttl must be more than 0 seconds", "ttl"),
        (b'{"name": "a", "colour": "red"}', "colour: unknown field", "colour"),
        (b'{"name": 7}', "name: a rule needs a name", "name"),
        (b"[" * 100_000 + b"]" * 100_000, "the body is too large", None),
        (b"[" * 20_000 + b"]" * 20_000, "the body is nested too deeply", None),
    ],
)
def test_bad_rule_bodies(api: Running, body: bytes, message: str, field: str | None) -> None:
    status, _headers, data = api.request("POST", "/rules", body)
    expected: dict[str, Any] = {"error": message}
    if field is not None:
        expected["field"] = field
    if message == "the body is too large":
        assert status == 413
        assert "error" in json.loads(data)
    else:
        assert (status, json.loads(data)) == (400, expected)
    assert api.backend.api_rules == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=-1", "limit"), ("limit=ten", "limit"), ("limit=1&limit=2", "limit"),
     ("limit=%EF%BC%91", "limit"), ("limit=99999999999999", "limit"), ("since=3", "since")],
)  # fmt: skip
def test_bad_messages_queries(api: Running, query: str, field: str) -> None:
    status, body = api.json("GET", f"/messages?{query}")
    assert status == 400
    assert body["field"] == field


def test_reset_refuses_fields(api: Running) -> None:
    assert api.json("POST", "/reset", {"all": True}) == (
        400,
        {"error": "reset takes no fields: 'all'", "field": "all"},
    )
    assert api.backend.resets == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("GET", "/rules/x/y", 404), ("PUT", "/rules", 405),
     ("POST", "/stats", 405), ("GET", "/reset", 405), ("DELETE", "/healthz", 405)],
)  # fmt: skip
def test_unknown_routes_and_methods(api: Running, method: str, path: str, status: int) -> None:
    got, headers, body = api.request(method, path)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert "error" in json.loads(body)
    if status == 405:
        assert headers["allow"]


def test_a_backend_bug_is_a_500_without_its_text_and_the_api_keeps_serving(
    api: Running, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = api.json("POST", "/rules", {"name": "explode"})
    assert (status, body) == (500, {"error": "internal error"})
    assert "a bug with a secret" in caplog.text  # logged for the operator, not sent
    assert api.json("GET", "/rules") == (200, [])


def test_garbage_on_the_socket_does_not_stop_the_api(api: Running) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x00\xff garbage \r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.")
    assert api.request("GET", "/healthz", token=None)[0] == 200


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` as is; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    return reply


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /stats HTTP/9.9\r\n\r\n",
        b"GET /stats HTTP/1.1\r\nnot a header line\r\n\r\n",
        b"POST /rules HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n",
    ],
    ids=["version", "header", "length", "long-url"],
)
def test_what_is_not_http_gets_400_and_no_error_line(
    api: Running, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    status_line = _raw(api.port, request_bytes).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400", status_line
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]


def test_a_client_gone_mid_body_is_no_error(api: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    head = (
        "POST /rules HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"{")
    wait_until(
        lambda: any("left mid-request" in r.getMessage() for r in caplog.records),
        what="the control API to see the client gone",
    )
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert api.request("GET", "/healthz", token=None)[0] == 200


def test_only_what_clients_cause_is_turned_to_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for exc in (BadHttpMessage("bad"), ConnectionResetError(), RuntimeError("a bug")):
        try:
            raise exc
        except Exception:
            HTTP_LOG.exception("Error handling request")
    levels = [(type(r.exc_info[1]).__name__, r.levelname) for r in caplog.records if r.exc_info]
    assert levels == [
        ("BadHttpMessage", "DEBUG"),
        ("ConnectionResetError", "DEBUG"),
        ("RuntimeError", "ERROR"),  # aiohttp's own trouble stays an error
    ]
