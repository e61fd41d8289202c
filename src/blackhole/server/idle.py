"""The idle timer of a session: one timer, re-armed lazily.

RFC 5321 section 4.5.3.2 gives the server a timeout per wait (5 minutes
for the next command, 3 for each block of a message); Blackhole uses one
configurable ``timeout`` for all of them. Reading only stamps the session's
``last`` time, which is far cheaper than rescheduling a timer on every read:
when the timer fires early it re-arms itself for the real deadline.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Watched(Protocol):
    """What the timer needs from its session."""

    last: float  # loop time of the last sign of life

    def busy(self, timer: IdleTimer) -> bool:
        """True if the session is not idle although its deadline passed."""
        ...

    def expire(self) -> None:
        """A whole timeout without a sign of life: end the session."""
        ...


class IdleTimer:
    # The session is not kept here but handed to the timer handle: a finished
    # session cancels its timer, and then nothing the session owns points back
    # at it, so reference counting frees it at once (no cycle for the GC).
    __slots__ = ("_handle", "_loop", "_unsent", "limit")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: float) -> None:
        self._loop = loop
        self.limit = limit
        self._handle: asyncio.TimerHandle | None = None
        self._unsent = 0  # write buffer size at the last check

    def arm(self, session: Watched) -> None:
        if self._handle is None:
            self._handle = self._loop.call_at(session.last + self.limit, self._fire, session)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self, session: Watched) -> None:
        self._handle = None
        now = self._loop.time()
        if now < session.last + self.limit:
            self.arm(session)
        elif session.busy(self):
            session.last = now
            self.arm(session)
        else:
            session.expire()

    def replies_moving(self, transport: asyncio.WriteTransport) -> bool:
        """True if the write buffer changed since the last check.

        A client that pipelined many commands may take longer than the
        timeout to read the replies; it is busy, not idle. One that has
        stopped reading leaves the buffer as it was, and times out.
        """
        unsent = transport.get_write_buffer_size()
        moving = unsent > 0 and unsent != self._unsent
        self._unsent = unsent
        return moving
