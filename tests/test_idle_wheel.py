"""The idle wheel (server.idle): sessions' idle timers, one loop timer for all.

Real sessions on the fake loop and transport of tests/adapter_fakes.py, with
a hand-moved clock: when a session expires (never before its deadline, at
most one slot after it), and that many sessions cost the loop one timer. The
idle timeout end to end (a slowloris cut) is in test_connection.py and
test_e2e_attacks.py.
"""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from blackhole.server.connection import SMTPProtocol
from blackhole.server.idle import SLOT, IdleWheel
from tests.adapter_fakes import FakeLoop, FakeTransport, Harness


class Client(FakeTransport):
    """A client's connection: when the session closed it, and whether the
    client is still reading replies (the write buffer keeps changing)."""

    def __init__(self, protocol: SMTPProtocol, loop: FakeLoop) -> None:
        super().__init__(protocol)
        self.loop = loop
        self.closed_at: float | None = None
        self.reading_replies = False
        self.last_moved: float | None = None  # when the buffer was last seen to move

    def get_write_buffer_size(self) -> int:
        if self.reading_replies:
            self.unsent += 1
            self.last_moved = self.loop.time()
        return self.unsent

    def close(self) -> None:
        super().close()
        self._ended()

    def abort(self) -> None:
        super().abort()
        self._ended()

    def _ended(self) -> None:
        if self.closed_at is None:
            self.closed_at = self.loop.time()
            # As a real transport does once what was written has gone.
            self.loop.call_soon(self.protocol.connection_lost, None)


class Sessions:
    """Real sessions on one worker's fake loop, their idle timers disarmed so
    that each test arms them itself, with its own timeout."""

    def __init__(self) -> None:
        self.harness = Harness()
        self.loop = self.harness.loop
        self.wheel: IdleWheel = self.harness.state.idle
        self.clients: dict[SMTPProtocol, Client] = {}

    def new(self) -> SMTPProtocol:
        session = SMTPProtocol(self.harness.context, self.harness.state)
        client = Client(session, self.loop)
        session.connection_made(cast(asyncio.Transport, client))
        self.wheel.cancel(session)
        self.clients[session] = client
        return session

    def expired_at(self, session: SMTPProtocol) -> float | None:
        """When the idle timer ended the session (a 421 and a close), if it did."""
        client = self.clients[session]
        if client.closed_at is not None:
            assert bytes(client.written).endswith(b"421 4.4.2 Idle timeout, closing connection\r\n")
        return client.closed_at


def _wheel() -> tuple[FakeLoop, IdleWheel, Sessions]:
    sessions = Sessions()
    return sessions.loop, sessions.wheel, sessions


@pytest.mark.parametrize("limit", [180.0, 30.0, 1.0, 0.5, 0.01])
@pytest.mark.parametrize("offset", [0.0, 0.001, 0.1234, 0.2499])
def test_a_session_expires_at_its_deadline_or_at_most_one_slot_after(
    limit: float, offset: float
) -> None:
    loop, wheel, sessions = _wheel()
    loop.advance(offset)
    session = sessions.new()
    wheel.arm(session, limit)
    deadline = session.last + limit
    loop.advance(limit * 0.999)
    assert sessions.expired_at(session) is None
    loop.advance(limit * 0.001 + min(SLOT, limit / 4))
    expired_at = sessions.expired_at(session)
    assert expired_at is not None
    assert deadline <= expired_at <= deadline + min(SLOT, limit / 4)
    assert len(wheel) == 0


def test_a_deadline_the_division_rounds_down_is_still_filed_after_it() -> None:
    # For these (found by search), ceil(deadline / width) * width comes out one
    # ulp before the deadline: filed there, the timer would fire too early.
    last, limit = 5919.162340251445, 0.2991213250247085
    _loop, wheel, sessions = _wheel()
    session = sessions.new()
    session.last = last
    wheel.arm(session, limit)
    assert session.idle_slot is not None
    assert session.idle_slot >= last + limit


def test_many_sessions_share_one_loop_timer() -> None:
    loop, wheel, every = _wheel()
    sessions = []
    for _ in range(1000):
        loop.advance(0.01)  # 10 s of connections, a hundred a second
        session = every.new()
        wheel.arm(session, 30.0)
        sessions.append(session)
    assert len(wheel) == 1000
    assert loop.loop_timers() == 1
    loop.advance(30.0 + SLOT)
    assert all(every.expired_at(s) is not None for s in sessions)
    assert len(wheel) == 0
    # Each closed session was armed again for its last replies to drain,
    # and disarmed when the connection went: the timer goes once that slot
    # is served.
    loop.advance(30.0 + SLOT)
    assert loop.loop_timers() == 0


