"""``record = N``: the last N message records, with headers, never bodies.

A ``Recorder`` is a bounded ring (``collections.deque`` with ``maxlen``): it
never holds more than N records, whatever the traffic. A record is the event
log's message record (``eventlog.message_record``) plus ``headers``, a list of
``[name, value]`` pairs from the header section (RFC 5322 2.2), unfolded.
Headers are bounded too (``MAX_HEADERS`` pairs, values cut at
``MAX_HEADER_VALUE`` characters, ``headers_truncated`` says so), so that N
bounds the memory as well as the count.

Wiring: each worker keeps nothing; it sends every record (plain JSON values)
over its channel to the process serving the control API, whose one
``Recorder`` answers ``GET /messages``. So the ring holds the newest records
of all workers together, in the order they arrived.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

# RFC 5322 2.1.1: a line is at most 998 characters; far more headers than any
# real message carries.
MAX_HEADER_VALUE = 998
MAX_HEADERS = 200

JSON = dict[str, Any]


def with_headers(record: JSON, headers: Sequence[tuple[str, str]]) -> JSON:
    """The message record plus its (bounded) headers; the body is never an argument."""
    kept = [[name, value[:MAX_HEADER_VALUE]] for name, value in headers[:MAX_HEADERS]]
    truncated = len(headers) > MAX_HEADERS or any(len(v) > MAX_HEADER_VALUE for _, v in headers)
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
