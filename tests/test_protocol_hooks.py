"""The rules hooks of the sans-IO core, and the sequencing table they hang on.

Transcripts (tests/transcripts/stage_*.txt) cover every stage and verdict
kind as conversations; these cover what a transcript cannot say: the facts
an event carries, the adapter calling at odd moments, and the table itself.
"""

from __future__ import annotations

import base64

import pytest

from blackhole.protocol import MessageReceived, SMTPConnection, StageReached, sasl
from blackhole.protocol import replies as R
from blackhole.protocol.hooks import Stage, Verdict, bits
from blackhole.protocol.states import COMMANDS, TABLE, State, ehlo_reply, help_summary
from tests.smtpdrive import Driver, make_settings

_TRANSACTION = b"EHLO c\r\nMAIL FROM:<a@example.com> SIZE=42\r\nRCPT TO:<b@example.com>\r\n"


def _record(watch: set[Stage], **settings: object) -> Driver:
    return Driver.start(make_settings(**settings), watch=frozenset(watch))


def _state(conn: SMTPConnection) -> str:
    """Every value the session holds. Not vars(): compiled by mypyc, it has no __dict__."""
    values = {name: getattr(conn, name, None) for name in dir(conn)}
    return repr({name: value for name, value in values.items() if not callable(value)})


def test_stage_events_carry_the_facts_of_the_moment() -> None:
    driver = _record({Stage.HELO, Stage.MAIL, Stage.RCPT})
    driver.feed(_TRANSACTION + b"DATA\r\n.\r\n" + _TRANSACTION[8:])
    helo, mail, rcpt, mail2, rcpt2 = driver.stages
    assert (helo.stage, helo.verb, helo.value) == (Stage.HELO, "EHLO", "c")
    assert (mail.value, mail.size, mail.message) == ("a@example.com", 42, 1)
    assert (rcpt.value, rcpt.message) == ("b@example.com", 1)
    # RULES.md "message": the n-th message of the session, from MAIL on.
    assert (mail2.message, rcpt2.message) == (2, 2)
    assert driver.conn.helo == "c" and driver.conn.message_number == 2


def test_message_received_carries_sender_recipients_and_headers() -> None:
    message = b"Subject: Hello\r\nX-Test:  retry-1 \r\n folded\r\n\r\nX-Not: body\r\n.\r\n"
    for collect, expected in (
        (True, [("Subject", "Hello"), ("X-Test", "retry-1 folded")]),
        (False, None),
    ):
        driver = Driver.start(make_settings(collect_headers=collect))
        driver.feed(_TRANSACTION + b"RCPT TO:<c@example.com>\r\nDATA\r\n" + message)
        (event,) = driver.messages
        assert event.sender == "a@example.com"
        assert event.recipients == ["b@example.com", "c@example.com"]
        assert event.headers == expected


def test_dynamic_switch_off_is_decided_in_the_core() -> None:
    # The policy no longer checks dynamic_switch: the core must not report
    # switch values when they are off, even while it collects headers.
    message = b"X-Blackhole-Mode: bounce\r\nX-Blackhole-Delay: 5\r\n\r\n.\r\n"
    for switch, collect, expected in (
        (True, False, ("bounce", "5")),
        (False, False, (None, None)),
        (False, True, (None, None)),
    ):
        driver = Driver.start(make_settings(dynamic_switch=switch, collect_headers=collect))
        driver.feed(_TRANSACTION + b"DATA\r\n" + message)
        (event,) = driver.messages
        assert (event.mode, event.delay) == expected


def test_auth_stage_reports_the_user_never_the_password() -> None:
    plain = base64.b64encode(b"admin\0alice\0s3cret-pass").decode()
    driver = _record({Stage.AUTH})
    driver.feed(f"EHLO c\r\nAUTH PLAIN {plain}\r\n".encode())
    (event,) = driver.stages
    assert event.value == "alice"
    assert "s3cret" not in repr(event) and "s3cret" not in _state(driver.conn)


