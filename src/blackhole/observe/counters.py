"""The worker's side of counting: plain integers bumped on the hot path.

A worker owns one slot of the shared region (``observe.tally``): a
``memoryview`` cast to unsigned 64-bit integers over shared memory. It is the
only process that writes that slot, so every count is ``view[i] += 1``: no
lock, no system call, no message to anyone. An aligned 8-byte store is atomic
on the machines we run on, so a reader in another process sees either the old
or the new value, never a torn one, and whatever the worker had counted is
still in the shared pages when it is SIGKILLed.

Integration (the adapter in ``server/`` calls these; indices are computed once
per listener and per parsed verb, so the hot path does no lookups by name):

- on accept: ``connection(listener)``; on the session's end:
  ``session_end(listener, end)``;
- per command line: ``command(verb)``; per reply written:
  ``reply(verb, code, seconds)`` right after the transport took the bytes
  (``seconds`` from the complete command to the reply, injected delays
  excluded);
- per transaction end (OBSERVE.md "Counting, exactly"):
  ``message(listener, outcome, size)`` with ``size=None`` when no data was
  read; count it right after handing the final reply to the transport, with
  no ``await`` in between, so that the count and the 250 the client sees go
  together;
- TLS handshakes, AUTH results, rule hits and actions, injected delays.

``Counters.private(layout)`` counts into memory of its own: the null sink for
tests and for code paths that run without a supervisor.

The compiled build (setup.py, ``BLACKHOLE_MYPYC=1``) compiles this module
and ``observe.meter`` with Cython, typed by the ``.pxd`` file next to each:
the slot is then a C array and ``view[i] += n`` one machine addition, where
a ``memoryview`` item costs two Python integers to read and write back.
"""

from __future__ import annotations

from bisect import bisect_left

from blackhole.observe.layout import (
    CODE_SPAN,
    FIRST_CODE,
    LAST_CODE,
    MICROS,
    OUTCOMES,
    REPLY_BOUNDS,
    RESULTS,
    SIZE_BOUNDS,
    TLS_BOUNDS,
    Layout,
    histogram_width,
)

_REPLY_WIDTH = histogram_width(REPLY_BOUNDS)
_REPLY_SUM = len(REPLY_BOUNDS) + 1
_SIZE_SUM = len(SIZE_BOUNDS) + 1
_OUTCOMES = len(OUTCOMES)


class Counters:
    """Fast increments into one slot; every method is a handful of stores."""

    # The block bases are copied from the layout onto the instance: one
    # attribute load fewer per count on the hot path.
    __slots__ = (
        "_connections",
        "_message_bytes",
        "_messages",
        "_replies",
        "_reply_histograms",
        "_session_ends",
        "_sessions_open",
        "_size_histogram",
        "_v",
        "layout",
        "view",
    )

    def __init__(self, layout: Layout, view: memoryview) -> None:
        if view.format != "Q" or len(view) != layout.size:
            raise ValueError(f"a counter slot is {layout.size} unsigned 64-bit integers")
        self.layout = layout
        # The slot itself, for a caller that inlines its increments (observe.meter).
        self.view = view
        self._v = view  # the same; compiled, a typed view private to this class
        self._connections = layout.connections
        self._sessions_open = layout.sessions_open
        self._session_ends = layout.session_ends
        self._messages = layout.messages
        self._message_bytes = layout.message_bytes
        self._replies = layout.replies
        self._reply_histograms = layout.reply_histograms
        self._size_histogram = layout.size_histogram

    @classmethod
    def private(cls, layout: Layout) -> Counters:
        return cls(layout, memoryview(bytearray(8 * layout.size)).cast("Q"))

    def value(self, index: int) -> int:
        return int(self._v[index])

    def connection(self, listener: int) -> None:
        self._v[self._connections + listener] += 1
        self._v[self._sessions_open + listener] += 1

    def session_end(self, listener: int, end: int) -> None:
        self._v[self._sessions_open + listener] -= 1
        self._v[self._session_ends + end] += 1

    def command(self, verb: int) -> None:
        self._v[self.layout.commands + verb] += 1

    def reply(self, verb: int, code: int, seconds: float) -> None:
        """A reply written; codes outside 200-599 are a bug and count as 599/200."""
        if not FIRST_CODE <= code <= LAST_CODE:
            code = LAST_CODE if code > LAST_CODE else FIRST_CODE
        v = self._v
        v[self._replies + verb * CODE_SPAN + code - FIRST_CODE] += 1
        base = self._reply_histograms + verb * _REPLY_WIDTH
        v[base + bisect_left(REPLY_BOUNDS, seconds)] += 1
        v[base + _REPLY_SUM] += int(seconds * MICROS + 0.5)

    def message(self, listener: int, outcome: int, size: int | None) -> None:
        """A transaction ended (``layout.ACCEPTED``...); ``size`` if data was read."""
        v = self._v
        v[self._messages + listener * _OUTCOMES + outcome] += 1
        if size is not None:
            v[self._message_bytes + listener] += size
            base = self._size_histogram
            v[base + bisect_left(SIZE_BOUNDS, size)] += 1
            v[base + _SIZE_SUM] += size

    def tls(self, listener: int, ok: bool, seconds: float) -> None:
        self._v[self.layout.tls + listener * len(RESULTS) + (0 if ok else 1)] += 1
        if ok:
            self._observe(self.layout.tls_histogram, TLS_BOUNDS, seconds)

    def auth(self, mechanism: int, ok: bool) -> None:
        self._v[self.layout.auth + mechanism * len(RESULTS) + (0 if ok else 1)] += 1

    def rule_hit(self, slot: int) -> None:
        """A rule's matchers held (RULES.md: counted whether or not it acts)."""
        self._v[self.layout.rule_hits + slot] += 1

    def rule_action(self, slot: int) -> None:
        self._v[self.layout.rule_actions + slot] += 1

    def delay(self, slot: int, seconds: float) -> None:
        """An injected delay served (``MODE_RULE_SLOT`` for config and switches)."""
        self._v[self.layout.rule_delay + slot] += int(seconds * MICROS + 0.5)

    def _observe(self, base: int, bounds: tuple[float, ...], seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le).
        self._v[base + bisect_left(bounds, seconds)] += 1
        self._v[base + len(bounds) + 1] += int(seconds * MICROS + 0.5)
