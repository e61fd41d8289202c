"""SIGTERM/SIGINT: stop accepting, let sessions finish, then make sure all are gone.

The first stop signal closes the supervisor's copies of the listening
sockets and sends SIGTERM to every worker, which finish the transaction in
progress within ``grace_period`` and tell idle sessions 421 (SPEC
"Processes"). Workers still there ``stop_margin`` seconds after that are
killed. A second stop signal kills them at once.
"""

from __future__ import annotations

import logging
import signal

from blackhole.supervisor.fleet import Fleet
from blackhole.supervisor.notify import sd_notify
from blackhole.supervisor.reload import close_all

log = logging.getLogger("blackhole.supervisor")


class Drain:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.deadline = 0.0
        self.killed_leftovers = False

    @property
    def stopping(self) -> bool:
        return self.fleet.phase.stopping

    def done(self) -> bool:
        """Stopping, and every worker is gone."""
        return self.stopping and not any(True for _ in self.fleet.slots.processes())

    def on_signal(self, name: str) -> None:
        if self.stopping:
            log.warning("%s again: stopping now, sessions in flight are cut", name)
            self.fleet.kill_all()
        else:
            self._begin(name)

    def _begin(self, name: str) -> None:
        fleet = self.fleet
        grace = fleet.config.grace_period
        fleet.phase.stopping = True
        self.deadline = fleet.clock() + grace + fleet.timing.stop_margin
        log.info(
            "%s: stopping; sessions in flight have up to %gs to finish their transaction",
            name,
            grace,
        )
        sd_notify("STOPPING=1")
        # Our copies of the listening sockets go now, so that once the
        # workers close theirs the ports refuse instead of queueing.
        close_all(fleet.bound)
        fleet.bound = []
        for slot in fleet.slots:
            slot.start_at = None
        fleet.signal_all(signal.SIGTERM)

    def tick(self) -> None:
        if self.fleet.clock() >= self.deadline and not self.killed_leftovers:
            self.killed_leftovers = True
            log.warning("grace period over: killing the workers still draining")
            self.fleet.signal_all(signal.SIGKILL)
