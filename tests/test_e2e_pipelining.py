"""PIPELINING (RFC 2920) over real sockets, and swaks --pipeline.

A batch of commands sent in one write gets its replies in order, in one write
(RFC 2920 section 3.1: the server answers a batch together), and the server
never reads past DATA, BDAT, STARTTLS or QUIT in a way that changes meaning.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e import shared_server
from tests.serverproc import ServerProcess
from tests.tlsclients import (
    Factory,
    Smtp,
    WriteConfig,
    data_segments_in,
    server_replies,
    start,
    swaks,
)

ENVELOPE = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n"
MESSAGE = b"Subject: pipelined\r\n\r\nhello\r\n.\r\n"


server = shared_server(tls=True)


def _codes(data: bytes) -> list[int]:
    """The codes of the complete replies in ``data`` (last lines only)."""
    return [int(m.group(1)) for m in re.finditer(rb"^([0-9]{3}) [^\r\n]*\r\n", data, re.M)]


def _read_codes(c: Smtp, n: int) -> list[int]:
    return [r.code for r in c.replies(n)]


def test_pipelining_is_offered(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        assert "PIPELINING" in c.ehlo()


def _batch(c: Smtp, batch: bytes, n: int) -> tuple[bytes, int]:
    """Send ``batch`` in one write; (the ``n`` replies, data segments they came in)."""
    before = data_segments_in(c.sock)
    c.send(batch)
    data = b""
    while len(_codes(data)) < n:
        chunk = c.recv_once()
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data, data_segments_in(c.sock) - before


def test_batch_replies_in_order_in_one_write(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        data, segments = _batch(c, b"RSET\r\n" + ENVELOPE + b"DATA\r\n", 5)
        assert _codes(data) == [250, 250, 250, 250, 354], data
        assert segments == 1, f"the replies to one batch came in {segments} writes"
        c.send(MESSAGE)
        assert c.reply().code == 250


def test_whole_transactions_in_one_batch(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        batch = (ENVELOPE + b"DATA\r\n" + MESSAGE) * 2 + b"NOOP\r\n"
        data, segments = _batch(c, batch, 11)
        # The final replies to both messages come with the rest, in order.
        assert _codes(data) == [250, 250, 250, 354, 250] * 2 + [250], data
        ids = re.findall(rb"250 2\.0\.0 OK: queued as (\S+)\r\n", data)
        assert len(ids) == 2 and ids[0] != ids[1], data
        # Answering a message at once does not split the batch's replies.
        assert segments == 1, f"the replies to one batch came in {segments} writes"


def test_errors_inside_a_batch(server: ServerProcess) -> None:
    # RFC 2920 section 3.1: each command gets its own reply, good or bad; DATA
    # goes on when at least one recipient was accepted.
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send(
            b"MAIL FROM:<a@example.com>\r\n"
            b"RCPT TO:<not an address>\r\n"
            b"RCPT TO:<b@example.com> FOO=bar\r\n"
            b"RCPT TO:<c@example.com>\r\n"
            b"DATA\r\n" + MESSAGE
        )
        assert _read_codes(c, 6) == [250, 501, 555, 250, 354, 250]
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        # No recipient accepted: DATA is refused and what would have been the
        # message is read as commands, as RFC 2920 section 3.1 says it must be.
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<bad>\r\nDATA\r\nNOOP\r\nRSET\r\n")
        assert _read_codes(c, 5) == [250, 501, 503, 250, 250]


def test_many_transactions_pipelined(server: ServerProcess) -> None:
    n = 60
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send((ENVELOPE + b"DATA\r\n" + MESSAGE) * n + b"QUIT\r\n")
        replies = c.replies(5 * n + 1)
        assert [r.code for r in replies] == [250, 250, 250, 354, 250] * n + [221]
        ids = {r.text for r in replies[4::5]}
        assert len(ids) == n  # a fresh queue id for every message
        assert c.closed()


def test_nothing_after_quit_is_executed(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"NOOP\r\nQUIT\r\nMAIL FROM:<a@example.com>\r\nNOOP\r\n")
        assert _read_codes(c, 2) == [250, 221]
        assert c.closed()
        assert c.buf == b""


def test_data_content_is_not_read_as_commands(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        body = b"Subject: x\r\n\r\nRSET\r\nQUIT\r\nMAIL FROM:<evil@x.test>\r\n.\r\n"
        c.send(ENVELOPE + b"DATA\r\n" + body + b"NOOP\r\n")
        assert _read_codes(c, 6) == [250, 250, 250, 354, 250, 250]
        # The session is alive and out of the transaction.
        c.expect("RCPT TO:<b@example.com>", 503)


def test_bdat_chunk_is_not_read_as_commands(server: ServerProcess) -> None:
    chunk = b"QUIT\r\nRSET\r\n"
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send(ENVELOPE + b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
        replies = c.replies(5)
        assert [r.code for r in replies] == [250, 250, 250, 250, 250]
        assert replies[3].text.startswith("2.0.0 OK: queued as")


def test_pipelining_with_a_delay(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path]
) -> None:
    # The held replies come out in order once the delayed answer is given,
    # and the STARTTLS behind it still upgrades cleanly.
    server = start(server_factory, write_config, cert_pair, "delay = 0.3\n")
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send((ENVELOPE + b"DATA\r\n" + MESSAGE) * 2 + b"STARTTLS\r\n")
        replies = c.replies(11)
        assert [r.code for r in replies] == [250, 250, 250, 354, 250] * 2 + [220]
        c.upgrade()
        assert "STARTTLS" not in c.ehlo()
        c.mail_rcpt()


def test_pipelining_inside_tls(server: ServerProcess) -> None:
    for scheme, tls in (("smtp", False), ("smtps", True)):
        with Smtp.connect(server.port(scheme), tls=tls) as c:
            if not tls:
                c.ehlo()
                c.starttls()
            c.send(b"EHLO x\r\n" + ENVELOPE + b"DATA\r\n" + MESSAGE + b"QUIT\r\n")
            assert _read_codes(c, 7) == [250, 250, 250, 250, 354, 250, 221]


@pytest.mark.parametrize("tls", [(), ("--tls",)], ids=["plain", "starttls"])
def test_swaks_pipeline(server: ServerProcess, tls: tuple[str, ...]) -> None:
    result = swaks(server.port("smtp"), "--pipeline", *tls)
    assert result.returncode == 0, result.stdout
    replies = server_replies(result.stdout)
    assert any(r.startswith("250 2.0.0 OK: queued as") for r in replies), result.stdout
    # swaks sent MAIL, RCPT and DATA without waiting: they are all in its transcript.
    lines = result.stdout.splitlines()
    sent = [i for i, line in enumerate(lines) if line[1:4] in ("-> ", "~> ")]
    texts = [lines[i][4:].split(":")[0] for i in sent]
    i = texts.index("MAIL FROM")
    assert texts[i : i + 3] == ["MAIL FROM", "RCPT TO", "DATA"], texts
    # ...before the first of their replies arrived.
    assert sent[i + 2] == sent[i] + 2, lines[sent[i] : sent[i] + 6]
