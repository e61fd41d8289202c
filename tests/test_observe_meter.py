"""The session meter over the sans-IO core: which replies and messages count, and how.

No sockets: the core is fed command lines, the adapter's part (answering a
message, ending the session) is played by hand, and the counts are read
back through a ``Snapshot``.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate

import pytest

from blackhole.observe.counters import Counters
from blackhole.observe.layout import MECHANISMS, SESSION_ENDS, SIZE_BOUNDS, Layout
from blackhole.observe.meter import SessionMeter, verb_slots
from blackhole.observe.snapshot import Snapshot
from blackhole.protocol import replies as R
from blackhole.protocol import sasl
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived, StageReached
from blackhole.protocol.hooks import Stage, Verdict, bits
from blackhole.protocol.replies import Reply
from blackhole.protocol.settings import SessionSettings

LAYOUT = Layout(["l"])
CLIENT_CLOSED = SESSION_ENDS.index("client_closed")
QUEUED = R.queued("Q1")


class Session:
    """A core with a meter; ``answer`` is the reply given to every message."""

    def __init__(self, answer: Reply = QUEUED, **settings: object) -> None:
        self.counters = Counters.private(LAYOUT)
        self.meter = SessionMeter(self.counters, 0, verb_slots(self.counters.layout))
        self.core = SMTPConnection(SessionSettings(**settings))  # type: ignore[arg-type]
        self.core.meter = self.meter
        self.answer = answer
        self.outcomes: list[tuple[int, bytes | None, int | None]] = []
        self.meter.on_message = lambda *args: self.outcomes.append(args)
        self.core.start()
        self.core.data_to_send()

    def send(self, data: bytes) -> bytes:
        self.core.receive_data(data)
        while (event := self.core.next_event()) is not None:
            if isinstance(event, MessageReceived):
                self.meter.size = event.size
                self.core.send(self.answer)
        return self.core.data_to_send()

    def end(self) -> Snapshot:
        self.meter.end(CLIENT_CLOSED)
        return Snapshot(LAYOUT, tuple(self.counters.value(i) for i in range(LAYOUT.size)))


MAIL = b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\n"
CONTENT = b"DATA\r\nSubject: s\r\n\r\nbody\r\n.\r\n"


def outcomes(snapshot: Snapshot) -> dict[str, int]:
    return {name: value for name, value in snapshot.message_totals().items() if value}


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (R.queued("Q1"), "accepted"),
        (Reply(550, "5.7.1", "Rejected"), "rejected"),
        (R.R451_INTERNAL, "deferred"),
    ],
)
def test_the_reply_after_the_data_decides(answer: Reply, outcome: str) -> None:
    session = Session(answer)
    session.send(MAIL + CONTENT)
    session.send(b"QUIT\r\n")
    snapshot = session.end()
    assert outcomes(snapshot) == {outcome: 1}
    assert snapshot.replies()[("end", answer.code)] == 1
    assert snapshot.message_bytes() == {"l": len(b"Subject: s\r\n\r\nbody\r\n")}


def test_a_refused_recipient_then_rset_is_one_deferred_message() -> None:
    session = Session(max_recipients=0)
    reply = session.send(MAIL + b"RSET\r\n")
    assert b"452" in reply  # too many recipients: 4xx at RCPT
    assert outcomes(session.end()) == {"deferred": 1}
    assert session.outcomes[0][1] is not None and session.outcomes[0][1].startswith(b"452")


def test_an_abandoned_transaction_after_only_positive_replies_is_no_message() -> None:
    session = Session()
    session.send(MAIL + b"RSET\r\nQUIT\r\n")
    assert outcomes(session.end()) == {}


def test_a_connection_ending_inside_a_transaction_is_dropped() -> None:
    session = Session()
    session.send(MAIL + b"DATA\r\nSubject: half")
    snapshot = session.end()
    assert outcomes(snapshot) == {"dropped": 1}
    assert snapshot.session_ends()["client_closed"] == 1
    assert snapshot.sessions_open() == {"l": 0}


def test_a_refused_mail_then_an_accepted_one_are_two_messages() -> None:
    session = Session(auth_required=True)
    session.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\n")  # 530: AUTH first
    session.send(b"QUIT\r\n")
    assert outcomes(session.end()) == {"rejected": 1}


def test_every_command_and_reply_counts_with_its_verb() -> None:
    session = Session()
    session.send(b"EHLO c\r\nNOOP\r\nFROB\r\n")
    session.send(MAIL[8:] + CONTENT + b"QUIT\r\n")
    snapshot = session.end()
    commands = {verb: n for verb, n in snapshot.commands().items() if n}
    assert commands == {
        "EHLO": 1, "NOOP": 1, "unknown": 1, "MAIL": 1, "RCPT": 1, "DATA": 1, "QUIT": 1,
    }  # fmt: skip
    replies = {key: n for key, n in snapshot.replies().items() if n}
    assert replies == {
        ("connect", 220): 1, ("EHLO", 250): 1, ("NOOP", 250): 1, ("unknown", 502): 1,
        ("MAIL", 250): 1,
        ("RCPT", 250): 1, ("DATA", 354): 1, ("end", 250): 1, ("QUIT", 221): 1,
    }  # fmt: skip
    assert session.meter.commands == 7


@pytest.mark.parametrize(
    ("response", "code"), [(b"\xff\xfe", 501), (b"QUFB" * 4000, 500)], ids=["not-text", "overlong"]
)
def test_a_sasl_response_that_ends_the_exchange_is_auths_failure(
    response: bytes, code: int
) -> None:
    # RFC 4954: 501 for a response that cannot be decoded, 500 5.5.6 for one
    # over the line limit. Either is AUTH's reply and a failed AUTH, never a
    # command of its own.
    session = Session()
    session.send(b"EHLO c\r\nAUTH LOGIN\r\n" + response + b"\r\nNOOP\r\n")
    snapshot = session.end()
    replies = {key: n for key, n in snapshot.replies().items() if n}
    assert replies == {
        ("connect", 220): 1, ("EHLO", 250): 1, ("AUTH", 334): 1, ("AUTH", code): 1,
        ("NOOP", 250): 1,
    }  # fmt: skip
    assert {key: n for key, n in snapshot.auth().items() if n} == {("LOGIN", "failed"): 1}


def test_an_auth_result_counts_under_the_mechanism_its_command_named() -> None:
    # An unknown mechanism's 504 is a failure of "unknown"; the next AUTH's
    # result is its own mechanism's, named in any case.
    session = Session()
    session.send(b"EHLO c\r\nAUTH XOAUTH9\r\nAUTH plain AGEAYg==\r\n")
    snapshot = session.end()
    assert {key: n for key, n in snapshot.auth().items() if n} == {
        ("unknown", "failed"): 1, ("PLAIN", "ok"): 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "lines", "code"),
    [
        ({}, b"AUTH login\r\n", 503),  # before EHLO: out of sequence
        ({}, b"EHLO c\r\nAUTH PLAIN AGEAYg==\r\nAUTH login\r\n", 503),  # authenticated
        ({"auth_tls_only": True}, b"EHLO c\r\nAUTH login\r\n", 538),  # TLS first
    ],
    ids=["out-of-sequence", "authenticated-already", "tls-required"],
)
def test_an_auth_refused_before_its_exchange_fails_the_mechanism_it_names(
    settings: dict[str, object], lines: bytes, code: int
) -> None:
    # OBSERVE.md: blackhole_auth_total's mechanism is the one the client named.
    session = Session(QUEUED, **settings)
    assert f"{code} ".encode() in session.send(lines)
    auth = {key: n for key, n in session.end().auth().items() if n}
    assert auth.pop(("LOGIN", "failed")) == 1
    assert auth in ({}, {("PLAIN", "ok"): 1})


def test_an_auth_a_command_rule_refuses_fails_the_mechanism_it_names() -> None:
    session = Session()
    session.core.watch = bits({Stage.COMMAND})
    session.core.receive_data(b"EHLO c\r\nAUTH LOGIN\r\n")
    refusal = Verdict("no-auth", reply=Reply(454, "4.7.0", "not now"))
    while (event := session.core.next_event()) is not None:
        assert isinstance(event, StageReached)
        session.core.resolve(refusal if event.verb == "AUTH" else None)
    assert session.core.data_to_send().endswith(b"454 4.7.0 not now\r\n")
    assert {key: n for key, n in session.end().auth().items() if n} == {("LOGIN", "failed"): 1}


def test_every_mechanism_the_server_offers_has_its_own_auth_counts() -> None:
    # The core marks an exchange with its mechanism (sasl); the counts are
    # laid out by layout.MECHANISMS: one missing there would go uncounted.
    assert (*sasl.MECHANISMS, "unknown") == MECHANISMS


def test_replies_are_counted_by_the_time_they_are_handed_out() -> None:
    """Before the adapter writes them: data_to_send() has counted them."""
    session = Session()
    session.core.receive_data(b"NOOP\r\n")
    before = session.counters.value(LAYOUT.commands + 8)  # NOOP
    session.core.data_to_send()
    assert session.counters.value(LAYOUT.commands + 8) == before + 1


def test_lmtp_counts_one_message_per_recipient_reply() -> None:
    # RFC 2033 4.2: after the data, one reply per recipient, each its own outcome.
    session = Session(lmtp=True)
    session.answer = None  # type: ignore[assignment]
    session.core.receive_data(b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n")
    session.core.data_to_send()
    session.core.receive_data(CONTENT)
    event = session.core.next_event()
    assert isinstance(event, MessageReceived)
    session.meter.size = event.size
    session.core.send([R.queued("Q1"), R.R451_INTERNAL])
    session.core.data_to_send()
    snapshot = session.end()
    assert outcomes(snapshot) == {"accepted": 1, "deferred": 1}
    assert snapshot.replies()[("end", 250)] == 1
    assert snapshot.replies()[("end", 451)] == 1
    assert snapshot.message_bytes() == {"l": len(b"Subject: s\r\n\r\nbody\r\n")}  # once


def test_replies_whose_text_varies_all_count_past_the_workers_cache() -> None:
    # Each message's 250 names its own queue id: more distinct replies than
    # the meter keeps resolved, one at a time and pipelined, all counted.
    session = Session()
    session.send(b"EHLO c\r\n")
    messages = 1500
    for n in range(messages):
        session.answer = R.queued(f"Q{n}")
        if n % 2:
            session.send(MAIL[8:] + CONTENT)  # pipelined: one batch
        else:
            for line in (b"MAIL FROM:<a@x>\r\n", b"RCPT TO:<b@x>\r\n", CONTENT):
                session.send(line)
    snapshot = session.end()
    assert outcomes(snapshot) == {"accepted": messages}
    assert snapshot.replies()[("end", 250)] == messages
    assert snapshot.commands()["MAIL"] == messages
    assert session.meter.commands == 1 + 3 * messages


def test_message_sizes_fall_in_the_bucket_whose_bound_they_do_not_exceed() -> None:
    # Prometheus `le`: a size equal to a bound is in that bound's bucket, one
    # byte more is in the next; past the last bound only +Inf holds it.
    sizes = [0, 1, *(int(b) + d for b in SIZE_BOUNDS for d in (-1, 0, 1)), 10**12]
    session = Session()
    for size in sizes:
        session.send(MAIL)
        session.core.receive_data(CONTENT)
        event = session.core.next_event()
        assert isinstance(event, MessageReceived)
        session.meter.size = size  # as the adapter sets it, here any size at all
        session.core.send(QUEUED)
        session.core.data_to_send()
    histogram = session.end().size_histogram()
    expected = [0] * (len(SIZE_BOUNDS) + 1)
    for size in sizes:
        expected[bisect_left(SIZE_BOUNDS, size)] += 1
    assert list(histogram.cumulative) == list(accumulate(expected))
    assert histogram.sum == sum(sizes)
