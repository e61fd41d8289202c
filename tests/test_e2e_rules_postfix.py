"""A real MTA against a greylisting Blackhole: Postfix defers, retries, delivers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e import Factory
from tests.postfixrelay import RelaySettings, relay
from tests.rulesrv import rules_server

GREYLIST = '[[rule]]\nname = "greylist"\nat = "rcpt"\ngreylist = "2s"\n'
MESSAGE = "From: sender@example.com\nTo: grey@example.net\nSubject: greylisted\n\nHello.\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance needs root")
@pytest.mark.parametrize("workers", [1, 2])
def test_postfix_retries_a_greylisted_message_until_it_is_accepted(
    server_factory: Factory, tmp_path: Path, workers: int
) -> None:
    # With two workers the retry may reach the other one: the greylist
    # entry is the hub's, shared by both (RULES.md "Determinism").
    server = rules_server(server_factory, tmp_path, GREYLIST, workers=workers)
    with relay(RelaySettings(server.port())) as pf:
        pf.send("sender@example.com", ["grey@example.net"], MESSAGE)
        attempts = pf.wait_for("grey@example.net", "sent", timeout=30)
        assert attempts[0].status == "deferred"
        assert attempts[0].dsn == "4.7.1"
        assert "451 4.7.1 Greylisted, please try again later" in attempts[0].text
        assert attempts[-1].status == "sent"
        assert len({a.queue_id for a in attempts}) == 1  # the same message, retried
        assert pf.problems() == []
    server.wait_for(r"rule greylist at rcpt: reply 451")
