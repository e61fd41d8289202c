"""Bounded memo tables: answers kept per value on the hot path (MAIL and RCPT
parsing, the greeting and HELO/EHLO answers, rule gates, barred stages, the
event log's reply texts, the shared store's key locations).

A table the caller reads itself, not ``functools.lru_cache``: in the
compiled build that is a C call and a dictionary lookup, where an lru_cache
wrapper is a module attribute read and a call through Python's calling
protocol (about 900 instructions). A full table starts afresh instead of
evicting its least recently used entry: a load repeats a handful of values.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, bound: int) -> V:
    """Keep ``value`` under ``key`` in ``table`` (at most ``bound`` entries); return it."""
    if len(table) >= bound:
        table.clear()
    table[key] = value
    return value
