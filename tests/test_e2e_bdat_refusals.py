"""A refused BDAT chunk over real sockets, in SMTP and in LMTP.

RFC 3030 section 2: a 4xx or 5xx to a chunk fails the transaction; chunks
the client had already pipelined are read and dropped, never taken for a
shorter message. RFC 2033 section 4.3: in LMTP a BDAT LAST inside a
transaction is answered once per accepted recipient, whatever the answer,
since a pipelining client counts its replies by its recipients.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blackhole.testing import Blackhole
from tests.smtpclient import Client, Reply

_RECIPIENTS = ("one@example.com", "two@example.com", "three@example.com")


@pytest.fixture(scope="module")
def bh() -> Iterator[Blackhole]:
    with Blackhole(lmtp=True, tls=False, timeout=10, max_message_size=100) as server:
        yield server


@pytest.fixture(autouse=True)
def clean(bh: Blackhole) -> None:
    bh.clear_rules()
    bh.reset()


def _transaction(client: Client, greeting: str) -> None:
    client.expect(f"{greeting} client.test", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    for recipient in _RECIPIENTS:
        client.expect(f"RCPT TO:<{recipient}>", 250)


def _codes(replies: list[Reply]) -> list[int]:
    return [r.code for r in replies]


def test_lmtp_after_a_chunk_over_the_limit(bh: Blackhole) -> None:
    with Client.connect(bh.lmtp_port) as client:
        _transaction(client, "LHLO")
        client.send(b"BDAT 101\r\n" + b"x" * 101 + b"BDAT 6\r\nQUIT\r\nBDAT 6 LAST\r\nRSET\r\n")
        # One reply for each chunk that is not the last, one per recipient for the last.
        replies = client.replies(5)
        assert _codes(replies) == [552, 503, 503, 503, 503], replies
        client.expect("NOOP", 250)  # in step, and nothing of the chunks ran
        # The last chunk ended the failed transaction.
        _transaction(client, "LHLO")
        client.send(b"BDAT 4 LAST\r\nok\r\n")
        assert _codes(client.replies(3)) == [250, 250, 250]


def test_lmtp_after_a_rule_refused_the_first_chunk(bh: Blackhole) -> None:
    bh.add_rule({"name": "no-data", "at": "data", "reply": "550 5.7.1 Not this one"})
    with Client.connect(bh.lmtp_port) as client:
        _transaction(client, "LHLO")
        client.send(b"BDAT 3\r\nabcBDAT 3\r\ndefBDAT 3 LAST\r\nghi")
        replies = client.replies(5)
        assert _codes(replies) == [550, 503, 503, 503, 503], replies
        client.expect("NOOP", 250)
    assert all(m.queue_id is None for m in bh.messages), bh.messages  # none accepted


def test_lmtp_a_refused_last_chunk_is_answered_per_recipient(bh: Blackhole) -> None:
    bh.add_rule({"name": "no-data", "at": "data", "reply": "451 4.3.0 Later"})
    with Client.connect(bh.lmtp_port) as client:
        _transaction(client, "LHLO")
        client.send(b"BDAT 3 LAST\r\nabc")
        replies = client.replies(3)
        assert [(r.code, r.text) for r in replies] == [(451, "4.3.0 Later")] * 3, replies
        # The transaction is over: a new one starts without RSET.
        client.expect("MAIL FROM:<a@example.com>", 250)


def test_smtp_a_rule_refused_first_chunk_fails_the_message(bh: Blackhole) -> None:
    bh.add_rule({"name": "no-data", "at": "data", "reply": "550 5.7.1 Not this one"})
    with Client.connect(bh.port) as client:
        client.expect("EHLO client.test", 250)
        client.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            b"BDAT 3\r\nabcBDAT 3 LAST\r\ndefNOOP\r\n"
        )
        replies = client.replies(5)
        # Not a message made of the second chunk alone.
        assert _codes(replies) == [250, 250, 550, 503, 250], replies
        client.expect("MAIL FROM:<a@example.com>", 250)
    assert all(m.queue_id is None for m in bh.messages), bh.messages  # none accepted


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_after_a_failed_chunk_the_next_mail_needs_no_rset(bh: Blackhole, lmtp: bool) -> None:
    # RFC 3030 section 2: the client sends no more chunks of a failed
    # transaction; its next MAIL starts the next message.
    with Client.connect(bh.lmtp_port if lmtp else bh.port) as client:
        _transaction(client, "LHLO" if lmtp else "EHLO")
        client.send(b"BDAT 101\r\n" + b"x" * 101)
        assert client.reply().code == 552
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.send(b"BDAT 5 LAST\r\nhello")
        assert client.reply().code == 250
    assert any(m.queue_id is not None for m in bh.messages), bh.messages


def test_a_rule_answering_bdat_at_the_command_stage_skips_its_chunk(bh: Blackhole) -> None:
    bh.add_rule({"name": "no-chunks", "at": "command", "sender": "a@example.com", "after": 1,
                 "reply": "550 5.7.1 No chunks here"})  # fmt: skip
    with Client.connect(bh.port) as client:
        client.expect("EHLO client.test", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        # The chunk's 10 octets look like a command: they must not run as one.
        client.send(b"BDAT 10 LAST\r\nRSET x\r\nAB" + b"NOOP\r\n")
        replies = client.replies(2)
        # The failed transaction is over at the NOOP: the rule's sender no longer holds.
        assert [r.code for r in replies] == [550, 250], replies
        client.expect("MAIL FROM:<c@example.com>", 250)  # in step


_TOO_BIG = b"x" * 101


@pytest.mark.parametrize(
    ("chunks", "replies"),
    [
        (b"BDAT 101 LAST\r\n" + _TOO_BIG, [552, 552, 552]),
        (b"BDAT 101\r\n" + _TOO_BIG + b"BDAT 5 LAST\r\nhello", [552, 503, 503, 503]),
    ],
    ids=["last-too-big", "then-last"],
)
def test_lmtp_a_failed_message_counts_once_per_recipient(
    bh: Blackhole, chunks: bytes, replies: list[int]
) -> None:
    # OBSERVE.md: in LMTP each recipient's reply after the data is a message;
    # a chunk over the limit fails the message whether or not it is the last.
    with Client.connect(bh.lmtp_port) as client:
        _transaction(client, "LHLO")
        client.send(chunks)
        assert _codes(client.replies(len(replies))) == replies
        client.expect("QUIT", 221)
    assert bh.stats()["messages"]["rejected"] == 3, bh.stats()["messages"]
