"""A snapshot of every count, read back by name: what metrics, stats and the console use.

``Tally.snapshot()`` makes one from the summed vector; ``Snapshot.empty``
makes a zero one. The accessors turn indices back into the labels of
OBSERVE.md, so that no renderer knows the layout's arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate

from blackhole.observe.layout import (
    CODE_SPAN,
    FIRST_CODE,
    MECHANISMS,
    MICROS,
    OUTCOMES,
    REPLY_BOUNDS,
    REPLY_VERBS,
    RESTART_REASONS,
    RESULTS,
    SESSION_ENDS,
    SIZE_BOUNDS,
    TLS_BOUNDS,
    VERBS,
    Layout,
    histogram_width,
)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts (``le`` = ``bounds``, then ``+Inf``), sum and count."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


@dataclass(frozen=True, slots=True)
class RuleFigures:
    hits: int
    actions: int
    delay_seconds: float


class Snapshot:
    """Immutable figures; every mapping is a fresh dict the caller may keep."""

    __slots__ = ("layout", "totals", "values")

    def __init__(
        self, layout: Layout, values: tuple[int, ...], totals: tuple[int, ...] | None = None
    ) -> None:
        """``values`` since the start or the last reset; ``totals`` everything ever
        counted (``Tally``: before the reset's baseline is taken off), the same
        as ``values`` when no reset or rule slot's restart came in between."""
        if len(values) != layout.size or (totals is not None and len(totals) != layout.size):
            raise ValueError("a snapshot needs one value per slot of its layout")
        self.layout = layout
        self.values = values
        self.totals = values if totals is None else totals

    @classmethod
    def empty(cls, layout: Layout) -> Snapshot:
        return cls(layout, (0,) * layout.size)

    def since(self, earlier: Snapshot) -> Snapshot:
        """What was counted after ``earlier``; gauges as they are now.

        From the totals, which only grow: a ``POST /reset``, or a rule slot
        restarted for a new rule (``Tally.forget``), between the two changes
        what was counted in between by nothing.
        """
        gauges = self.layout.gauges
        delta = [now - then for now, then in zip(self.totals, earlier.totals, strict=True)]
        return Snapshot(self.layout, (*self.values[:gauges], *delta[gauges:]))

    def _by_listener(self, base: int) -> dict[str, int]:
        return {name: self.values[base + i] for i, name in enumerate(self.layout.listeners)}

    def _grid(
        self, base: int, rows: tuple[str, ...], cols: tuple[str, ...]
    ) -> dict[tuple[str, str], int]:
        return {
            (row, col): self.values[base + r * len(cols) + c]
            for r, row in enumerate(rows)
            for c, col in enumerate(cols)
        }

    def _totals_by_column(
        self, grid: dict[tuple[str, str], int], cols: tuple[str, ...]
    ) -> dict[str, int]:
        totals = dict.fromkeys(cols, 0)
        for (_row, col), value in grid.items():
            totals[col] += value
        return totals

    def connections(self) -> dict[str, int]:
        return self._by_listener(self.layout.connections)

    def sessions_open(self) -> dict[str, int]:
        return self._by_listener(self.layout.sessions_open)

    def message_bytes(self) -> dict[str, int]:
        return self._by_listener(self.layout.message_bytes)

    def messages(self) -> dict[tuple[str, str], int]:
        """By (listener, outcome)."""
        return self._grid(self.layout.messages, self.layout.listeners, OUTCOMES)

    def message_totals(self) -> dict[str, int]:
        return self._totals_by_column(self.messages(), OUTCOMES)

    def tls(self) -> dict[tuple[str, str], int]:
        """Handshakes by (listener, result)."""
        return self._grid(self.layout.tls, self.layout.listeners, RESULTS)

    def tls_totals(self) -> dict[str, int]:
        return self._totals_by_column(self.tls(), RESULTS)

    def auth(self) -> dict[tuple[str, str], int]:
        """By (mechanism, result)."""
        return self._grid(self.layout.auth, MECHANISMS, RESULTS)

    def commands(self) -> dict[str, int]:
        return {verb: self.values[self.layout.commands + i] for i, verb in enumerate(VERBS)}

    def restarts(self) -> dict[str, int]:
        """Workers replaced, by reason: only the reasons that occurred."""
        base = self.layout.worker_restarts
        found = {reason: self.values[base + i] for i, reason in enumerate(RESTART_REASONS)}
        return {reason: value for reason, value in found.items() if value}

    def session_ends(self) -> dict[str, int]:
        base = self.layout.session_ends
        return {end: self.values[base + i] for i, end in enumerate(SESSION_ENDS)}

    def replies(self) -> dict[tuple[str, int], int]:
        """By (verb, code), only the pairs that occurred (400 codes a verb)."""
        found: dict[tuple[str, int], int] = {}
        for v, verb in enumerate(REPLY_VERBS):
            base = self.layout.replies + v * CODE_SPAN
            for offset in range(CODE_SPAN):
                value = self.values[base + offset]
                if value:
                    found[verb, FIRST_CODE + offset] = value
        return found

    def replies_by_code(self) -> dict[int, int]:
        codes: dict[int, int] = {}
        for (_verb, code), value in self.replies().items():
            codes[code] = codes.get(code, 0) + value
        return dict(sorted(codes.items()))

    def replies_by_class(self) -> dict[str, int]:
        """``2xx``, ``3xx``, ``4xx``, ``5xx`` (RFC 5321 4.2.1: the first digit)."""
        classes = dict.fromkeys(("2xx", "3xx", "4xx", "5xx"), 0)
        for code, value in self.replies_by_code().items():
            classes[f"{code // 100}xx"] += value
        return classes

    def _histogram(self, base: int, bounds: tuple[float, ...], scale: float) -> Histogram:
        buckets = self.values[base : base + len(bounds) + 1]
        return Histogram(
            bounds, tuple(accumulate(buckets)), self.values[base + len(bounds) + 1] / scale
        )

    def size_histogram(self) -> Histogram:
        return self._histogram(self.layout.size_histogram, SIZE_BOUNDS, 1)

    def tls_histogram(self) -> Histogram:
        return self._histogram(self.layout.tls_histogram, TLS_BOUNDS, MICROS)

    def reply_histograms(self) -> dict[str, Histogram]:
        width = histogram_width(REPLY_BOUNDS)
        base = self.layout.reply_histograms
        return {
            verb: self._histogram(base + v * width, REPLY_BOUNDS, MICROS)
            for v, verb in enumerate(REPLY_VERBS)
        }

    def rule(self, slot: int) -> RuleFigures:
        hits, actions, delay = self.layout.rule_indices(slot)
        return RuleFigures(self.values[hits], self.values[actions], self.values[delay] / MICROS)


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything the metrics, ``/stats`` and the console report, at one moment.

    ``snapshot`` comes from the workers' counts (``Tally.snapshot``, with the
    supervisor's count of workers replaced), ``rules`` from
    ``RuleSlots.figures``; ``workers`` (serving now) and ``uptime`` (seconds)
    from the supervisor.
    """

    snapshot: Snapshot
    rules: Mapping[str, RuleFigures]
    workers: int
    uptime: float
