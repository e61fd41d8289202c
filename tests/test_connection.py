"""The asyncio adapter without sockets: a fake transport and a hand-moved clock.

Timeouts, flow control and the ways a session ends, tested without one
wall-clock wait. The network-level behaviour is covered end to end by the
test_e2e_* modules.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blackhole.config.model import Config
from blackhole.policy.modes import Delay
from blackhole.protocol import replies as R
from tests.adapter_fakes import Harness

TIMEOUT = 30.0


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(Config(timeout=TIMEOUT))
    yield h
    h.loop.close()


def test_greeting_then_idle_timeout(harness: Harness) -> None:
    _session, transport = harness.connect()
    assert transport.take().startswith(b"220 ")
    harness.loop.advance(TIMEOUT - 1)
    assert transport.take() == b""
    harness.loop.advance(2)
    assert transport.take() == R.R421_TIMEOUT.wire
    assert transport.closed and harness.state.stats.timeouts == 1


def test_commands_reset_the_idle_clock(harness: Harness) -> None:
    session, transport = harness.connect()
    for _ in range(5):
        harness.loop.advance(TIMEOUT - 1)
        session.data_received(b"NOOP\r\n")
    assert R.R421_TIMEOUT.wire not in transport.take()
    harness.loop.advance(TIMEOUT + 1)
    assert transport.take().endswith(R.R421_TIMEOUT.wire)


def test_slowloris_bytes_without_a_line_end_do_not_reset_it(harness: Harness) -> None:
    # RFC 5321 section 4.5.3.2.7 times the wait for a *command*.
    session, transport = harness.connect()
    for _ in range(int(TIMEOUT) + 1):
        harness.loop.advance(1)
        session.data_received(b"N")
    assert transport.take().endswith(R.R421_TIMEOUT.wire)


def test_a_client_reading_slowly_is_not_idle(harness: Harness) -> None:
    _session, transport = harness.connect()
    transport.unsent = 100_000  # replies still on their way
    for left in (90_000, 80_000, 70_000):
        harness.loop.advance(TIMEOUT + 1)
        transport.unsent = left
    assert not transport.closed
    harness.loop.advance(2 * TIMEOUT + 1)  # the buffer stopped moving
    assert transport.closed


def test_a_session_whose_replies_never_drain_is_dropped_and_forgotten(
    harness: Harness,
) -> None:
    # Defect: the closing branch of the idle check aborted the transport but
    # kept the session, waiting for a connection_lost the SSL layer may
    # never deliver; a stop then waited out its whole grace period.
    session, transport = harness.connect()
    session.data_received(b"QUIT\r\n")
    assert transport.closed and not transport.aborted
    assert session in harness.state.sessions  # the 221 may still be draining
    harness.loop.advance(TIMEOUT + 1)  # ... it is not: the client stopped reading
    assert transport.aborted
    assert session not in harness.state.sessions
    assert harness.loop.pending() == 0  # no timer left behind


def test_shutdown_mid_handshake_waits_for_it_and_the_cut_forgets_the_session() -> None:
    # A stop lets the handshake finish, so that the client can read its 421
    # (test_worker_stop_race.py); the end of the grace period aborts it.
    # Defect: an abort mid-handshake did not forget the session (the same
    # grace-period wait as above).
    harness = Harness(Config(timeout=TIMEOUT), tls=True)
    session, transport = harness.connect()
    assert session.core is None  # SMTPS: waiting for the handshake
    session.shutdown()
    assert not transport.aborted and not transport.closed
    assert session in harness.state.sessions
    session.cut()
    assert transport.aborted
    assert session not in harness.state.sessions
    harness.loop.advance(0)  # what was due now (handing over early bytes)
    assert harness.loop.pending() == 0
    harness.loop.close()


def test_idle_handshake_is_dropped_and_forgotten() -> None:
    harness = Harness(Config(timeout=TIMEOUT), tls=True)
    session, transport = harness.connect()
    harness.loop.advance(TIMEOUT + 1)
    assert transport.aborted and transport.written == b""  # no plaintext 421
    assert session not in harness.state.sessions
    assert harness.state.stats.tls_failures == 1
    harness.loop.close()


def test_every_ending_counts_once(harness: Harness) -> None:
    session, transport = harness.connect()
    transport.take()
    session.shutdown()  # idle: 421 and close
    assert transport.take() == R.R421_SHUTDOWN.wire
    session.connection_lost(None)
    session.connection_lost(None)
    session.cut()
    assert harness.state.sessions == set()
    assert harness.loop.pending() == 0


def test_shutdown_lets_a_transaction_finish(harness: Harness) -> None:
    session, transport = harness.connect()
    session.data_received(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    transport.take()
    session.shutdown()
    assert not transport.closed
    session.data_received(b"hi\r\n.\r\n")
    out = transport.take()
    assert out.startswith(b"250 ") and out.endswith(R.R421_SHUTDOWN.wire)
    assert transport.closed


def test_cut_says_421_even_mid_data(harness: Harness) -> None:
    session, transport = harness.connect()
    session.data_received(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhalf a mess")
    transport.take()
    session.cut()
    assert transport.take() == R.R421_SHUTDOWN.wire and transport.closed


def test_input_waits_while_the_client_does_not_read_replies(harness: Harness) -> None:
    session, transport = harness.connect()
    transport.take()
    session.pause_writing()  # the write buffer is over its high-water mark
    session.data_received(b"NOOP\r\nNOOP\r\n")
    assert transport.take() == b""  # held back, not answered into the buffer
    assert not transport.reading
    session.resume_writing()
    assert transport.take() == R.R250_OK.wire * 2
    assert transport.reading


def test_a_big_read_is_fed_in_slices_and_stops_when_writing_pauses(harness: Harness) -> None:
    session, transport = harness.connect()
    transport.take()
    batch = b"HELO x\r\n" * 5000  # 40 000 bytes: five slices of 8 KiB (HELO is no junk command)

    def write_and_pause(data: bytes) -> None:
        transport.written += data
        session.pause_writing()  # the first slice's replies fill the buffer

    transport.write = write_and_pause  # type: ignore[method-assign]
    session.data_received(batch)
    answered = transport.take().count(b"250 ")
    assert 0 < answered < 5000  # the first slice only
    assert not transport.reading
    del transport.write  # back to the plain recorder
    session.resume_writing()
    assert answered + transport.take().count(b"250 ") == 5000
    assert transport.reading


def test_a_delayed_answer_holds_input_until_it_is_given() -> None:
    harness = Harness(Config(timeout=TIMEOUT, delay=Delay(5, 5)))
    session, transport = harness.connect()
    message = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n"
    session.data_received(b"EHLO c\r\n" + message)
    transport.take()
    # Still reading, so that a client hanging up is seen at once...
    assert transport.reading
    session.data_received(b"NOOP\r\n")
    # ...until it sends more: that is held, and reading stops.
    assert not transport.reading
    harness.loop.advance(4.9)
    assert transport.take() == b""
    harness.loop.advance(0.2)
    out = transport.take()
    assert out.startswith(b"250 ") and out.endswith(R.R250_OK.wire)
    assert transport.reading
    harness.loop.close()


def test_a_delay_longer_than_the_timeout_is_not_idleness() -> None:
    harness = Harness(Config(timeout=TIMEOUT, delay=Delay(50, 50)))
    session, transport = harness.connect()
    session.data_received(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n")
    transport.take()
    harness.loop.advance(49)
    assert not transport.closed
    harness.loop.advance(2)
    assert transport.take().startswith(b"250 ")
    harness.loop.close()


def test_connection_lost_during_a_delay_cancels_it() -> None:
    harness = Harness(Config(timeout=TIMEOUT, delay=Delay(5, 5)))
    session, transport = harness.connect()
    session.data_received(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n")
    transport.take()
    session.connection_lost(None)
    assert harness.loop.pending() == 0
    harness.loop.advance(10)
    assert transport.take() == b""
    harness.loop.close()
