"""Modes, delays, listener flags and X-Blackhole-* switches, over real sockets.

Most tests share one server with a listener per case (a listener's flags are
the case); tests about the config file itself start their own. Delays are
short (0.2-1 s) and the timing assertions are bounds for correctness ("not
before the delay"), with generous upper limits so that a loaded machine
cannot make them fail.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from pathlib import Path

from tests.classic import CLASSIC_BOUNCES
from tests.e2e import Factory, assert_clean_log, queue_id, shared_server, start
from tests.serverproc import ServerProcess
from tests.smtpclient import Client, Reply

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


# --- the shared server -------------------------------------------------------------

# Listener index -> what it is for. The config file says mode = accept and no
# delay, so a listener without flags shows the config at work.
LISTENERS = (
    ("plain", "127.0.0.1:0"),
    ("bounce", "127.0.0.1:0 mode=bounce"),
    ("random", "127.0.0.1:0 mode=random"),
    ("delay", "127.0.0.1:0 delay=0.3"),
    ("range", "127.0.0.1:0 delay=0.2-0.4"),
    ("slow", "127.0.0.1:0 delay=1"),
    ("half", "127.0.0.1:0 delay=0.5"),
    ("accept", "127.0.0.1:0 mode=accept"),
    # Classic bug: flags were looked up by the connection's local address,
    # and a connection to 0.0.0.0:X arrives on 127.0.0.1 like one to 127.0.0.1:Y.
    ("any-bounce", "0.0.0.0:0 mode=bounce"),
    ("any-accept", "0.0.0.0:0 mode=accept"),
    # ":PORT" is every IPv4 address and ":::PORT" every IPv6 address (classic
    # syntax); both at once need IPV6_V6ONLY on the IPv6 one.
    ("v6-bounce", "[::1]:0 mode=bounce"),
    ("v6-any", ":::0"),
    ("v4-any", ":0 mode=bounce"),
)
_INDEX = {name: i for i, (name, _spec) in enumerate(LISTENERS)}


_LISTEN = ", ".join(spec for _name, spec in LISTENERS)
multi = shared_server(f"listen = {_LISTEN}\nmode = accept\ntimeout = 10\n")


def port(server: ServerProcess, name: str) -> int:
    return server.port("smtp", _INDEX[name])


# --- modes ----------------------------------------------------------------------------


def test_accept_mode(multi: ServerProcess) -> None:
    replies = send(port(multi, "plain"), count=3) + send(port(multi, "accept"), count=3)
    assert len({queue_id(r) for r in replies}) == 6


def test_bounce_mode_uses_the_classic_codes_and_texts(multi: ServerProcess) -> None:
    replies = send(port(multi, "bounce"), count=40)
    for reply in replies:
        assert_bounce(reply)
    # Forty draws from ten codes: all the same would mean no choice at all.
    assert len({r.code for r in replies}) > 3


def test_random_mode_mixes_accepts_and_bounces(multi: ServerProcess) -> None:
    replies = send(port(multi, "random"), count=80)
    accepted = [r for r in replies if r.code == 250]
    bounced = [r for r in replies if r.code != 250]
    for reply in accepted:
        assert queue_id(reply)
    for reply in bounced:
        assert_bounce(reply)
    # Uniform over 11 answers: P(no accept in 80) = (10/11)^80 < 0.0005.
    assert accepted and bounced


def test_config_file_mode_applies_to_listeners_without_flags(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = start(
        server_factory,
        tmp_path,
        "listen = 127.0.0.1:0, 0.0.0.0:0 mode=accept\nmode = bounce\ndelay = 0.3\n",
    )
    reply, waited = timed(server.port("smtp", 0))
    assert_bounce(reply)
    assert 0.3 <= waited < 10, waited
    # A listener's flags win over the file (its delay too: none given, the
    # file's applies).
    reply, waited = timed(server.port("smtp", 1))
    assert queue_id(reply)
    assert 0.3 <= waited < 10, waited
    # Commands pipelined behind a delayed message wait for its answer, then
    # are answered in order (RFC 2920 section 3.1).
    with Client.connect(server.port("smtp", 1)) as client:
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


def test_seed_makes_random_answers_replayable(server_factory: Factory, tmp_path: Path) -> None:
    text = "listen = 127.0.0.1:0\nmode = random\nseed = 1234\n"
    runs = []
    for _ in range(2):
        server = start(server_factory, tmp_path, text)
        runs.append([r.code for r in send(server.port(), count=25)])
        assert server.stop() == 0
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 1
    other = start(server_factory, tmp_path, text.replace("1234", "4321"))
    assert [r.code for r in send(other.port(), count=25)] != runs[0]


# --- delays -----------------------------------------------------------------------------------


def test_fixed_delay_and_range_on_listeners(multi: ServerProcess) -> None:
    # The classic parser accepted delay=A-B on a listener, then crashed on it.
    for name, low in (("delay", 0.3), ("range", 0.2), ("range", 0.2)):
        reply, waited = timed(port(multi, name))
        assert queue_id(reply)
        assert low <= waited < 10, (name, waited)


def test_a_delay_never_blocks_other_sessions(multi: ServerProcess) -> None:
    with Client.connect(port(multi, "slow")) as slow:
        slow.expect("EHLO client.test", 250)
        slow.expect("MAIL FROM:<a@example.com>", 250)
        slow.expect("RCPT TO:<b@example.com>", 250)
        slow.expect("DATA", 354)
        slow.send(b"Subject: slow\r\n\r\n.\r\n")
        started = time.monotonic()
        # While the first client waits for its answer, a whole session runs.
        fast = send(port(multi, "plain"), count=2)
        fast_done = time.monotonic()
        assert all(queue_id(r) for r in fast)
        slow_reply = slow.reply()
        slow_done = time.monotonic()
        assert queue_id(slow_reply)
        assert slow_done - started >= 1.0
        assert fast_done < slow_done, "the other session waited for the delayed one"


def test_hanging_up_during_a_delay_leaves_the_server_healthy(multi: ServerProcess) -> None:
    for _ in range(3):
        client = Client.connect(port(multi, "half"))
        client.expect("EHLO client.test", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.expect("DATA", 354)
        # Pipelined commands behind the message are held during the delay.
        client.send(b"Subject: bye\r\n\r\n.\r\nNOOP\r\nQUIT\r\n")
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, in the middle of the delay
    # Let the delays run out on connections that are gone.
    with Client.connect(port(multi, "half")) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    assert queue_id(send(port(multi, "plain"))[0])
    assert_clean_log(multi)


def test_many_sessions_delayed_at_once(multi: ServerProcess) -> None:
    # Twenty sessions each owed a 0.5 s answer: they wait together, not in turn.
    results: list[float] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            reply, waited = timed(port(multi, "half"))
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
    assert_clean_log(multi)


def test_delay_does_not_trip_the_idle_timeout(server_factory: Factory, tmp_path: Path) -> None:
    # A client waiting for a delayed answer is not idle (timeout 1 s, delay 1.5 s).
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0 delay=1.5\ntimeout = 1\n")
    reply, waited = timed(server.port())
    assert queue_id(reply)
    assert waited >= 1.5


# --- listener flags -----------------------------------------------------------------------------


def test_flags_follow_the_listener_even_on_wildcards(multi: ServerProcess) -> None:
    for _ in range(3):
        assert_bounce(send(port(multi, "any-bounce"))[0])
        assert queue_id(send(port(multi, "any-accept"))[0])
        assert_bounce(send(port(multi, "bounce"))[0])
        assert queue_id(send(port(multi, "accept"))[0])


def test_wildcard_listener_flags_with_two_workers(server_factory: Factory, tmp_path: Path) -> None:
    server = start(
        server_factory,
        tmp_path,
        "listen = 0.0.0.0:0 mode=bounce, 0.0.0.0:0 mode=accept\nworkers = 2\n",
    )
    for _ in range(4):  # the two workers take some of these each
        assert_bounce(send(server.port("smtp", 0))[0])
        assert queue_id(send(server.port("smtp", 1))[0])


def test_ipv6_listeners(multi: ServerProcess) -> None:
    hosts = {
        name: host for (name, _spec), (_s, host, _p) in zip(LISTENERS, multi.listeners, strict=True)
    }
    assert (hosts["v6-bounce"], hosts["v6-any"], hosts["v4-any"]) == ("::1", "::", "0.0.0.0")
    with Client.connect(port(multi, "v6-bounce"), host="::1") as client:
        client.expect("EHLO client.test", 250)
        assert_bounce(client.transaction())
    with Client.connect(port(multi, "v6-any"), host="::1") as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    assert_bounce(send(port(multi, "v4-any"))[0])


def test_listener_flags_win_over_headers(multi: ServerProcess) -> None:
    reply = send(port(multi, "accept"), b"X-Blackhole-Mode: bounce\r\n\r\nhi\r\n")[0]
    assert queue_id(reply)
    reply = send(port(multi, "bounce"), b"X-Blackhole-Mode: accept\r\n\r\nhi\r\n")[0]
    assert_bounce(reply)


# --- dynamic switches ----------------------------------------------------------------------------


def test_mode_header_applies_to_that_message_only(multi: ServerProcess) -> None:
    with Client.connect(port(multi, "plain")) as client:
        client.expect("EHLO client.test", 250)
        assert_bounce(client.transaction(b"x-blackhole-MODE:  Bounce \r\nSubject: 1\r\n\r\nhi\r\n"))
        # Classic bug: the switch leaked into the next message on the connection.
        assert queue_id(client.transaction(b"Subject: 2\r\n\r\nhi\r\n"))
        reply = client.transaction(b"Subject: 3\r\nX-Blackhole-Mode: random\r\n\r\nhi\r\n")
        assert reply.code == 250 or reply.code in CLASSIC_BOUNCES
        assert queue_id(client.transaction(b"X-Blackhole-Mode: nonsense\r\n\r\nhi\r\n"))


def test_switches_in_the_body_do_nothing(multi: ServerProcess) -> None:
    body = b"Subject: body\r\n\r\nX-Blackhole-Mode: bounce\r\nX-Blackhole-Delay: 5\r\n"
    # Classic bug: the whole message was searched, body included.
    reply, waited = timed(port(multi, "plain"), body)
    assert queue_id(reply)
    assert waited < 4, waited


def test_delay_header_fixed_and_range(multi: ServerProcess) -> None:
    plain = port(multi, "plain")
    reply, waited = timed(plain, b"X-Blackhole-Delay: 0.3\r\n\r\nhi\r\n")
    assert queue_id(reply)
    assert 0.3 <= waited < 10, waited
    reply, waited = timed(plain, b"x-blackhole-delay: 0.2, 0.4\r\n\r\nhi\r\n")
    assert queue_id(reply)
    assert 0.2 <= waited < 10, waited
    # Scoped to one message: the next one on the connection is not delayed.
    with Client.connect(plain) as client:
        client.expect("EHLO client.test", 250)
        client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        assert [client.reply().code for _ in range(3)] == [250, 250, 354]
        client.send(b"X-Blackhole-Delay: 1.5\r\n\r\nhi\r\n.\r\n")
        assert queue_id(client.reply())
        _reply, waited = timed_on(client)
        assert waited < 1.4, f"the 1.5 s delay leaked into the next message: {waited:.2f}s"


def timed_on(client: Client) -> tuple[Reply, float]:
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<b@example.com>", 250)
    client.expect("DATA", 354)
    started = time.monotonic()
    client.send(b"Subject: next\r\n\r\n.\r\n")
    reply = client.reply()
    return reply, time.monotonic() - started


def test_dynamic_switch_false_ignores_headers(server_factory: Factory, tmp_path: Path) -> None:
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\ndynamic_switch = false\n")
    reply, waited = timed(
        server.port(), b"X-Blackhole-Mode: bounce\r\nX-Blackhole-Delay: 5\r\n\r\n"
    )
    assert queue_id(reply)
    assert waited < 4, waited
