"""Reading a JSON-lines file (the event log, the JSON log) that a running server
may still be appending to."""

from __future__ import annotations

import json
from typing import Any


def written_records(data: str | bytes) -> list[dict[str, Any]]:
    """The record of every line written whole so far.

    A reader can catch the last line half-written: the kernel grows a file
    page by page as one ``write()`` is copied in, so a line that crosses a
    page boundary can be read cut there. That line counts once its newline is
    in; any other line that is not JSON fails the test.
    """
    text = data.decode() if isinstance(data, bytes) else data
    whole, _newline, _partial = text.rpartition("\n")
    return [json.loads(line) for line in whole.splitlines()]
