"""A benchmark switch: workers that count nothing, to measure what counting costs.

Counting is always on (OBSERVE.md, "Counting, exactly"): no config key turns
it off. To show what it costs, the benchmark (bench/run.py's
``blackhole-Nw-nocount`` servers) starts Blackhole with ``NO_COUNTING_ENV``
set to ``1``; each worker reads it once, when it starts
(``server.observing.Observation.for_worker``), and then gives every session an
``UncountedMeter`` instead of a ``meter.SessionMeter``. Its ``replies`` is the
same no-op as the core's own ``protocol.metering.NullMeter``, so the core pays
exactly what it pays with no meter at all.

Nothing is counted then: no replies, commands, messages, sessions or reply
times, and no message reaches the event log or the ``record`` ring (both are
told of messages by the meter). It is meant for benchmarks only; users never
need it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

NO_COUNTING_ENV = "BLACKHOLE_BENCH_NO_COUNTING"


def counting_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the benchmark switch is set to anything but empty or ``0``."""
    return environ.get(NO_COUNTING_ENV, "") not in ("", "0")


def _no_message(_outcome: int, _reply: bytes | None, _size: int | None) -> None:
    return None


class UncountedMeter:
    """What the adapter sets on a ``SessionMeter``, with nothing counted."""

    __slots__ = ("commands", "listener", "on_message", "size", "started")

    def __init__(self, listener: int) -> None:
        self.listener = listener
        self.started = 0.0
        self.size: int | None = None
        self.commands = 0
        self.on_message: Callable[[int, bytes | None, int | None], None] = _no_message

    def start(self) -> None:
        return None

    def replies(self, out: list[bytes], marks: list[int | str]) -> None:
        return None

    def unanswered(self, marks: list[int | str]) -> None:
        return None

    def end(self, how: int) -> None:
        return None
