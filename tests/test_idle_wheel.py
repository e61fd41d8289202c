"""The idle wheel (server.idle): sessions' idle timers, one loop timer for all.

On the fake loop of tests/adapter_fakes.py, with a hand-moved clock: when a
session expires (never before its deadline, at most one slot after it), and
that many sessions cost the loop one timer. The idle timeout end to end (the
421, a slowloris cut) is in test_connection.py and test_e2e_attacks.py.
"""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from blackhole.server.idle import SLOT, IdleWheel
from tests.adapter_fakes import FakeLoop


class Session:
    """What the wheel needs of a session, and what it did to it."""

    def __init__(self, loop: FakeLoop, busy: bool = False) -> None:
        self.last = loop.time()
        self.idle_slot: float | None = None
        self.expired_at: float | None = None
        self._loop = loop
        self._busy = busy

    def busy(self) -> bool:
        return self._busy

    def expire(self) -> None:
        self.expired_at = self._loop.time()


def _wheel() -> tuple[FakeLoop, IdleWheel]:
    loop = FakeLoop()
    return loop, IdleWheel(cast(asyncio.AbstractEventLoop, loop))


@pytest.mark.parametrize("limit", [180.0, 30.0, 1.0, 0.5, 0.01])
@pytest.mark.parametrize("offset", [0.0, 0.001, 0.1234, 0.2499])
def test_a_session_expires_at_its_deadline_or_at_most_one_slot_after(
    limit: float, offset: float
) -> None:
    loop, wheel = _wheel()
    loop.advance(offset)
    session = Session(loop)
    wheel.arm(session, limit)
    deadline = session.last + limit
    loop.advance(limit * 0.999)
    assert session.expired_at is None
    loop.advance(limit * 0.001 + min(SLOT, limit / 4))
    assert session.expired_at is not None
    assert deadline <= session.expired_at <= deadline + min(SLOT, limit / 4)
    assert len(wheel) == 0


def test_many_sessions_share_one_loop_timer() -> None:
    loop, wheel = _wheel()
    sessions = []
    for _ in range(1000):
        loop.advance(0.01)  # 10 s of connections, a hundred a second
        session = Session(loop)
        wheel.arm(session, 30.0)
        sessions.append(session)
    assert len(wheel) == 1000
    assert loop.loop_timers() == 1
    loop.advance(30.0 + SLOT)
    assert all(s.expired_at is not None for s in sessions)
    assert len(wheel) == 0 and loop.loop_timers() == 0


def test_a_disarmed_session_is_forgotten_and_never_expires() -> None:
    loop, wheel = _wheel()
    ended, idle = Session(loop), Session(loop)
    wheel.arm(ended, 30.0)
    wheel.arm(idle, 30.0)
    wheel.cancel(ended)
    wheel.cancel(ended)  # twice is once
    assert len(wheel) == 1 and ended.idle_slot is None
    loop.advance(31.0)
    assert ended.expired_at is None and idle.expired_at is not None


def test_a_sign_of_life_moves_the_deadline() -> None:
    loop, wheel = _wheel()
    session = Session(loop)
    start = session.last
    wheel.arm(session, 30.0)
    wheel.arm(session, 30.0)  # armed already: nothing changes
    assert len(wheel) == 1
    loop.advance(20.0)
    session.last = loop.time()  # what reading a command does
    loop.advance(15.0)  # past the first deadline
    assert session.expired_at is None
    loop.advance(15.0 + SLOT)
    assert session.expired_at is not None
    assert 50.0 <= session.expired_at - start <= 50.0 + SLOT


def test_a_busy_session_gets_another_whole_timeout() -> None:
    loop, wheel = _wheel()
    session = Session(loop, busy=True)
    wheel.arm(session, 30.0)
    loop.advance(100.0)
    assert session.expired_at is None and len(wheel) == 1
    session._busy = False
    loop.advance(30.0 + SLOT)
    assert session.expired_at is not None


def test_an_earlier_slot_moves_the_loop_timer_forward() -> None:
    # Listeners may have different timeouts: a short one filed after a long
    # one must not wait for the long one's slot.
    loop, wheel = _wheel()
    long, short = Session(loop), Session(loop)
    wheel.arm(long, 180.0)
    wheel.arm(short, 1.0)
    loop.advance(1.0 + SLOT)
    assert short.expired_at is not None and long.expired_at is None
    assert loop.loop_timers() == 1


def _a_then_b(active_after: float) -> tuple[FakeLoop, IdleWheel, Session, Session]:
    """A and B (10 s timeouts) armed 0.3 s apart, so in two slots; A shows
    life ``active_after`` seconds later, then the clock reaches A's first
    deadline: serving A's slot re-arms A, for a much later slot."""
    loop, wheel = _wheel()
    a = Session(loop)
    wheel.arm(a, 10.0)
    loop.advance(0.3)
    b = Session(loop)
    wheel.arm(b, 10.0)
    loop.advance(active_after)
    a.last = loop.time()
    loop.advance(9.7 - active_after)
    assert a.expired_at is None and b.expired_at is None
    return loop, wheel, a, b


def test_a_session_re_armed_while_its_slot_is_served_does_not_delay_earlier_slots() -> None:
    # B's slot, half a second after A's first one, is still served in time.
    loop, _, a, b = _a_then_b(active_after=5.0)
    loop.advance(0.5)
    assert b.expired_at is not None
    assert b.expired_at <= b.last + 10.0 + SLOT
    assert a.expired_at is None


def test_a_slot_emptied_and_filled_again_is_still_served_in_time() -> None:
    # B's session ends and leaves its slot empty; C, with a shorter timeout
    # (another listener), is filed in that same slot and expires on time.
    loop, wheel, a, b = _a_then_b(active_after=1.0)
    wheel.cancel(b)
    c = Session(loop)
    wheel.arm(c, 0.5)
    loop.advance(0.6)
    assert c.expired_at is not None
    assert c.expired_at <= c.last + 0.5 + SLOT
    assert a.expired_at is None
