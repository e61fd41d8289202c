"""LMTP in the sans-IO core (RFC 2033): the parts transcripts cannot show.

The conversation itself is in tests/transcripts/lmtp*.txt; here: LHLO in an
SMTP session, and ``send()`` refusing a wrong number of replies.
"""

from __future__ import annotations

import pytest

from blackhole.protocol import MessageReceived
from blackhole.protocol.replies import R250_OK, R502_UNKNOWN, Reply, queued
from tests.smtpdrive import Driver, make_settings

_MESSAGE = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n.\r\n"


def test_lhlo_is_unknown_in_smtp() -> None:
    driver = Driver.start(make_settings())
    driver.feed(b"LHLO c\r\n")
    assert driver.records[-1].text == R502_UNKNOWN.wire.decode().strip()


def _held(lmtp: bool) -> Driver:
    """A session with a two-recipient message waiting for its answer."""
    held: list[MessageReceived] = []

    def keep(event: MessageReceived) -> Reply:
        held.append(event)
        raise _HoldError

    driver = Driver.start(make_settings(lmtp=lmtp), keep)
    with pytest.raises(_HoldError):
        driver.feed(b"LHLO c\r\n" if lmtp else b"EHLO c\r\n")
        driver.feed(_MESSAGE)
    assert held and held[0].lmtp is lmtp and len(held[0].recipients) == 2
    return driver


class _HoldError(Exception):
    """Stops the driver with the message unanswered."""


@pytest.mark.parametrize("count", [0, 1, 3])
def test_lmtp_send_needs_one_reply_per_recipient(count: int) -> None:
    driver = _held(lmtp=True)
    with pytest.raises(ValueError, match="recipient"):
        driver.conn.send([R250_OK] * count)
    with pytest.raises(ValueError, match="one reply per recipient"):
        driver.conn.send(R250_OK)
    driver.conn.send([queued("A"), queued("B")])
    assert driver.conn.data_to_send().count(b"\r\n") == 2


def test_smtp_send_takes_one_reply() -> None:
    driver = _held(lmtp=False)
    with pytest.raises(ValueError, match="SMTP"):
        driver.conn.send([R250_OK, R250_OK])
    driver.conn.send(queued("A"))
    assert driver.conn.data_to_send() == queued("A").wire
