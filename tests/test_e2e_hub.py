"""The hub and the control API on a real server: real processes, real HTTP, real SMTP.

One server with workers = 2 and control_listen on a free port (the log names
it) serves the module; the SIGKILL test starts its own.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blackhole.errors import EX_UNAVAILABLE
from tests.e2e import Factory, config_file, shared_server, start
from tests.proctools import MailPump, children, cmdline, kill_quietly, wait_until
from tests.serverproc import ServerProcess

TOKEN = "t0ken-for-tests"
CONFIG = (
    f"listen = 127.0.0.1:0\nworkers = 2\ncontrol_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"
)

server = shared_server(CONFIG)


def call(
    srv: ServerProcess,
    method: str,
    path: str,
    body: object = None,
    token: str | None = TOKEN,
) -> tuple[int, str, Any]:
    """(status, content type, body as JSON when it is JSON, else text)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.control_port(), timeout=10)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        kind = response.getheader("Content-Type", "")
    finally:
        conn.close()
    return response.status, kind, json.loads(text) if "json" in kind else text


def names(srv: ServerProcess) -> list[str]:
    status, _kind, rules = call(srv, "GET", "/rules")
    assert status == 200
    return [rule["name"] for rule in rules]


def test_healthz_metrics_and_stats(server: ServerProcess) -> None:
    # Health needs both workers serving and connected to the hub: poll it.
    wait_until(lambda: call(server, "GET", "/healthz", token=None)[0] == 200, what="healthz")
    assert call(server, "GET", "/healthz", token=None)[2] == "ok\n"
    status, kind, text = call(server, "GET", "/metrics", token=None)
    assert status == 200 and kind.startswith("text/plain")
    assert "blackhole_messages_total" in text
    status, _kind, stats = call(server, "GET", "/stats")
    assert status == 200
    assert stats["workers"] == 2
    assert set(stats["messages"]) == {"accepted", "rejected", "deferred", "dropped"}


def test_token_is_required_and_checked(server: ServerProcess) -> None:
    assert call(server, "GET", "/stats", token=None)[0] == 401
    assert call(server, "GET", "/stats", token="wrong")[0] == 401
    assert call(server, "GET", "/rules")[0] == 200


def test_add_list_and_delete_a_rule(server: ServerProcess) -> None:
    rule = {"name": "full", "at": "rcpt", "recipient": "*@full.test", "reply": "452 4.2.2 Full"}
    status, _kind, stored = call(server, "POST", "/rules", rule)
    assert status == 201, stored
    assert stored["name"] == "full" and stored["source"] == "api"
    assert stored["expires"] is None and stored["spent"] is False
    assert "full" in names(server)
    assert call(server, "POST", "/rules", rule)[0] == 409
    assert call(server, "DELETE", "/rules/full")[0] == 204
    assert "full" not in names(server)
    assert call(server, "DELETE", "/rules/full")[0] == 404


def test_a_bad_rule_is_a_400_naming_the_field(server: ServerProcess) -> None:
    status, _kind, body = call(server, "POST", "/rules", {"name": "x", "at": "rcpt", "reply": "99"})
    assert status == 400
    assert body["field"] == "reply", body
    status, _kind, body = call(server, "POST", "/rules", {"name": "x", "at": "nowhere"})
    assert status == 400 and body["field"] == "at", body


def test_ttl_removes_the_rule(server: ServerProcess) -> None:
    rule = {"name": "brief", "at": "connect", "reply": "421 4.3.2 Later", "ttl": 0.5}
    status, _kind, stored = call(server, "POST", "/rules", rule)
    assert status == 201 and 0 < stored["expires"] <= 0.5
    wait_until(lambda: "brief" not in names(server), timeout=5, what="the ttl to remove it")


def test_delete_all_and_reset(server: ServerProcess) -> None:
    for name in ("one", "two"):
        assert call(server, "POST", "/rules", {"name": name, "at": "mail", "delay": 1})[0] == 201
    assert call(server, "DELETE", "/rules")[0] == 204
    assert names(server) == []
    assert call(server, "POST", "/reset")[0] == 204
    assert call(server, "GET", "/messages")[2] == []


def _hub_pid(srv: ServerProcess) -> int:
    hubs = [pid for pid in children(srv.pid) if "blackhole: hub" in cmdline(pid)]
    return hubs[0] if len(hubs) == 1 else 0


def test_a_killed_hub_is_restarted_and_smtp_never_stops(
    server_factory: Factory, tmp_path: Path
) -> None:
    srv = start(server_factory, tmp_path, CONFIG)
    healthy: Callable[[], bool] = lambda: call(srv, "GET", "/healthz", token=None)[0] == 200  # noqa: E731
    wait_until(healthy, what="healthz")
    hub = wait_until(lambda: _hub_pid(srv), what="the hub process")
    with MailPump(srv.port()) as pump:
        wait_until(lambda: pump.count() >= 3, what="mail flowing")
        before = call(srv, "GET", "/stats")[2]["uptime"]
        kill_quietly(hub, signal.SIGKILL)
        srv.wait_for(r"the hub \(pid \d+\) was killed by SIGKILL; restarting it")
        srv.wait_for(r"the hub is serving again")
        new = wait_until(lambda: (p := _hub_pid(srv)) != hub and p, what="a new hub")
        assert new != hub
        wait_until(healthy, what="healthz after the restart")
        sent = pump.count()
        wait_until(lambda: pump.count() >= sent + 3, what="mail after the restart")
    assert set(pump.results) == {"ok"}, pump.results
    # The server's uptime goes on: it counts from the server's start, not the hub's.
    assert call(srv, "GET", "/stats")[2]["uptime"] >= before
    # The new hub serves the API rules again (its list starts empty).
    assert call(srv, "POST", "/rules", {"name": "again", "at": "mail", "delay": 1})[0] == 201


@pytest.mark.parametrize("how", ["at start", "by a reload"])
def test_a_stuck_hub_misses_its_heartbeats_and_is_replaced(
    server_factory: Factory, tmp_path: Path, how: str
) -> None:
    # SIGSTOP: the hub's loop runs no more (no control API answer, no shared
    # rule decided) though the process lives and its ports accept.
    fast = "mailname = mx.test\n" + CONFIG + "heartbeat_interval = 0.2\n"
    path = config_file(tmp_path, fast if how == "at start" else "mailname = mx.test\n" + CONFIG)
    srv = server_factory(path)
    if how == "by a reload":  # from 5 s (15 s to a kill) to 0.2 s
        path.write_text(fast)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(r"configuration reloaded")
    healthy: Callable[[], bool] = lambda: call(srv, "GET", "/healthz", token=None)[0] == 200  # noqa: E731
    wait_until(healthy, what="healthz")
    hub = wait_until(lambda: _hub_pid(srv), what="the hub process")
    kill_quietly(hub, signal.SIGSTOP)
    srv.wait_for(rf"the hub \(pid {hub}\) did not answer the heartbeat for [\d.]+s: killing it")
    srv.wait_for(r"the hub is serving again")
    wait_until(lambda: (p := _hub_pid(srv)) != hub and p, what="a new hub")
    wait_until(healthy, what="healthz after the restart")


def test_control_port_in_use_is_a_clear_start_up_error(
    server_factory: Factory, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        text = f"mailname = mx.test\nlisten = 127.0.0.1:0\ncontrol_listen = 127.0.0.1:{port}\n"
        srv = server_factory(config_file(tmp_path, text), ready=False)
        assert srv.proc.wait(timeout=20) == EX_UNAVAILABLE
        srv.drain()
        assert f"cannot bind control_listen 127.0.0.1:{port}" in srv.text()
