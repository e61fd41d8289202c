"""Modes, delays, listener flags and X-Blackhole-* switches, over real sockets.

Each test starts the real server with the configuration it is about and
checks the final replies a client sees. Delays are short (0.2-0.5 s) and the
timing assertions are bounds for correctness ("not before the delay"), with
generous upper limits so that a loaded machine cannot make them fail.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from tests.e2e import Client, Factory, Reply, assert_clean_log, queue_id, start
from tests.serverproc import ServerProcess

# The classic bounce answers (SPEC "The conversation"), code -> text.
CLASSIC_BOUNCES = {
    450: "Requested mail action not taken: mailbox unavailable",
    451: "Requested action aborted: local error in processing",
    452: "Requested action not taken: insufficient system storage",
    458: "Unable to queue message",
    521: "Machine does not accept mail",
    550: "Requested action not taken: mailbox unavailable",
    551: "User not local",
    552: "Requested mail action aborted: exceeded storage allocation",
    553: "Requested action not taken: mailbox name not allowed",
    571: "Blocked",
}
_ENHANCED = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3} (.*)")


def assert_bounce(reply: Reply) -> None:
    assert reply.code in CLASSIC_BOUNCES, reply
    m = _ENHANCED.fullmatch(reply.text)
    assert m is not None, reply
    # RFC 3463 section 2: the enhanced class matches the reply's first digit.
    assert m.group(1) == str(reply.code)[0], reply
    assert m.group(2) == CLASSIC_BOUNCES[reply.code], reply


def send(port: int, body: bytes = b"Subject: t\r\n\r\nhello\r\n", count: int = 1) -> list[Reply]:
    """``count`` messages on one connection; their final replies."""
    with Client.connect(port) as client:
        client.expect("EHLO client.test", 250)
        return [client.transaction(body) for _ in range(count)]


def timed(port: int, body: bytes = b"Subject: t\r\n\r\nhello\r\n") -> tuple[Reply, float]:
    """One message; its final reply and how long after the final dot it came."""
    with Client.connect(port) as client:
        client.expect("EHLO client.test", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.expect("DATA", 354)
        client.send(body)
        started = time.monotonic()
        client.send(b".\r\n")
        reply = client.reply()
        return reply, time.monotonic() - started


def server_with(factory: Factory, tmp_path: Path, text: str) -> ServerProcess:
    return start(factory, tmp_path, text)


# --- modes ----------------------------------------------------------------------------


def test_accept_mode(server_factory: Factory, tmp_path: Path) -> None:
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0\nmode = accept\n")
    replies = send(server.port(), count=3)
    assert len({queue_id(r) for r in replies}) == 3


def test_bounce_mode_uses_the_classic_codes_and_texts(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0\nmode = bounce\n")
    replies = send(server.port(), count=40)
    for reply in replies:
        assert_bounce(reply)
    # Forty draws from ten codes: all the same would mean no choice at all.
    assert len({r.code for r in replies}) > 3


def test_random_mode_mixes_accepts_and_bounces(server_factory: Factory, tmp_path: Path) -> None:
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0\nmode = random\n")
    replies = send(server.port(), count=80)
    accepted = [r for r in replies if r.code == 250]
    bounced = [r for r in replies if r.code != 250]
    for reply in accepted:
        assert queue_id(reply)
    for reply in bounced:
        assert_bounce(reply)
    # Uniform over 11 answers: P(no accept in 80) = (10/11)^80 < 0.0005.
    assert accepted and bounced


def test_seed_makes_random_answers_replayable(server_factory: Factory, tmp_path: Path) -> None:
    text = "listen = 127.0.0.1:0\nmode = random\nseed = 1234\n"
    runs = []
    for _ in range(2):
        server = server_with(server_factory, tmp_path, text)
        runs.append([r.code for r in send(server.port(), count=25)])
        assert server.stop() == 0
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 1
    other = server_with(server_factory, tmp_path, text.replace("1234", "4321"))
    assert [r.code for r in send(other.port(), count=25)] != runs[0]


# --- delays -----------------------------------------------------------------------------------


def test_fixed_delay(server_factory: Factory, tmp_path: Path) -> None:
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0\ndelay = 0.3\n")
    reply, waited = timed(server.port())
    assert queue_id(reply)
    assert 0.3 <= waited < 10, waited
    # Commands pipelined behind a delayed message wait for its answer, then
    # are answered in order (RFC 2920 section 3.1).
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        client.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
            b"Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<c@example.com>\r\nNOOP\r\nQUIT\r\n"
        )
        assert [client.reply().code for _ in range(3)] == [250, 250, 354]
        started = time.monotonic()
        assert queue_id(client.reply())
        assert time.monotonic() - started >= 0.25  # the 0.3 s, less the send time
        assert [client.reply().code for _ in range(3)] == [250, 250, 221]
        assert client.closed()
    assert_clean_log(server)


def test_delay_range_on_a_listener(server_factory: Factory, tmp_path: Path) -> None:
    # The classic parser accepted delay=A-B on a listener, then crashed on it.
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0 delay=0.2-0.4\n")
    for _ in range(2):
        reply, waited = timed(server.port())
        assert queue_id(reply)
        assert 0.2 <= waited < 10, waited
    assert_clean_log(server)


def test_a_delay_never_blocks_other_sessions(server_factory: Factory, tmp_path: Path) -> None:
    server = server_with(
        server_factory, tmp_path, "listen = 127.0.0.1:0 delay=1, 127.0.0.1:0\ntimeout = 10\n"
    )
    slow_port, fast_port = server.port("smtp", 0), server.port("smtp", 1)
    with Client.connect(slow_port) as slow:
        slow.expect("EHLO client.test", 250)
        slow.expect("MAIL FROM:<a@example.com>", 250)
        slow.expect("RCPT TO:<b@example.com>", 250)
        slow.expect("DATA", 354)
        slow.send(b"Subject: slow\r\n\r\n.\r\n")
        started = time.monotonic()
        # While the first client waits for its answer, a whole session runs.
        fast = send(fast_port, count=2)
        fast_done = time.monotonic()
        assert all(queue_id(r) for r in fast)
        slow_reply = slow.reply()
        slow_done = time.monotonic()
        assert queue_id(slow_reply)
        assert slow_done - started >= 1.0
        assert fast_done < slow_done, "the other session waited for the delayed one"


def test_hanging_up_during_a_delay_leaves_the_server_healthy(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0 delay=0.5, 127.0.0.1:0\n")
    for _ in range(3):
        client = Client.connect(server.port("smtp", 0))
        client.expect("EHLO client.test", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.expect("DATA", 354)
        # Pipelined commands behind the message are held during the delay.
        client.send(b"Subject: bye\r\n\r\n.\r\nNOOP\r\nQUIT\r\n")
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, in the middle of the delay
    # Let the delays run out on connections that are gone.
    with Client.connect(server.port("smtp", 0)) as client:
        client.expect("EHLO client.test", 250)
        reply = client.transaction()
        assert queue_id(reply)
    assert queue_id(send(server.port("smtp", 1))[0])
    assert_clean_log(server)


# --- listener flags -----------------------------------------------------------------------------


def test_flags_follow_the_listener_even_on_wildcards(
    server_factory: Factory, tmp_path: Path
) -> None:
    # Classic bug: flags were looked up by the connection's local address, and
    # a connection to 0.0.0.0:X arrives on 127.0.0.1 like one to 127.0.0.1:Y.
    server = server_with(
        server_factory,
        tmp_path,
        "listen = 0.0.0.0:0 mode=bounce, 127.0.0.1:0 mode=accept, 127.0.0.1:0\nmode = bounce\n",
    )
    bounce, accept, plain = (server.port("smtp", i) for i in range(3))
    for reply in send(bounce, count=5):
        assert_bounce(reply)
    for reply in send(accept, count=5):
        assert queue_id(reply)
    # A listener without flags follows the config file.
    for reply in send(plain, count=3):
        assert_bounce(reply)


@pytest.mark.parametrize("workers", [1, 2])
def test_two_wildcard_listeners_keep_their_own_flags(
    server_factory: Factory, tmp_path: Path, workers: int
) -> None:
    server = server_with(
        server_factory,
        tmp_path,
        f"listen = 0.0.0.0:0 mode=bounce, 0.0.0.0:0 mode=accept\nworkers = {workers}\n",
    )
    for _ in range(4):  # with two workers, both take some of these
        assert_bounce(send(server.port("smtp", 0))[0])
        assert queue_id(send(server.port("smtp", 1))[0])


def test_ipv6_listeners(server_factory: Factory, tmp_path: Path) -> None:
    # ":PORT" is every IPv4 address and ":::PORT" every IPv6 address (classic
    # syntax); both at once need IPV6_V6ONLY on the IPv6 one.
    server = server_with(
        server_factory, tmp_path, "listen = [::1]:0 mode=bounce, :::0, :0 mode=bounce\n"
    )
    assert [host for _scheme, host, _port in server.listeners] == ["::1", "::", "0.0.0.0"]
    with Client.connect(server.port("smtp", 0), host="::1") as client:
        client.expect("EHLO client.test", 250)
        assert_bounce(client.transaction())
    with Client.connect(server.port("smtp", 1), host="::1") as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    assert_bounce(send(server.port("smtp", 2))[0])


def test_listener_flags_win_over_headers(server_factory: Factory, tmp_path: Path) -> None:
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0 mode=accept\n")
    reply = send(server.port(), b"X-Blackhole-Mode: bounce\r\n\r\nhi\r\n")[0]
    assert queue_id(reply)


# --- dynamic switches ----------------------------------------------------------------------------


@pytest.fixture
def switchable(server_factory: Factory, tmp_path: Path) -> ServerProcess:
    return server_with(server_factory, tmp_path, "listen = 127.0.0.1:0\nmode = accept\n")


def test_mode_header_applies_to_that_message_only(switchable: ServerProcess) -> None:
    with Client.connect(switchable.port()) as client:
        client.expect("EHLO client.test", 250)
        assert_bounce(client.transaction(b"x-blackhole-MODE:  Bounce \r\nSubject: 1\r\n\r\nhi\r\n"))
        # Classic bug: the switch leaked into the next message on the connection.
        assert queue_id(client.transaction(b"Subject: 2\r\n\r\nhi\r\n"))
        reply = client.transaction(b"Subject: 3\r\nX-Blackhole-Mode: random\r\n\r\nhi\r\n")
        assert reply.code == 250 or reply.code in CLASSIC_BOUNCES
        assert queue_id(client.transaction(b"X-Blackhole-Mode: nonsense\r\n\r\nhi\r\n"))


def test_switches_in_the_body_do_nothing(switchable: ServerProcess) -> None:
    body = b"Subject: body\r\n\r\nX-Blackhole-Mode: bounce\r\nX-Blackhole-Delay: 5\r\n"
    # Classic bug: the whole message was searched, body included.
    reply, waited = timed(switchable.port(), body)
    assert queue_id(reply)
    assert waited < 4, waited


def test_delay_header_fixed_and_range(switchable: ServerProcess) -> None:
    reply, waited = timed(switchable.port(), b"X-Blackhole-Delay: 0.3\r\n\r\nhi\r\n")
    assert queue_id(reply)
    assert 0.3 <= waited < 10, waited
    reply, waited = timed(switchable.port(), b"x-blackhole-delay: 0.2, 0.4\r\n\r\nhi\r\n")
    assert queue_id(reply)
    assert 0.2 <= waited < 10, waited
    # Scoped to one message: the next one on the connection is not delayed.
    with Client.connect(switchable.port()) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction(b"X-Blackhole-Delay: 0.3\r\n\r\nhi\r\n"))
        started = time.monotonic()
        assert queue_id(client.transaction())
        assert time.monotonic() - started < 0.3 + 5  # not the 0.3 again plus a margin


def test_dynamic_switch_false_ignores_headers(server_factory: Factory, tmp_path: Path) -> None:
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0\ndynamic_switch = false\n")
    reply, waited = timed(
        server.port(), b"X-Blackhole-Mode: bounce\r\nX-Blackhole-Delay: 5\r\n\r\n"
    )
    assert queue_id(reply)
    assert waited < 4, waited


def test_delay_does_not_trip_the_idle_timeout(server_factory: Factory, tmp_path: Path) -> None:
    # A client waiting for a delayed answer is not idle (timeout 1 s, delay 1.5 s).
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0 delay=1.5\ntimeout = 1\n")
    reply, waited = timed(server.port())
    assert queue_id(reply)
    assert waited >= 1.5


def test_many_sessions_delayed_at_once(server_factory: Factory, tmp_path: Path) -> None:
    # Twenty sessions each owed a 0.5 s answer: they wait together, not in turn.
    server = server_with(server_factory, tmp_path, "listen = 127.0.0.1:0 delay=0.5\n")
    results: list[float] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            reply, waited = timed(server.port())
            assert queue_id(reply)
            results.append(waited)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 20
    assert min(results) >= 0.5
    # In turn would take 10 s; together, about 0.5 s. 6 s is a generous bound.
    assert time.monotonic() - started < 6
    assert_clean_log(server)
