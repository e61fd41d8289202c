"""The benchmark's switch that turns counting off (observe.uncounted), on real servers.

Counting is always on for users; bench/run.py's ``blackhole-Nw-nocount``
servers set ``BLACKHOLE_BENCH_NO_COUNTING=1`` to measure what it costs. The
switch must really turn counting off (else the benchmark's "cost of counting"
is zero by construction), and it must be off unless set.
"""

from __future__ import annotations

import http.client
import json
import smtplib
from pathlib import Path
from typing import Any

import pytest

from blackhole.observe.uncounted import NO_COUNTING_ENV, counting_disabled
from tests.e2e import Factory, config_file
from tests.serverproc import ServerProcess

TOKEN = "bench-switch-token"
CONFIG = (
    f"listen = 127.0.0.1:0\nworkers = 1\ncontrol_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"
)


def stats(srv: ServerProcess) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", srv.control_port(), timeout=10)
    try:
        conn.request("GET", "/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        conn.close()


def send_one(srv: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port(), timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nhello\r\n")


def served(server_factory: Factory, tmp_path: Path, env: dict[str, str]) -> Any:
    """/stats of a fresh server after one message was accepted (its 250 seen)."""
    srv = server_factory(config_file(tmp_path, CONFIG), env=env)
    send_one(srv)
    # The meter counts a reply before it is written (OBSERVE.md), so the
    # figures are complete once the client has seen the 250: no waiting.
    return stats(srv)


def test_counting_is_on_by_default(server_factory: Factory, tmp_path: Path) -> None:
    figures = served(server_factory, tmp_path, {NO_COUNTING_ENV: ""})
    assert figures["messages"]["accepted"] == 1
    assert figures["replies"]["250"] >= 4  # EHLO, MAIL, RCPT, the data


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_switch_turns_counting_off(server_factory: Factory, tmp_path: Path, value: str) -> None:
    figures = served(server_factory, tmp_path, {NO_COUNTING_ENV: value})
    assert figures["messages"]["accepted"] == 0
    assert figures["replies"] == {} or not any(figures["replies"].values())


def test_only_a_set_switch_counts() -> None:
    assert counting_disabled({NO_COUNTING_ENV: "1"})
    assert not counting_disabled({})
    assert not counting_disabled({NO_COUNTING_ENV: ""})
    assert not counting_disabled({NO_COUNTING_ENV: "0"})
