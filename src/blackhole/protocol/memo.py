"""Bounded memo tables for the pure functions a session calls at every command.

A table the function reads itself, not ``functools.lru_cache``: in the
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
