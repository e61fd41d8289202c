"""Content rules over real sockets: each ``after_bytes`` acts at its own byte
count, and ``header`` matchers see the header section."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import Factory
from tests.rulesrv import rules_server
from tests.serverproc import ServerProcess
from tests.smtpclient import Client

# Two content rules with different thresholds: the first answers the message
# (unless something ends it first), the second cuts it at 5000 bytes.
THRESHOLDS = """
[[rule]]
name = "small"
at = "content"
after_bytes = 100
reply = "250 2.0.0 seen by small"

[[rule]]
name = "big"
at = "content"
after_bytes = 5000
drop = true
"""

HEADER = """
[[rule]]
name = "retry-header"
at = "content"
header = { "X-Test" = "retry-*" }
reply = "451 4.7.1 The header says retry"
"""

LINE = b"x" * 98 + b"\r\n"  # 100 bytes a line


def _send(client: Client, body: bytes, how: str) -> None:
    if how == "whole":
        client.send(body)
    elif how == "lines":
        for start in range(0, len(body), 100):
            client.send(body[start : start + 100])
    else:  # byte by byte, up to the bytes that matter, then the rest
        for i in range(0, 600):
            client.send(body[i : i + 1])
        client.send(body[600:])


def _message(server: ServerProcess, body: bytes, how: str) -> Client:
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.mail_rcpt()
    client.expect("DATA", 354)
    _send(client, body + b".\r\n", how)
    return client


@pytest.mark.parametrize("how", ["whole", "lines", "bytes"])
def test_each_threshold_acts_at_its_own_byte_count(
    server_factory: Factory, tmp_path: Path, how: str
) -> None:
    server = rules_server(server_factory, tmp_path, THRESHOLDS)
    # 3000 bytes: past "small" only, whose reply answers the message.
    client = _message(server, b"Subject: t\r\n\r\n" + LINE * 30, how)
    reply = client.reply()
    assert (reply.code, reply.text) == (250, "2.0.0 seen by small")
    server.wait_for(r"rule small at content: reply 250")
    # 10000 bytes: "small" acts at 100, then "big" drops the connection at 5000.
    client = _message(server, b"Subject: t\r\n\r\n" + LINE * 100, how)
    assert client.closed()
    server.wait_for(r"rule big at content: drop")


@pytest.mark.parametrize("how", ["whole", "lines", "bytes"])
def test_header_matcher_at_content(server_factory: Factory, tmp_path: Path, how: str) -> None:
    server = rules_server(server_factory, tmp_path, HEADER)
    retry = b"Subject: t\r\nX-Test: retry-2\r\n\r\n" + LINE * 10
    client = _message(server, retry, how)
    reply = client.reply()
    assert (reply.code, reply.text) == (451, "4.7.1 The header says retry")
    plain = b"Subject: t\r\nX-Test: other\r\n\r\n" + LINE * 10
    client = _message(server, plain, how)
    assert client.reply().code == 250


def test_header_rule_with_after_bytes_past_the_headers(
    server_factory: Factory, tmp_path: Path
) -> None:
    # Reported at 2000 bytes, while the content still arrives: the header
    # section ended long before, so the matcher sees it.
    rules = HEADER.replace('reply = "451', 'after_bytes = 2000\nreply = "451')
    server = rules_server(server_factory, tmp_path, rules)
    client = _message(server, b"X-Test: retry-1\r\n\r\n" + LINE * 50, "lines")
    assert client.reply().code == 451
    client = _message(server, b"X-Test: retry-1\r\n\r\n" + LINE * 10, "lines")
    assert client.reply().code == 250  # 1000 bytes: never reached 2000


def test_header_matchers_read_the_first_64_kib_of_the_header_section(
    server_factory: Factory, tmp_path: Path
) -> None:
    # docs/rules.md: only the first 64 KiB of the header section are read;
    # the message is still received whole and answered.
    server = rules_server(server_factory, tmp_path, HEADER)
    filler = b"".join(b"X-Filler-%04d: %s\r\n" % (n, b"f" * 80) for n in range(800))
    assert len(filler) > 64 * 1024
    early = b"X-Test: retry-1\r\n" + filler + b"\r\n" + LINE * 10
    assert _message(server, early, "whole").reply().code == 451
    late = filler + b"X-Test: retry-1\r\n\r\n" + LINE * 10
    assert _message(server, late, "whole").reply().code == 250
