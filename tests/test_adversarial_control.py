"""The control API, the hub and the console under awkward but legal use.

Each test drives a real server (the ``Blackhole`` testing API, or the
``blackhole`` command with a config file of its own) over real sockets, and
checks one promise of OBSERVE.md or docs/observability.md that a first
implementation broke. Tests marked ``xfail(strict=True)`` name a defect whose
fix lies outside the observability code; they start to pass (and so to fail
the run, until the mark goes) once it is fixed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blackhole.observe.layout import MAX_RULES
from blackhole.testing import Blackhole
from blackhole.testing.process import ServerProcess
from tests.proctools import children, cmdline, wait_until
from tests.smtpclient import Client

BODY = b"Subject: adversarial\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[Blackhole]:
    with Blackhole(workers=2, tls=False) as bh:
        yield bh


@pytest.fixture
def bh(server: Blackhole) -> Blackhole:
    server.clear_rules()
    server.reset()
    return server


def control(bh: Blackhole, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request to the server's control API: the status and the decoded JSON."""
    port = bh._api().port
    connection = http.client.HTTPConnection(bh.host, port, timeout=30)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data) if data else None


# --- control API: POST /rules ---------------------------------------------------------------


def test_a_rule_whose_ttl_runs_out_at_once_is_still_answered_201(bh: Blackhole) -> None:
    rule = {"name": "brief", "at": "rcpt", "reply": "450 4.0.0 brief", "ttl": 1e-6}
    status, body = control(bh, "POST", "/rules", json.dumps(rule).encode())
    assert status == 201, body
    assert body["name"] == "brief"
    wait_until(lambda: bh.rules() == [], what="the ttl to remove the rule")


def test_a_rule_over_the_limit_is_refused_and_not_listed(bh: Blackhole) -> None:
    for number in range(MAX_RULES):
        bh.add_rule({"name": f"r{number}", "at": "rcpt",
                     "recipient": f"r{number}@example.com", "reply": "450 4.0.0 busy"})  # fmt: skip
    over = {"name": "over", "at": "rcpt", "recipient": "over@example.com",
            "reply": "450 4.0.0 busy"}  # fmt: skip
    status, body = control(bh, "POST", "/rules", json.dumps(over).encode())
    assert 400 <= status < 500, (status, body)
    assert f"at most {MAX_RULES} rules" in body["error"], body
    assert "over" not in {rule["name"] for rule in bh.rules()}


# --- the hub's restart ----------------------------------------------------------------------


def _hub(bh: Blackhole) -> int | None:
    return _hub_of(bh._running().proc.pid)


def _hub_of(supervisor: int) -> int | None:
    hubs = [pid for pid in children(supervisor) if cmdline(pid) == "blackhole: hub"]
    return hubs[0] if hubs else None


