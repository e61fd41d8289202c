"""A ``header`` rule added through the control API holds from the next session.

Collecting a message's header fields costs every message, so a session
collects them only when it begins while a rule with a ``header`` matcher is
in force (or ``record = N`` keeps them). A server with no rules file and no
record must still collect them once such a rule arrives through the API, and
stop again once it is gone.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from blackhole.testing import Blackhole

RULE = {
    "name": "retry-header",
    "at": "end",
    "header": {"X-Test": "retry-*"},
    "reply": "451 4.7.1 The header says retry",
}
MESSAGE = "X-Test: retry-me\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def bh() -> Iterator[Blackhole]:
    with Blackhole(tls=False, record=0) as server:
        yield server


def _send(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        return client.data(MESSAGE)


def test_an_api_header_rule_is_seen_by_the_next_session_and_not_after_its_removal(
    bh: Blackhole,
) -> None:
    assert _send(bh.port)[0] == 250
    bh.add_rule(RULE)
    assert _send(bh.port) == (451, b"4.7.1 The header says retry")
    bh.remove_rule("retry-header")
    assert _send(bh.port)[0] == 250
