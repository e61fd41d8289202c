"""Counting, the event log and the control API under awkward but legal use.

Each test drives a real server (the ``Blackhole`` testing API: a supervisor,
a hub and two workers) over real sockets, and checks one promise of
OBSERVE.md or docs/observability.md that a first implementation broke.
Tests marked ``xfail(strict=True)`` name a defect whose fix lies outside
the observability code; they start to pass (and so to fail the run, until
the mark goes) once it is fixed. The control API's side is in
test_adversarial_control.py.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blackhole.testing import Blackhole
from tests.jsonlines import written_records
from tests.proctools import wait_until
from tests.smtpclient import Client

BODY = b"Subject: adversarial\r\n\r\nhello\r\n"
IDLE_TIMEOUT = 3  # seconds: long enough for a loaded machine, short for a hang's end


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Blackhole, Path]]:
    events = tmp_path_factory.mktemp("events") / "events.jsonl"
    with Blackhole(lmtp=True, workers=2, event_log=str(events), timeout=IDLE_TIMEOUT) as bh:
        yield bh, events


@pytest.fixture
def bh(server: tuple[Blackhole, Path]) -> Blackhole:
    bh, _events = server
    bh.clear_rules()
    bh.reset()
    return bh


class EventLog:
    """The lines the server appends to its event log from now on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size if path.exists() else 0

    def lines(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as file:
            file.seek(self.start)
            return written_records(file.read())

    def sessions(self, count: int) -> list[dict[str, Any]]:
        """Once ``count`` sessions have ended, their lines."""

        def ended() -> list[dict[str, Any]]:
            found = [line for line in self.lines() if line["type"] == "session"]
            return found if len(found) >= count else []

        return wait_until(ended, what=f"{count} session line(s) in {self.path}")


@pytest.fixture
def events(server: tuple[Blackhole, Path]) -> EventLog:
    return EventLog(server[1])


def samples(bh: Blackhole) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    connection = http.client.HTTPConnection(bh.host, bh._api().port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- LMTP: one message line per recipient -----------------------------------------------


def test_lmtp_lines_and_records_name_the_recipient_each_reply_answers(
    bh: Blackhole, events: EventLog
) -> None:
    """RFC 2033 4.2 gives one reply per recipient and each counts as a message:
    its line must say whom it answered, and what size of data was read."""
    bh.add_rule({"name": "full", "at": "end", "recipient": "full@example.com",
                 "reply": "552 5.2.2 Mailbox full"})  # fmt: skip
    with Client.connect(bh.lmtp_port) as client:
        client.expect("LHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        for recipient in ("one@example.com", "full@example.com", "two@example.com"):
            client.expect(f"RCPT TO:<{recipient}>", 250)
        client.expect("DATA", 354)
        client.send(BODY + b".\r\n")
        assert [reply.code for reply in client.replies(3)] == [250, 552, 250]
        client.expect("QUIT", 221)
    events.sessions(1)
    lines = [line for line in events.lines() if line["type"] == "message"]
    expected = [(["one@example.com"], 250), (["full@example.com"], 552),
                (["two@example.com"], 250)]  # fmt: skip
    assert [(line["recipients"], line["reply"]["code"]) for line in lines] == expected
    assert [line["size"] for line in lines] == [len(BODY)] * 3
    records = bh.wait_for(messages=3)
    assert sorted((m.recipients, m.reply.code) for m in records) == sorted(expected)
    assert [m.size for m in records] == [len(BODY)] * 3
    assert all(m.headers["subject"] == "adversarial" for m in records)
    # The bytes still count once (docs/observability.md, Counting).
    assert bh.stats()["bytes"] == len(BODY)


def test_lmtp_lines_name_the_rule_of_their_own_recipient(bh: Blackhole, events: EventLog) -> None:
    bh.add_rule({"name": "full", "at": "end", "recipient": "full@example.com",
                 "reply": "552 5.2.2 Mailbox full"})  # fmt: skip
    with Client.connect(bh.lmtp_port) as client:
        client.expect("LHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<one@example.com>", 250)
        client.expect("RCPT TO:<full@example.com>", 250)
        client.expect("DATA", 354)
        client.send(BODY + b".\r\n")
        assert [reply.code for reply in client.replies(2)] == [250, 552]
        client.expect("QUIT", 221)
    events.sessions(1)
    lines = [line for line in events.lines() if line["type"] == "message"]
    assert [(line["reply"]["code"], line["rule"]) for line in lines] == [(250, None), (552, "full")]


def test_lmtp_lines_after_a_close_name_the_closing_rule(bh: Blackhole, events: EventLog) -> None:
    """RULES.md "LMTP": close answers its recipient and every later one with
    its 421; each of those replies was decided by that rule."""
    bh.add_rule({"name": "bye", "at": "end", "recipient": "two@example.com", "close": True})
    with Client.connect(bh.lmtp_port) as client:
        client.expect("LHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        for recipient in ("one@example.com", "two@example.com", "three@example.com"):
            client.expect(f"RCPT TO:<{recipient}>", 250)
        client.expect("DATA", 354)
        client.send(BODY + b".\r\n")
        assert [reply.code for reply in client.replies(3)] == [250, 421, 421]
    events.sessions(1)
    lines = [line for line in events.lines() if line["type"] == "message"]
    assert [(line["recipients"], line["reply"]["code"], line["rule"]) for line in lines] == [
        (["one@example.com"], 250, None),
        (["two@example.com"], 421, "bye"),
        (["three@example.com"], 421, "bye"),
    ]


# --- a refused MAIL is the message's deciding reply --------------------------------------


def test_a_refused_mail_is_counted_with_its_own_reply(bh: Blackhole, events: EventLog) -> None:
    """RFC 5321 3.3: a refused MAIL opens no transaction, so the 503 a RCPT
    gets afterwards is no reply of the refused message."""
    bh.add_rule({"name": "no-sender", "at": "mail", "sender": "bad@example.com",
                 "reply": "550 5.7.1 Sender refused"})  # fmt: skip
    with Client.connect(bh.port) as client:
        client.expect("EHLO adversarial", 250)
        client.expect("MAIL FROM:<bad@example.com>", 550)
        client.expect("RCPT TO:<b@example.com>", 503)
        client.expect("DATA", 503)
        assert client.transaction(BODY).code == 250
        client.expect("QUIT", 221)
    events.sessions(1)
    lines = [line for line in events.lines() if line["type"] == "message"]
    assert [(line["outcome"], line["reply"]["code"], line["rule"]) for line in lines] == [
        ("rejected", 550, "no-sender"),
        ("accepted", 250, None),
    ]
    # OBSERVE.md: ``sender`` is the MAIL FROM address, the refused one too.
    assert [line["sender"] for line in lines] == ["bad@example.com", "a@example.com"]
    assert bh.stats()["messages"] == {"accepted": 1, "rejected": 1, "deferred": 0, "dropped": 0}


@pytest.mark.parametrize("ending", ["RSET", "QUIT"])
def test_a_transaction_refused_at_rcpt_names_its_sender_however_it_ends(
    bh: Blackhole, events: EventLog, ending: str
) -> None:
    """smtplib sends RSET after its recipients are refused: the message is
    counted at that RSET's reply, and its line still names the sender and
    the recipients the transaction had."""
    bh.add_rule({"name": "full", "at": "rcpt", "recipient": "full@example.com",
                 "reply": "452 4.2.2 Mailbox full"})  # fmt: skip
    with Client.connect(bh.port) as client:
        client.expect("EHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<one@example.com>", 250)
        client.expect("RCPT TO:<full@example.com>", 452)
        client.expect("RSET", 250)  # the transaction ends here
        if ending == "QUIT":
            client.expect("MAIL FROM:<c@example.com>", 250)
            client.expect("RCPT TO:<full@example.com>", 452)
        client.expect("QUIT", 221)
    events.sessions(1)
    lines = [line for line in events.lines() if line["type"] == "message"]
    expected = [("a@example.com", ["one@example.com"], "deferred")]
    if ending == "QUIT":
        expected.append(("c@example.com", [], "deferred"))
    assert [(line["sender"], line["recipients"], line["outcome"]) for line in lines] == expected


def test_a_refused_mail_inside_a_transaction_leaves_it_open(bh: Blackhole) -> None:
    """RFC 5321 4.1.4: a MAIL inside a transaction is refused and the
    transaction goes on; its message is the one counted."""
    with Client.connect(bh.port) as client:
        client.expect("EHLO adversarial", 250)
        client.mail_rcpt()
        client.expect("MAIL FROM:<c@example.com>", 503)
        assert client.data(BODY).code == 250
        client.expect("QUIT", 221)
    [message] = bh.wait_for(messages=1)
    assert (message.sender, message.reply.code) == ("a@example.com", 250)
    assert bh.stats()["messages"] == {"accepted": 1, "rejected": 0, "deferred": 0, "dropped": 0}


# --- commands without a reply -------------------------------------------------------------


@pytest.mark.parametrize("action", ["drop", "reset"])
def test_a_command_a_rule_leaves_unanswered_is_still_a_command(
    bh: Blackhole, events: EventLog, action: str
) -> None:
    bh.add_rule({"name": "cut", "at": "rcpt", action: True})
    with Client.connect(bh.port) as client:
        client.expect("EHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.send(b"RCPT TO:<b@example.com>\r\n")
        assert client.closed()
    [session] = events.sessions(1)
    assert session["end"] == ("reset" if action == "reset" else "dropped")
    assert bh.stats()["messages"]["dropped"] == 1
    assert samples(bh)["blackhole_commands_total", frozenset({("verb", "RCPT")})] == 1
    assert session["commands"] == 3


# --- how a session ends -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["client", "server"])
def test_a_hang_ends_by_whoever_gives_up(bh: Blackhole, events: EventLog, who: str) -> None:
    """RULES.md: under ``hang`` the session ends at the client's or the server's
    timeout; docs/observability.md: ``dropped`` is for the server closing it."""
    bh.add_rule({"name": "hang", "at": "helo", "hang": True})
    with Client.connect(bh.port) as client:
        client.send(b"EHLO adversarial\r\n")
        # The rule has acted once the server counts it: then the client leaves.
        wait_until(lambda: bh.stats()["rules"].get("hang") == 1, what="the hang rule's hit")
        if who == "server":
            assert client.closed(timeout=IDLE_TIMEOUT * 5)
    [session] = events.sessions(1)
    assert session["end"] == ("client_closed" if who == "client" else "timeout")


def leave_with_a_reset(client: Client) -> None:
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


@pytest.mark.parametrize("at", ["rcpt", "end"])
def test_a_client_leaving_during_a_delay_ends_its_session_at_once(
    bh: Blackhole, events: EventLog, at: str
) -> None:
    """docs/observability.md: ``dropped`` is a connection that ended inside the
    transaction, the client leaving; the accepted count is the 250s clients
    saw. The delay (60 s) outlasts every wait here: the session must end as
    the client resets, not when the delay runs out, and count no answer."""
    bh.add_rule({"name": "slow", "at": at, "delay": 60})
    client = Client.connect(bh.port)
    client.expect("EHLO adversarial", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.send(b"RCPT TO:<b@example.com>\r\n")
    if at == "end":
        assert client.reply().code == 250
        client.expect("DATA", 354)
        client.send(BODY + b".\r\n")
    wait_until(lambda: bh.stats()["rules"].get("slow") == 1, what="the delay rule's hit")
    leave_with_a_reset(client)
    [session] = events.sessions(1)
    assert session["end"] == "client_closed"
    assert bh.stats()["messages"] == {"accepted": 0, "rejected": 0, "deferred": 0, "dropped": 1}
    assert bh.stats()["sessions_open"] == 0


def test_a_client_leaving_during_the_modes_delay_is_not_counted_answered(
    tmp_path: Path,
) -> None:
    """The same for the mode's own delay (``delay``), which no rule gives."""
    events = EventLog(tmp_path / "events.jsonl")
    with Blackhole(delay="60", event_log=str(events.path)) as slow:
        client = Client.connect(slow.port)
        client.expect("EHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.expect("DATA", 354)
        client.send(BODY + b".\r\n")
        delayed = ("blackhole_injected_delay_seconds_total", frozenset({("rule", "mode")}))
        wait_until(lambda: samples(slow).get(delayed) == 60, what="the delay begun")
        leave_with_a_reset(client)
        [session] = events.sessions(1)
        assert session["end"] == "client_closed"
        counts = slow.stats()["messages"]
        assert counts == {"accepted": 0, "rejected": 0, "deferred": 0, "dropped": 1}


@pytest.mark.parametrize("command", ["DATA", "BDAT"])
def test_a_message_cut_short_counts_the_data_read(
    bh: Blackhole, events: EventLog, command: str
) -> None:
    """docs/observability.md: a message line's ``size`` is the bytes of message
    data read, null only when none was; ``blackhole_message_bytes_total``
    counts the data received. A client that leaves in the middle of its
    message has sent data all the same."""
    content = b"Subject: cut\r\n\r\n" + b"x" * 998 + b"\r\n"
    client = Client.connect(bh.port)
    client.expect("EHLO adversarial", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<b@example.com>", 250)
    if command == "DATA":
        client.expect("DATA", 354)
        client.send(content)
    else:
        client.send(b"BDAT %d\r\n" % len(content) + content)
        assert client.reply().code == 250  # the chunk is read
    client.close()  # a FIN: behind the data, so the server reads it all first
    events.sessions(1)
    [line] = [line for line in events.lines() if line["type"] == "message"]
    assert line["outcome"] == "dropped"
    assert line["size"] == len(content)
    assert bh.stats()["bytes"] == line["size"]


def test_an_idle_timeout_inside_a_transaction_defers_its_message(
    bh: Blackhole, events: EventLog
) -> None:
    """OBSERVE.md: a message is deferred when the server's last reply in its
    transaction was a 4xx. The idle timeout's 421 is that reply."""
    with Client.connect(bh.port) as client:
        client.expect("EHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.sock.settimeout(IDLE_TIMEOUT * 5)
        assert client.reply().code == 421
    [session] = events.sessions(1)
    assert session["end"] == "timeout"
    [line] = [line for line in events.lines() if line["type"] == "message"]
    assert (line["outcome"], line["reply"]["code"]) == ("deferred", 421)
    assert bh.stats()["messages"] == {"accepted": 0, "rejected": 0, "deferred": 1, "dropped": 0}


def test_a_stop_that_cuts_a_transaction_short_counts_its_421(tmp_path: Path) -> None:
    """A stop lets a transaction finish for ``grace_period``, then says 421
    4.3.2 (RFC 5321 section 3.8): that reply is counted like any other, and
    it defers the message it cut short."""
    events = EventLog(tmp_path / "events.jsonl")
    with Blackhole(event_log=str(events.path), grace_period=1) as server:
        client = Client.connect(server.port)
        client.expect("EHLO adversarial", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        server.stop()
        reply = client.reply()
        assert (reply.code, reply.enhanced) == (421, "4.3.2")
        client.close()
    [session] = events.sessions(1)
    assert session["end"] == "shutdown"
    [line] = [line for line in events.lines() if line["type"] == "message"]
    assert (line["outcome"], line["reply"]["code"]) == ("deferred", 421)


def test_a_stop_during_a_delayed_answer_defers_the_message_read(tmp_path: Path) -> None:
    """The data was read: the message the stop's 421 defers has its size."""
    events = EventLog(tmp_path / "events.jsonl")
    with Blackhole(event_log=str(events.path), grace_period=1, delay="30") as server:
        client = Client.connect(server.port)
        client.expect("EHLO adversarial", 250)
        client.mail_rcpt()
        client.expect("DATA", 354)
        client.send(BODY + b".\r\n")
        delayed = ("blackhole_injected_delay_seconds_total", frozenset({("rule", "mode")}))
        wait_until(lambda: samples(server).get(delayed) == 30, what="the delay begun")
        server.stop()
        assert client.reply().code == 421
        client.close()
    events.sessions(1)
    [line] = [line for line in events.lines() if line["type"] == "message"]
    assert (line["outcome"], line["reply"]["code"], line["size"]) == ("deferred", 421, len(BODY))


def test_a_mail_refused_by_its_own_checks_names_no_earlier_sender(
    bh: Blackhole, events: EventLog
) -> None:
    with Client.connect(bh.port) as client:
        client.expect("EHLO adversarial", 250)
        assert client.transaction(BODY).code == 250
        client.expect("MAIL FROM:<big@example.com> SIZE=999999999999", 552)
        client.expect("MAIL FROM: garbage", 501)
        client.expect("QUIT", 221)
    events.sessions(1)
    lines = [line for line in events.lines() if line["type"] == "message"]
    assert [(line["outcome"], line["sender"], line["recipients"]) for line in lines] == [
        ("accepted", "a@example.com", ["b@example.com"]),
        ("rejected", None, []),
        ("rejected", None, []),
    ]


def test_a_failed_handshake_by_rule_ends_in_error_and_counts_failed(
    bh: Blackhole, events: EventLog
) -> None:
    bh.add_rule({"name": "tls-fail", "at": "starttls", "tls": "fail"})
    with Client.connect(bh.port) as client:
        client.expect("EHLO adversarial", 250)
        client.expect("STARTTLS", 220)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            bh.client_ssl_context().wrap_socket(client.sock, server_hostname="127.0.0.1")
    [session] = events.sessions(1)
    assert session["end"] == "error"
    assert bh.stats()["tls"] == {"ok": 0, "failed": 1}