def test_a_hub_restart_keeps_the_file_rules_counts(tmp_path: Path) -> None:
    """OBSERVE.md: no figure goes backwards except after POST /reset; the hub
    is restarted at once if it dies (docs/observability.md, Control API)."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "full"\nat = "rcpt"\nrecipient = "full@example.com"\n'
        'reply = "452 4.2.2 Mailbox full"\n'
    )
    with Blackhole(rules=str(rules), workers=1, tls=False) as bh:
        with Client.connect(bh.port) as client:
            client.expect("EHLO adversarial", 250)
            client.expect("MAIL FROM:<a@example.com>", 250)
            client.expect("RCPT TO:<full@example.com>", 452)
            client.expect("QUIT", 221)
        assert bh.stats()["rules"]["full"] == 1
        hub = _hub(bh)
        assert hub is not None
        os.kill(hub, signal.SIGKILL)

        def serving_again() -> dict[str, Any] | None:
            if _hub(bh) in (None, hub):
                return None
            try:
                return bh.stats()
            except OSError:
                return None  # the new hub is not listening yet

        wait_until(serving_again, what="a new hub serving the control API")
        assert bh.stats()["rules"]["full"] == 1
        assert [(rule["name"], rule["hits"]) for rule in bh.rules()] == [("full", 1)]


# --- the console's progress line --------------------------------------------------------------

PROGRESS = re.compile(r"([0-9.]+) messages/s over ")


def _rates(bh: Blackhole) -> list[float]:
    return [float(rate) for rate in PROGRESS.findall(bh.log())]


def test_a_rule_slot_given_to_a_new_rule_does_not_inflate_the_progress_line() -> None:
    """OBSERVE.md, Console: messages per second over the interval. A removed
    rule's counter slot restarts from zero for the next rule added (so that
    it inherits no hits); that is no reset of the other figures."""
    with Blackhole(workers=1, tls=False, stats_interval=0.3) as bh:
        bh.add_rule({"name": "a", "at": "rcpt", "recipient": "a@example.com",
                     "reply": "450 4.0.0 not now"})  # fmt: skip
        with Client.connect(bh.port) as client:
            client.expect("EHLO adversarial", 250)
            client.expect("MAIL FROM:<a@example.com>", 250)
            client.expect("RCPT TO:<a@example.com>", 450)
            client.expect("RSET", 250)
            for _ in range(20):
                assert client.transaction(BODY).code == 250
            client.expect("QUIT", 221)
        # A tick after the traffic: the messages belong to earlier intervals.
        seen = len(_rates(bh))
        wait_until(lambda: len(_rates(bh)) > seen + 1, what="a progress line after the traffic")
        bh.remove_rule("a")
        bh.add_rule({"name": "b", "at": "rcpt", "recipient": "b@example.com",
                     "reply": "450 4.0.0 not now"})  # fmt: skip
        seen = len(_rates(bh))
        wait_until(lambda: len(_rates(bh)) >= seen + 2, what="two progress lines")
        assert _rates(bh)[seen : seen + 2] == [0.0, 0.0], bh.log()


# --- a listener added by a reload ---------------------------------------------------------------

RELOADED = re.compile(r"configuration reloaded .*smtp://127\.0\.0\.1:(\d+) \[name=second\]")


def _connections(server: ServerProcess) -> dict[str, float]:
    """blackhole_connections_total by listener, from GET /metrics."""
    connection = http.client.HTTPConnection("127.0.0.1", server.control_port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {
        sample.labels["listener"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "blackhole_connections_total"
    }


def _reload_adding_a_listener(tmp_path: Path) -> ServerProcess:
    """A server started with listener 'first', reloaded with 'second' too, which
    has taken one message."""
    config = tmp_path / "blackhole.conf"
    common = "control_listen = 127.0.0.1:0\nworkers = 1\nmailname = blackhole.test\n"
    config.write_text("listen = 127.0.0.1:0 name=first\n" + common)
    server = ServerProcess.start(config, 30.0)
    try:
        config.write_text("listen = 127.0.0.1:0 name=first, 127.0.0.1:0 name=second\n" + common)
        server.proc.send_signal(signal.SIGHUP)
        found = wait_until(lambda: RELOADED.search(server.text()), what="the reload")
        assert found is not None
        with Client.connect(int(found.group(1))) as client:
            client.expect("EHLO adversarial", 250)
            assert client.transaction(BODY).code == 250
            client.expect("QUIT", 221)
    except BaseException:
        server.stop()
        raise
    return server


def test_a_listener_added_by_a_reload_is_counted_under_its_own_name(tmp_path: Path) -> None:
    """OBSERVE.md, Metrics: listeners are labelled by their name= flag."""
    server = _reload_adding_a_listener(tmp_path)
    try:
        assert _connections(server) == {"first": 0, "second": 1}
    finally:
        server.stop()


def test_a_restarted_hub_still_names_a_listener_a_reload_added(tmp_path: Path) -> None:
    """The supervisor gives a new hub the layout with the reload's listeners."""
    server = _reload_adding_a_listener(tmp_path)
    try:
        hub = _hub_of(server.proc.pid)
        assert hub is not None
        os.kill(hub, signal.SIGKILL)

        def serving_again() -> dict[str, float] | None:
            if _hub_of(server.proc.pid) in (None, hub):
                return None
            try:
                return _connections(server)
            except OSError:
                return None  # the new hub is not listening yet

        wait_until(serving_again, what="a new hub serving the control API")
        assert _connections(server) == {"first": 0, "second": 1}
    finally:
        server.stop()
