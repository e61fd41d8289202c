"""``SMTPConnection.content_read``: the size a message cut short is counted with.

docs/observability.md: a message line's ``size`` is the bytes of message data
read, null only when none was. A session that ends in the middle of DATA or
BDAT has had data read all the same; the core says how much.
"""

from __future__ import annotations

import pytest

from blackhole.protocol import SMTPConnection
from tests.smtpdrive import make_settings

OPENING = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"


def started(extra: bytes) -> SMTPConnection:
    core = SMTPConnection(make_settings())
    core.start()
    core.receive_data(OPENING + extra)
    core.data_to_send()
    return core


def test_no_data_read_is_none() -> None:
    assert started(b"").content_read is None
    assert started(b"DATA\r\n").content_read is None


@pytest.mark.parametrize(
    ("content", "size"),
    [
        (b"Subject: x\r\n\r\nhalf a mes", 24),  # the last octets were held back
        (b"one\r\n", 5),
        (b"one\r\n..two\r\n", 11),  # a stuffed dot is no content
        (b"one\r\n.", 5),  # a stuffed dot, or a terminator begun: not content
        (b"one\r\n" + b"x" * 5000, 5005),
    ],
)
def test_data_cut_short_counts_what_was_read(content: bytes, size: int) -> None:
    core = started(b"DATA\r\n")
    core.receive_data(content)
    assert core.reading_content
    assert core.content_read == size


def test_a_bdat_chunk_counts_whole() -> None:
    core = started(b"BDAT 100\r\n" + b"x" * 60)
    assert core.content_read == 60
    core.receive_data(b"x" * 40)
    assert core.content_read == 100


def test_commands_pipelined_behind_the_content_are_not_content() -> None:
    # The message is complete and waits for its answer; the input holds
    # the next transaction's commands.
    core = started(b"DATA\r\none\r\n.\r\nMAIL FROM:<c@d>\r\nRCPT TO:<e@f>\r\n")
    assert not core.reading_content
    assert core.content_read == 5
