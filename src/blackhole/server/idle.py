"""The idle timers of a worker's sessions: one loop timer per slot of time.

RFC 5321 section 4.5.3.2 gives the server a timeout per wait (5 minutes
for the next command, 3 for each block of a message); Blackhole uses one
configurable ``timeout`` for all of them. Reading only stamps the session's
``last`` time, which is far cheaper than rescheduling a timer on every read:
when the timer fires early it re-arms itself for the real deadline.

A loop timer per session cost every connection a timer handle made and
cancelled in the loop. Instead the worker's ``IdleWheel`` files each armed
session under the end of the slot (a quarter of a second, less for very short
timeouts) its deadline falls in, and keeps one loop timer, for the earliest
slot: arming or cancelling a session's timer is a dictionary update. A
session times out at most one slot after its deadline, never before it.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Final

from blackhole.server.sessionbase import SessionBase

# Final: read directly by the compiled build, where heapq.heappush is a
# lookup in the heapq module at every call.
_push: Final = heapq.heappush
_pop: Final = heapq.heappop

# The longest slot, in seconds; a timeout of under four slots gets slots of a
# quarter of it, so that no session waits noticeably longer than it should.
SLOT: Final = 0.25


class IdleWheel:
    """A worker's sessions with an armed idle timer, filed by the end of their slot.

    The sessions are filed themselves, with their timeout: no timer object per
    session, and nothing of the wheel's points at a session once it is disarmed.
    A session's ``last`` (its last sign of life) and ``idle_slot`` (the end of
    the slot it is filed under, if armed) are attributes of ``SessionBase``:
    typed as such, the compiled build reads and writes them in place, where
    through a protocol type each was a lookup by name.
    """

    __slots__ = ("_ends", "_handle", "_loop", "_slots", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Slot end (loop time) -> the sessions due by then, with their timeout.
        self._slots: dict[float, dict[SessionBase, float]] = {}
        # The slot ends not yet served, as a heap. A slot whose sessions all
        # ended keeps its place here: the loop timer is never moved for it,
        # and only comes by once for nothing (the common case, with sessions
        # that end long before their timeout, costs no loop timer at all).
        self._ends: list[float] = []
        self._handle: asyncio.TimerHandle | None = None  # the one loop timer
        self._when = math.inf  # when it fires

    def __len__(self) -> int:
        """How many sessions have their idle timer armed."""
        return sum(len(due) for due in self._slots.values())

    def arm(self, session: SessionBase, limit: float) -> None:
        """Expire ``session`` once ``limit`` seconds pass without a sign of life."""
        if session.idle_slot is not None:
            return  # armed already: it re-arms itself when it fires early
        width = min(SLOT, limit / 4)
        deadline = session.last + limit
        end = math.ceil(deadline / width) * width
        if end < deadline:  # rounded down by the division: never fire early
            end += width
        due = self._slots.get(end)
        if due is None:
            due = self._slots[end] = {}
            _push(self._ends, end)
            if end < self._when:
                self._schedule(end)
        due[session] = limit
        session.idle_slot = end

    def cancel(self, session: SessionBase) -> None:
        end = session.idle_slot
        if end is not None:
            session.idle_slot = None
            due = self._slots.get(end)
            # An emptied slot stays until it is served: the next session
            # armed in the same slot finds it, instead of making it again
            # (and pushing its end on the heap) for every short session.
            # `in` and `del`, not pop(session, None): that is a method call.
            if due is not None and session in due:
                del due[session]

    def _schedule(self, end: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = end
        self._handle = self._loop.call_at(end, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = math.inf
        now = self._loop.time()
        ends = self._ends
        while ends and ends[0] <= now:
            end = _pop(ends)
            due = self._slots.pop(end, None)
            if due:
                self._serve(due, end, now)
        # Serving may have scheduled the timer already, for the slot a re-armed
        # session went to: later than a slot still waiting in the heap, which
        # would then be served late. The earliest slot left decides.
        if ends and ends[0] < self._when:
            self._schedule(ends[0])

    def _serve(self, due: dict[SessionBase, float], end: float, now: float) -> None:
        for session, limit in due.items():
            if session.idle_slot != end:
                continue  # disarmed while the slot was being served
            session.idle_slot = None
            if now < session.last + limit:
                self.arm(session, limit)  # a sign of life since it was filed
            elif session.busy():
                session.last = now
                self.arm(session, limit)
            else:
                session.expire()
