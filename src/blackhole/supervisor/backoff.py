"""How soon to restart a worker that died: at once, unless it keeps dying.

Pure arithmetic on the uptimes it is given; the fleet reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """Restart damping for one worker slot.

    A worker that dies within ``stable`` seconds of its start counts as a
    quick failure. The first ``burst`` quick failures in a row are repaired
    at once (a crash is mended within a second); after that each restart
    waits twice as long as the one before, from ``base`` up to ``cap``
    seconds, so that a worker that cannot start does not turn the machine
    into a fork loop. A worker that ran ``stable`` seconds resets the count.
    """

    burst: int = 3
    stable: float = 10.0
    base: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def delay(self, uptime: float) -> float:
        """A worker died after ``uptime`` seconds: how long to wait to restart it."""
        if uptime >= self.stable:
            self.failures = 0
        self.failures += 1
        excess = self.failures - self.burst
        if excess <= 0:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (excess - 1)))