def test_command_stage_never_shows_credentials() -> None:
    plain = base64.b64encode(b"\0alice\0fail=s3cret").decode()  # fails: AUTH again
    driver = _record({Stage.COMMAND})
    driver.feed(f"EHLO c\r\nAUTH PLAIN {plain}\r\nAUTH LOGIN\r\nYWxpY2U=\r\n".encode())
    values = [e.value for e in driver.stages]
    assert values == ["EHLO c", "AUTH PLAIN", "AUTH LOGIN"]  # no SASL lines either


def test_watch_can_change_at_any_time() -> None:
    driver = Driver.start(make_settings())
    driver.feed(b"EHLO c\r\n")
    assert driver.stages == []
    driver.conn.watch = bits({Stage.NOOP})
    driver.feed(b"NOOP\r\n")
    assert [e.stage for e in driver.stages] == [Stage.NOOP]
    driver.conn.watch = 0
    driver.feed(b"NOOP\r\n")
    assert len(driver.stages) == 1


def test_input_is_held_while_a_stage_waits() -> None:
    conn = SMTPConnection(make_settings())
    conn.watch = bits({Stage.HELO})
    conn.start()
    conn.data_to_send()
    conn.receive_data(b"EHLO c\r\nNOOP\r\n")
    event = conn.next_event()
    assert isinstance(event, StageReached) and conn.data_to_send() == b""
    conn.receive_data(b"NOOP\r\n")  # more pipelined input: held too
    assert conn.data_to_send() == b""
    conn.resolve(Verdict("r", reply=R.Reply(250, None, "hi")))
    assert conn.data_to_send() == b"250 hi\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n"


def test_resolve_without_a_stage_is_a_bug_and_after_an_end_a_no_op() -> None:
    conn = SMTPConnection(make_settings())
    conn.start()
    with pytest.raises(RuntimeError):
        conn.resolve(None)
    conn.watch = bits({Stage.NOOP})
    conn.receive_data(b"NOOP\r\n")
    conn.timeout()  # the client went idle while the rules were deciding
    conn.resolve(None)
    assert conn.data_to_send().endswith(b"421 4.4.2 Idle timeout, closing connection\r\n")


def test_shutdown_while_a_stage_waits_closes_after_it() -> None:
    conn = SMTPConnection(make_settings())
    conn.watch = bits({Stage.NOOP})
    conn.start()
    conn.receive_data(b"NOOP\r\n")
    conn.shutdown()
    conn.resolve(None)
    assert conn.data_to_send().endswith(
        b"250 2.0.0 OK\r\n421 4.3.2 Service shutting down, closing connection\r\n"
    )


def test_a_content_reply_is_the_messages_answer() -> None:
    driver = _record({Stage.CONTENT})
    driver.decide = lambda event: Verdict("r", reply=R.Reply(550, "5.7.1", "spam"))
    driver.feed(_TRANSACTION + b"DATA\r\nhello\r\n.\r\n")
    (event,) = driver.messages
    assert isinstance(event, MessageReceived) and event.reply == R.Reply(550, "5.7.1", "spam")
    assert driver.records[-1].text == "550 5.7.1 spam"


# --- the table ---------------------------------------------------------------------------


def test_every_row_resolves_to_handlers() -> None:
    for (state, verb), entry in TABLE.items():
        assert hasattr(SMTPConnection, entry.commit), (state, verb)
        if entry.refuse is not None:
            assert hasattr(SMTPConnection, entry.refuse)
        # Refused exactly where the row does not allow the verb.
        assert (entry.refusal is None) == (state in COMMANDS[verb].allowed)


def test_auth_offer_comes_from_the_sasl_mechanisms() -> None:
    mechanisms = list(sasl.MECHANISMS)
    assert mechanisms == ["PLAIN", "LOGIN", "CRAM-MD5"]
    lines = ehlo_reply("x", "c", 1, tls=False, auth=True).lines
    assert "AUTH " + " ".join(mechanisms) in lines
    assert COMMANDS["AUTH"].help == "AUTH PLAIN | LOGIN | CRAM-MD5 [initial-response]"


