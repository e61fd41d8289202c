"""The supervisor's share of counting: the shared region, worker slots, console lines.

``Counting`` owns the one ``observe.tally.Tally`` of the server's life. It is
made before the first worker, from the listeners' labels (their bound
``host:port``), and a reload that adds listeners binds their labels to
listener slots of the same region (``listeners``). Each worker started gets
a slot of its own (``acquire``), whose number and the region's descriptor
travel in its ``WorkerSpec``; when a worker has been reaped, ``release``
folds its slot into the retired totals before the slot can be handed out
again. So a worker that dies loses none of
its counts, and the totals are exact whatever the number of workers.

The control process (or anything else that reports figures) reads the same
``Tally``: ``Counting.tally.fd`` and ``Counting.names`` are what it needs to
``Tally.attach`` it (pass the descriptor the way a worker's is passed).

``Console`` logs the ``stats_interval`` progress line from the supervisor's
poll loop (``deadline`` joins the loop's deadlines: no thread, no asyncio),
and the end-of-run summary (OBSERVE.md "Console").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from blackhole.observe.console import progress_line, summary_line
from blackhole.observe.layout import MAX_LISTENERS, RESTART_REASONS, Layout
from blackhole.observe.snapshot import Snapshot
from blackhole.observe.tally import SlotsExhaustedError, Tally

log = logging.getLogger("blackhole.supervisor")

# Slots for every worker twice over (a reload runs old and new side by side),
# and room for `workers` to grow on a reload: unused slots cost address space,
# not memory (their pages are never touched).
_MIN_CAPACITY = 64


class Counting:
    def __init__(self, names: Sequence[str], workers: int) -> None:
        layout = Layout(names)
        _warn_unbound(layout, names)
        self.tally = Tally.create(layout, max(_MIN_CAPACITY, 4 * workers))
        self._slots: dict[int, int] = {}  # pid -> counter slot

    @property
    def names(self) -> tuple[str, ...]:
        """The listener labels bound to counter slots, in slot order: what a
        worker builds its ``Layout`` from."""
        return self.tally.layout.listeners

    def listeners(self, names: Sequence[str]) -> Layout:
        """A reload's listener labels: those not counted yet get slots of their
        own (their counts start at zero; the others' stay where they are)."""
        layout = self.tally.layout.with_listeners(names)
        _warn_unbound(layout, names)
        self.tally.relabel(layout)
        return layout

    def acquire(self) -> int:
        """A slot for the next worker; raises ``SlotsExhaustedError`` if none is free."""
        return self.tally.acquire()

    def bind(self, pid: int, slot: int) -> None:
        self._slots[pid] = slot

    def release(self, pid: int) -> None:
        """``pid`` is reaped: its counts join the retired totals."""
        slot = self._slots.pop(pid, None)
        if slot is not None:
            self.tally.release(slot)

    def restarted(self, reason: str) -> None:
        """A worker is being replaced (``layout.RESTART_REASONS``)."""
        layout = self.tally.layout
        self.tally.add_retired(layout.worker_restarts + RESTART_REASONS.index(reason))

    def release_slot(self, slot: int) -> None:
        """A slot acquired for a worker that never started."""
        self.tally.release(slot)

    def close(self) -> None:
        self.tally.close()


def _warn_unbound(layout: Layout, names: Sequence[str]) -> None:
    unbound = layout.unbound(names)
    if unbound:
        log.warning(
            "listeners %s: no counter slot left (%d listener labels at most in a"
            " server's life); counted as listener %s until a restart",
            ", ".join(unbound),
            MAX_LISTENERS,
            layout.listeners[0],
        )


class Console:
    """The progress line every ``interval`` seconds (0: never), and the summary."""

    def __init__(self, tally: Tally, interval: float, clock: Callable[[], float]) -> None:
        self.tally = tally
        self.interval = interval
        self.clock = clock
        self._previous = tally.snapshot()
        self._at = clock()

    def deadline(self) -> float | None:
        return self._at + self.interval if self.interval > 0 else None

    def tick(self) -> None:
        deadline = self.deadline()
        now = self.clock()
        if deadline is None or now < deadline:
            return
        current = self.tally.snapshot()
        log.info("%s", progress_line(self._previous, current, now - self._at))
        self._previous, self._at = current, now

    def summary(self) -> Snapshot:
        snapshot = self.tally.snapshot()
        log.info("%s", summary_line(snapshot))
        return snapshot


__all__ = ["Console", "Counting", "SlotsExhaustedError"]
