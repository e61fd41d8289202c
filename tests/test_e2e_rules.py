"""Rules over real sockets: a reply at every stage, each action as a client sees it."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from tests.e2e import Factory
from tests.rulesrv import rules_server
from tests.smtpclient import Client


def test_reply_at_rcpt_for_one_domain(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory,
        tmp_path,
        '[[rule]]\nname = "full"\nat = "rcpt"\nrecipient = "*@full.example"\n'
        'reply = "452 4.2.2 Mailbox full"\n',
    )
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<x@full.example>", 452, "4.2.2")
    client.expect("RCPT TO:<x@ok.example>", 250)
    server.wait_for(r"rule full at rcpt: reply 452")
