"""Signals for a process with no event loop: handlers record, a loop acts.

The handler only appends the signal number to a list; the supervisor's
``poll`` wakes up because ``signal.set_wakeup_fd`` writes a byte to a pipe
it watches (PEP 475 would otherwise resume the poll after the handler). The
loop then acts on the recorded numbers, never on the bytes in the pipe: a
worker forked at the wrong instant could write there too.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from types import FrameType
from typing import Any


class SignalQueue:
    def __init__(self, signals: Iterable[int]) -> None:
        self._signals = tuple(signals)
        self.pending: list[int] = []
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for signum in self._signals:
            self._old[signum] = signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self.pending.append(signum)

    def drain(self) -> None:
        """Empty the wake-up pipe (its content does not matter)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 512):
                pass

    def take(self) -> list[int]:
        taken, self.pending = self.pending, []
        return taken

    def fds(self) -> list[int]:
        return [self.read_fd, self.write_fd]

    def restore(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
