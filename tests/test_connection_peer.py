"""The client's address is asked of the transport only when something reads it.

On uvloop, ``get_extra_info("peername")`` makes a socket object and makes a
system call: a tenth of a new connection's cost in the pure build. Only
rules, the event log, recorded messages and a PROXY header's log lines read
the client, so a session with none of them never asks, and one with any of
them still has the address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import cast

import pytest

from blackhole.config.model import Config
from blackhole.rules.parse import parse_text
from blackhole.server.connection import SMTPProtocol
from blackhole.server.rulestate import WorkerRules
from tests.adapter_fakes import FakeTransport, Harness

PEER = ("192.0.2.7", 40001)
HERE = """\
[[rule]]
name = "here"
at = "connect"
client = "192.0.2.0/24"
reply = "550 5.7.1 not from here"
"""


class PeerTransport(FakeTransport):
    """Answers ``peername`` and remembers every extra info it was asked for."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__(protocol)
        self.asked: list[str] = []

    def get_extra_info(self, name: str, default: object = None) -> object:
        self.asked.append(name)
        return PEER if name == "peername" else default


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(Config(timeout=30))
    yield h
    h.loop.close()


def _connect(harness: Harness) -> tuple[SMTPProtocol, PeerTransport]:
    session = SMTPProtocol(harness.context, harness.state)
    transport = PeerTransport(session)
    session.connection_made(cast(asyncio.Transport, transport))
    return session, transport


def test_a_session_whose_client_nobody_reads_never_asks_for_it(harness: Harness) -> None:
    session, transport = _connect(harness)
    session.data_received(b"EHLO c\r\nQUIT\r\n")
    assert transport.take().startswith(b"220 ")
    session.connection_lost(None)
    assert "peername" not in transport.asked
    assert session.client is None


def test_recorded_messages_get_the_client(harness: Harness) -> None:
    harness.state.observation.record = 5  # a record sink reads the client
    session, transport = _connect(harness)
    assert transport.asked == ["peername"]
    assert session.client == PEER
    assert session.obs.client == PEER[0]
    session.connection_lost(None)


def test_rules_that_came_during_an_smtps_handshake_see_the_client() -> None:
    config = Config(timeout=30, rules=parse_text(HERE))
    harness = Harness(config, tls=True)
    try:
        session, transport = _connect(harness)  # no rules yet: nothing reads the client
        assert "peername" not in transport.asked
        harness.state.rules = WorkerRules(config)
        tls = PeerTransport(session)
        session.tls_ready(cast(asyncio.Transport, tls), greet=True, core=None)
        assert session.client == PEER
        assert tls.take().startswith(b"550 5.7.1 not from here")  # the rule held
    finally:
        harness.loop.close()
