"""``record = N``: the last N message records, with headers, never bodies.

A ``Recorder`` is a bounded ring (``collections.deque`` with ``maxlen``): it
never holds more than N records, whatever the traffic. A record is the event
log's message record (``eventlog.message_record``) plus ``headers``, a list of
``[name, value]`` pairs from the header section (RFC 5322 2.2), unfolded.
Headers are bounded too (values cut at ``MAX_HEADER_VALUE`` characters, and
fields kept in order while they fit in ``MAX_HEADER_TEXT`` characters in all,
each charged ``FIELD_COST`` more; ``headers_truncated`` says when something
was left out), so that N bounds the memory as well as the count: a record's
headers take at most about 12 KiB once decoded (tracemalloc).

Wiring: each worker keeps nothing; it sends every record (plain JSON values)
over its channel to the process serving the control API, whose one
``Recorder`` answers ``GET /messages``. So the ring holds the newest records
of all workers together, in the order they arrived.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

# RFC 5322 2.1.1: a line is at most 998 characters. A real message's header
# section is a few KiB; 8 KiB keeps it whole, where 200 fields of 998 made
# 200 KiB records (20 GB for record = 100000).
MAX_HEADER_VALUE = 998
MAX_HEADER_TEXT = 8192
# What a field costs besides its characters: a list and two strings. Charged
# too, so that 8,000 empty fields ("a:" lines) cannot make a 1 MB record.
FIELD_COST = 100

JSON = dict[str, Any]


def with_headers(record: JSON, headers: Sequence[tuple[str, str]]) -> JSON:
    """The message record plus its (bounded) headers; the body is never an argument."""
    kept: list[list[str]] = []
    left = MAX_HEADER_TEXT
    truncated = False
    for name, value in headers:
        cut = value[:MAX_HEADER_VALUE]
        size = len(name) + len(cut) + FIELD_COST
        if size > left:
            truncated = True
            break
        truncated = truncated or len(cut) < len(value)
        kept.append([name, cut])
        left -= size
    return {**record, "headers": kept, "headers_truncated": truncated}


class Recorder:
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("record must be 0 or more")
        self.capacity = capacity
        self._ring: deque[JSON] = deque(maxlen=capacity)

    def add(self, record: JSON) -> None:
        if self.capacity:
            self._ring.append(record)

    def messages(self, limit: int | None = None) -> list[JSON]:
        """The newest ``limit`` records (all if ``None``), newest first."""
        newest = list(reversed(self._ring))
        return newest if limit is None else newest[: max(limit, 0)]

    def clear(self) -> None:
        self._ring.clear()

    def __len__(self) -> int:
        return len(self._ring)