def test_help_summary_follows_the_offer() -> None:
    for tls in (False, True):
        for auth in (False, True):
            listed = help_summary(tls=tls, auth=auth).text.split(": ")[1].split()
            offered = ehlo_reply("x", "c", 1, tls=tls, auth=auth).lines
            assert ("STARTTLS" in listed) == ("STARTTLS" in offered) == tls
            assert ("AUTH" in listed) == auth


def test_rset_is_no_greeting() -> None:
    assert TABLE[State.CONNECTED, "RSET"].next is State.CONNECTED
    assert TABLE[State.RCPT, "RSET"].next is State.GREETED


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("bdat", [False, True], ids=["data", "bdat"])
def test_content_reported_at_every_threshold_however_cut(bytewise: bool, bdat: bool) -> None:
    # RULES.md after_bytes: each content rule acts at its own byte count, so
    # the core reports each threshold once, with the threshold as its size;
    # the header section comes with the events past its end.
    header = b"X-Test: retry-1\r\n\r\n"  # 19 bytes
    content = header + b"y" * 98 + b"\r\n"  # 119 bytes
    driver = Driver.start(make_settings(collect_headers=True), watch=frozenset({Stage.CONTENT}))
    driver.conn.content_thresholds = (10, 19, 100, 500)
    body = b"BDAT 119 LAST\r\n" + content if bdat else b"DATA\r\n" + content + b".\r\n"
    data = (
        _TRANSACTION
        + body
        + _TRANSACTION[8:]
        + (b"BDAT 1 LAST\r\nz" if bdat else b"DATA\r\nz\r\n.\r\n")
    )
    driver.feed_chunks([bytes([b]) for b in data] if bytewise else [data])
    events = [(e.size, e.before, e.headers) for e in driver.stages]
    fields = [("X-Test", "retry-1")]
    assert events == [
        (10, 0, None),  # the header section has not ended yet
        (19, 10, fields),
        (100, 19, fields),
        # The second message: no threshold reached, reported at its end.
        (1 if bdat else 3, 0, []),
    ]
    assert len(driver.messages) == 2


def test_a_bdat_chunk_read_whole_reports_its_thresholds_before_its_answer() -> None:
    # As a read ending inside the chunk does: the content event comes before
    # the chunk's 250 and the next BDAT, however the input was cut (found by
    # test_verdicts_chunking_invariance: in one read, the event came late).
    data = _TRANSACTION + b"BDAT 4\r\nwxyzBDAT 1 LAST\r\nz"
    inside = data.index(b"wxyz") + 2
    runs = []
    for chunks in ([data], [data[:inside], data[inside:]]):
        driver = Driver.start(make_settings(), watch=frozenset({Stage.CONTENT, Stage.COMMAND}))
        driver.conn.content_thresholds = (1,)
        driver.feed_chunks(chunks)
        runs.append([(e.stage, e.verb, e.size) for e in driver.stages])
    whole, cut = runs
    assert whole == cut
    content = whole.index((Stage.CONTENT, "", 1))
    assert whole[content + 1] == (Stage.COMMAND, "BDAT", None)  # BDAT 1 LAST


def test_a_content_reply_is_the_first_one_given() -> None:
    verdicts = [Verdict("a", reply=R.Reply(552, "5.3.4", "first")), None, Verdict("c")]
    driver = Driver.start(
        make_settings(),
        watch=frozenset({Stage.CONTENT}),
        decide=lambda event: verdicts.pop(0),
    )
    driver.conn.content_thresholds = (1, 2, 3)
    driver.feed(_TRANSACTION + b"DATA\r\nabcdef\r\n.\r\n")
    assert driver.raw.endswith(b"552 5.3.4 first\r\n")
