"""The supervisor's side of counting: one shared region, summed exactly.

The region is one anonymous shared memory file (``memfd_create``; a deleted
temporary file where there is none) of unsigned 64-bit words:

    header | baseline | retired | slot 0 | slot 1 | ... | slot capacity-1

The header holds the capacity, the layout size and an in-use flag per slot.
Each worker process gets a slot of its own and is its only writer
(``observe.counters``). A file descriptor, not a fork-inherited mapping,
because the supervisor starts workers with ``spawn`` by default
(``supervisor/process.py``): the descriptor goes to the worker with its
listening sockets in ``pass_fds`` and the worker maps it with ``attach``; a
forked worker simply inherits it.

Why the figures are exact and never go backwards:

- A worker's counts live in shared pages, not in the worker: SIGKILL loses
  nothing it had counted.
- When a worker is gone (reaped), ``release(slot)`` folds its counters into
  ``retired`` and zeroes the slot, in one step under the region's write lock,
  so no reader ever sees them twice or not at all. Gauges (open sessions) are
  not folded: a dead worker holds no sessions.
- ``reset()`` does not race with writers zeroing their slots: it records the
  current totals as the ``baseline``, and every snapshot reports
  ``totals - baseline``. Totals only grow, so no figure goes below zero.

Locking: the few writers of the shared header, baseline and retired words (the
supervisor folding, whoever serves ``POST /reset``) and the readers take a
POSIX record lock on the file (``lockf``), exclusive to write and shared to
read, so they may live in different processes. Workers never lock.

Intended wiring (``supervisor/``): ``Tally.create(Layout(names), capacity)``
before the first worker, with a capacity of at least twice the workers (a
reload runs old and new workers side by side); ``acquire()`` a slot before
starting a worker and put ``tally.fd`` and the slot number in its spec;
``release(slot)`` after reaping it. The worker calls
``attach_counters(fd, layout, slot)``. The control API and the console call
``snapshot()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from blackhole.observe.counters import Counters
from blackhole.observe.layout import Layout
from blackhole.observe.snapshot import Snapshot

_WORD = 8
_CAPACITY, _SIZE, _IN_USE = 0, 1, 2  # header words; then one in-use word per slot


class SlotsExhaustedError(RuntimeError):
    """Every slot is in use: the region was made too small for the workers."""


def _anonymous_file(length: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("blackhole-counters")
    else:  # pragma: no cover - platforms without memfd (macOS)
        fd, path = tempfile.mkstemp(prefix="blackhole-counters-")
        Path(path).unlink()
    os.ftruncate(fd, length)
    return fd


class Tally:
    """A view of the whole region: slot allocation, folding, totals, reset."""

    def __init__(self, fd: int, layout: Layout, *, owner: bool) -> None:
        self.fd = fd
        self.layout = layout
        self._owner = owner
        words = os.fstat(fd).st_size // _WORD
        self._map = mmap.mmap(fd, words * _WORD)
        self._words = memoryview(self._map).cast("Q")
        self.capacity = int(self._words[_CAPACITY])
        if self._words[_SIZE] != layout.size:
            raise ValueError("the counter region was made for another layout")
        self._header = _IN_USE + self.capacity
        expected = self._header + (2 + self.capacity) * layout.size
        if words != expected:
            raise ValueError("the counter region has the wrong length")

    @classmethod
    def create(cls, layout: Layout, capacity: int) -> Tally:
        if capacity < 1:
            raise ValueError("a counter region needs at least one slot")
        words = _IN_USE + capacity + (2 + capacity) * layout.size
        fd = _anonymous_file(words * _WORD)
        with mmap.mmap(fd, 3 * _WORD) as head:
            view = memoryview(head).cast("Q")
            view[_CAPACITY] = capacity
            view[_SIZE] = layout.size
            view.release()
        return cls(fd, layout, owner=True)

    @classmethod
    def attach(cls, fd: int, layout: Layout) -> Tally:
        """Map a region made by another process (the descriptor stays the caller's)."""
        return cls(fd, layout, owner=False)

    def relabel(self, layout: Layout) -> None:
        """Read the region with ``layout`` from now on: the same slots (every
        layout has one size) with more listener labels bound
        (``Layout.with_listeners``, after a reload)."""
        self.layout = layout

    def close(self) -> None:
        self._words.release()
        # Counters handed out by ``counters()`` may still use the mapping; it
        # is then unmapped when the last of them goes.
        with contextlib.suppress(BufferError):
            self._map.close()
        if self._owner:
            os.close(self.fd)

    # --- slots ----------------------------------------------------------------------

    def _row(self, index: int) -> memoryview:
        """Row 0 is the baseline, 1 the retired totals, 2 + n slot n."""
        start = self._header + index * self.layout.size
        return self._words[start : start + self.layout.size]

    def counters(self, slot: int) -> Counters:
        """The worker-side counters of ``slot`` (in this process's mapping)."""
        if not 0 <= slot < self.capacity:
            raise ValueError(f"no counter slot {slot}")
        return Counters(self.layout, self._row(2 + slot))

    def acquire(self) -> int:
        """A free, zeroed slot, now marked in use; ``SlotsExhaustedError`` if none."""
        with self._locked(fcntl.LOCK_EX):
            for slot in range(self.capacity):
                if not self._words[_IN_USE + slot]:
                    self._words[_IN_USE + slot] = 1
                    return slot
        raise SlotsExhaustedError(f"all {self.capacity} counter slots are in use")

    def release(self, slot: int) -> None:
        """Fold a finished worker's counts into the retired totals, free its slot.

        Call it only once the worker is reaped: a live writer would race the
        zeroing. Releasing a free slot does nothing.
        """
        with self._locked(fcntl.LOCK_EX):
            if not self._words[_IN_USE + slot]:
                return
            retired, row, first = self._row(1), self._row(2 + slot), self.layout.gauges
            for index in range(first, self.layout.size):
                if row[index]:
                    retired[index] += row[index]
            for index in range(self.layout.size):
                row[index] = 0
            self._words[_IN_USE + slot] = 0

    def add_retired(self, index: int) -> None:
        """Count one at ``index`` in the retired totals: what the supervisor
        itself counts (a worker replaced), folded as a dead worker's are."""
        with self._locked(fcntl.LOCK_EX):
            self._row(1)[index] += 1

    def in_use(self) -> list[int]:
        with self._locked(fcntl.LOCK_SH):
            return self._in_use()

    def _in_use(self) -> list[int]:
        return [s for s in range(self.capacity) if self._words[_IN_USE + s]]

    # --- reading --------------------------------------------------------------------

    def _totals(self) -> list[int]:
        rows = [self._row(1), *(self._row(2 + s) for s in self._in_use())]
        return [sum(column) for column in zip(*rows, strict=True)]

    def snapshot(self) -> Snapshot:
        """Every figure since the start or the last reset, summed over all workers."""
        with self._locked(fcntl.LOCK_SH):
            totals = self._totals()
            baseline = self._row(0).tolist()
        values = tuple(t - b for t, b in zip(totals, baseline, strict=True))
        return Snapshot(self.layout, values, tuple(totals))

    def reset(self) -> None:
        """Start every counter (not the gauges) from zero again."""
        self.forget(range(self.layout.gauges, self.layout.size))

    def forget(self, indices: range | tuple[int, ...]) -> None:
        """Start these counters from zero again (a rule slot given to a new rule)."""
        with self._locked(fcntl.LOCK_EX):
            totals, baseline = self._totals(), self._row(0)
            for index in indices:
                baseline[index] = totals[index]

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        fcntl.lockf(self.fd, kind)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)


def attach_counters(fd: int, layout: Layout, slot: int) -> Counters:
    """In a worker: the counters of its slot in the region behind ``fd``."""
    return Tally.attach(fd, layout).counters(slot)
