"""Run by tests/test_testing_leaks.py in a process of its own: N start/stop cycles.

The process makes itself a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER),
so a hub or worker that outlived its supervisor would become *our* child and
be counted, not vanish into init. Prints one JSON object: threads, open
descriptors, children and blackhole temporary entries, before and after.
"""

from __future__ import annotations

import ctypes
import json
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

from blackhole.testing import Blackhole

PR_SET_CHILD_SUBREAPER = 36


def children() -> list[int]:
    found: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return sorted(found)


def figures() -> dict[str, object]:
    return {
        "threads": threading.active_count(),
        "fds": len(list(Path("/proc/self/fd").iterdir())),
        "children": children(),
        "temporary": sorted(
            entry.name
            for entry in Path(tempfile.gettempdir()).iterdir()
            if entry.name.startswith("blackhole")
        ),
    }


def cycle() -> None:
    with Blackhole(lmtp=True) as bh:
        bh.add_rule({"name": "r", "at": "rcpt", "recipient": "*@full.example", "reply": "452 x"})
        with smtplib.SMTP(bh.host, bh.port) as client:
            client.noop()
        bh.reset()


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    cycles = int(sys.argv[1])
    cycle()  # the first one imports and warms up; the baseline is after it
    before = figures()
    started = time.monotonic()
    for _ in range(cycles):
        cycle()
    seconds = time.monotonic() - started
    print(json.dumps({"before": before, "after": figures(), "seconds": seconds}))


if __name__ == "__main__":
    main()