def test_a_disarmed_session_is_forgotten_and_never_expires() -> None:
    loop, wheel, sessions = _wheel()
    ended, idle = sessions.new(), sessions.new()
    wheel.arm(ended, 30.0)
    wheel.arm(idle, 30.0)
    wheel.cancel(ended)
    wheel.cancel(ended)  # twice is once
    assert len(wheel) == 1 and ended.idle_slot is None
    loop.advance(31.0)
    assert sessions.expired_at(ended) is None and sessions.expired_at(idle) is not None


def test_a_sign_of_life_moves_the_deadline() -> None:
    loop, wheel, sessions = _wheel()
    session = sessions.new()
    start = session.last
    wheel.arm(session, 30.0)
    wheel.arm(session, 30.0)  # armed already: nothing changes
    assert len(wheel) == 1
    loop.advance(20.0)
    session.last = loop.time()  # what reading a command does
    loop.advance(15.0)  # past the first deadline
    assert sessions.expired_at(session) is None
    loop.advance(15.0 + SLOT)
    expired_at = sessions.expired_at(session)
    assert expired_at is not None
    assert 50.0 <= expired_at - start <= 50.0 + SLOT


def test_a_busy_session_gets_another_whole_timeout() -> None:
    loop, wheel, sessions = _wheel()
    session = sessions.new()
    client = sessions.clients[session]
    client.reading_replies = True  # slowly: the write buffer keeps changing
    wheel.arm(session, 30.0)
    loop.advance(100.0)
    assert sessions.expired_at(session) is None and len(wheel) == 1
    client.reading_replies = False
    loop.advance(30.0 + SLOT)
    expired_at = sessions.expired_at(session)
    # A whole timeout from the last time it was found busy, not part of one.
    assert client.last_moved is not None and expired_at is not None
    assert client.last_moved + 30.0 <= expired_at <= client.last_moved + 30.0 + SLOT


def test_an_earlier_slot_moves_the_loop_timer_forward() -> None:
    # Listeners may have different timeouts: a short one filed after a long
    # one must not wait for the long one's slot.
    loop, wheel, sessions = _wheel()
    long, short = sessions.new(), sessions.new()
    wheel.arm(long, 180.0)
    wheel.arm(short, 1.0)
    loop.advance(1.0 + SLOT)
    assert sessions.expired_at(short) is not None and sessions.expired_at(long) is None
    assert loop.loop_timers() == 1


def _a_then_b(
    active_after: float,
) -> tuple[Sessions, IdleWheel, SMTPProtocol, SMTPProtocol]:
    """A and B (10 s timeouts) armed 0.3 s apart, so in two slots; A shows
    life ``active_after`` seconds later, then the clock reaches A's first
    deadline: serving A's slot re-arms A, for a much later slot."""
    loop, wheel, sessions = _wheel()
    a = sessions.new()
    wheel.arm(a, 10.0)
    loop.advance(0.3)
    b = sessions.new()
    wheel.arm(b, 10.0)
    loop.advance(active_after)
    a.last = loop.time()
    loop.advance(9.7 - active_after)
    assert sessions.expired_at(a) is None and sessions.expired_at(b) is None
    return sessions, wheel, a, b


def test_a_session_re_armed_while_its_slot_is_served_does_not_delay_earlier_slots() -> None:
    # B's slot, half a second after A's first one, is still served in time.
    sessions, _, a, b = _a_then_b(active_after=5.0)
    deadline = b.last + 10.0
    sessions.loop.advance(0.5)
    expired_at = sessions.expired_at(b)
    assert expired_at is not None and expired_at <= deadline + SLOT
    assert sessions.expired_at(a) is None


def test_a_slot_emptied_and_filled_again_is_still_served_in_time() -> None:
    # B's session ends and leaves its slot empty; C, with a shorter timeout
    # (another listener), is filed in that same slot and expires on time.
    sessions, wheel, a, b = _a_then_b(active_after=1.0)
    wheel.cancel(b)
    c = sessions.new()
    wheel.arm(c, 0.5)
    deadline = c.last + 0.5
    sessions.loop.advance(0.6)
    expired_at = sessions.expired_at(c)
    assert expired_at is not None and expired_at <= deadline + SLOT
    assert sessions.expired_at(a) is None
