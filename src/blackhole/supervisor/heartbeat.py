"""Is a worker alive and answering? Pure bookkeeping, times passed in.

A worker that dies is noticed from its process sentinel at once; this is for
the other kind of failure, a worker whose event loop is stuck (an endless
loop, a blocking call, SIGSTOP). The supervisor pings every ``interval``; the
worker answers from its event loop. A ping that stays unanswered for
``misses`` intervals means the loop is not running.

The clock starts at the oldest unanswered ping, not at the last answer: if
the supervisor itself was held up (a slow reload, a suspended machine) no
ping went out and nobody is blamed for it.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MISSES = 3


@dataclass(slots=True)
class Heartbeat:
    interval: float
    misses: int = DEFAULT_MISSES
    seq: int = 0
    outstanding_since: float | None = None

    @property
    def timeout(self) -> float:
        return self.interval * self.misses

    def sent(self, now: float) -> int:
        """A ping goes out now; returns its sequence number."""
        self.seq += 1
        if self.outstanding_since is None:
            self.outstanding_since = now
        return self.seq

    def answered(self, seq: int) -> None:
        # Any answer proves the loop ran after that ping was sent; answers
        # arrive in order, so the latest one clears everything before it.
        if seq == self.seq:
            self.outstanding_since = None

    def overdue(self, now: float) -> float | None:
        """Seconds the oldest ping has waited, if that is over the timeout."""
        if self.outstanding_since is None:
            return None
        waited = now - self.outstanding_since
        return waited if waited > self.timeout else None
