"""LMTP ``end`` rules over real sockets: every recipient decided on its own (RFC 2033 4.2)."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from tests.e2e import Factory
from tests.rulesrv import rules_server
from tests.serverproc import ServerProcess
from tests.smtpclient import Client

FULL = '[[rule]]\nname = "full"\nat = "end"\nrecipient = "*@full.example"\n'
LMTP = "lmtp_listen = 127.0.0.1:0\naddress_rules = mox\nmode = accept\n"


def _deliver(server: ServerProcess, recipients: list[str]) -> list[tuple[int, bytes]]:
    """One message over smtplib.LMTP: the replies after the content, one per recipient."""
    with smtplib.LMTP("127.0.0.1", server.port("lmtp"), timeout=10) as client:
        assert client.ehlo()[0] == 250  # LHLO
        assert client.mail("a@example.com")[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        replies = [client.data(b"Subject: t\r\n\r\nhello\r\n")]
        replies += [client.getreply() for _ in recipients[1:]]
        return replies


@pytest.mark.parametrize(
    "selection",
    ["", 'first = 100\nkey = "recipient"\n'],  # decided at once; through the store
    ids=["stateless", "stateful"],
)
def test_end_rule_answers_each_recipient_on_its_own(
    server_factory: Factory, tmp_path: Path, selection: str
) -> None:
    rules = FULL + selection + 'reply = "452 4.2.2 Mailbox full"\n'
    server = rules_server(server_factory, tmp_path, rules, LMTP)
    replies = _deliver(
        server,
        ["a@ok.example", "b@full.example", "c@ok.example", "x451@ok.example", "permerror@o.ex"],
    )
    codes = [code for code, _ in replies]
    assert codes == [250, 452, 250, 451, 550]
    assert replies[1][1] == b"4.2.2 Mailbox full"
    assert replies[3][1].startswith(b"4.0.0 ")  # mox: three digits are the code
    assert replies[4][1].startswith(b"5.0.0 ")


def test_rule_beats_mox_for_its_recipient_only(server_factory: Factory, tmp_path: Path) -> None:
    # Rules act before address conventions, recipient by recipient.
    rules = FULL + 'reply = "250 2.0.0 taken anyway"\n'
    server = rules_server(server_factory, tmp_path, rules, LMTP)
    replies = _deliver(server, ["temperror@full.example", "temperror@ok.example"])
    assert replies[0] == (250, b"2.0.0 taken anyway")
    assert replies[1][0] == 451


def test_close_for_one_recipient_answers_the_rest_421_and_closes(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, FULL + "close = true\n", LMTP)
    client = Client.connect(server.port("lmtp"))
    client.expect("LHLO c.example", 250)
    # Pipelined, as an LMTP client may (RFC 2033 and RFC 2920).
    client.send(
        "MAIL FROM:<a@example.com>\r\nRCPT TO:<a@ok.example>\r\nRCPT TO:<b@full.example>\r\n"
        "RCPT TO:<c@ok.example>\r\nDATA\r\n"
    )
    for _ in range(4):  # MAIL and three RCPT
        assert client.reply().code == 250
    assert client.reply().code == 354
    client.send("Subject: t\r\n\r\nhi\r\n.\r\n")
    assert [client.reply().code for _ in range(3)] == [250, 421, 421]
    assert client.closed()


def test_drop_for_one_recipient_ends_the_session_without_replies(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, FULL + "drop = true\n", LMTP)
    client = Client.connect(server.port("lmtp"))
    client.expect("LHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<a@ok.example>", 250)
    client.expect("RCPT TO:<b@full.example>", 250)
    client.expect("DATA", 354)
    client.send("Subject: t\r\n\r\nhi\r\n.\r\n")
    assert client.closed()
