"""Reaping orphans when the supervisor is PID 1, as in a container.

The kernel hands an orphaned process to the init of its PID namespace
(wait(2), "reparenting"); in a container started without an init shim that
init is this supervisor. Such a process, once it exits, stays a zombie
until its parent waits for it, and zombies pile up in the process table
until the namespace runs out of pids.

Only children the supervisor did not start are reaped here. Its workers and
its hub are reaped through their sentinels (``process.WorkerProcess.reap``),
and waiting for them here would steal the exit status that tells a crash
from a clean stop. So no ``waitpid(-1, ...)``: the zombies are found in
/proc, and each unknown one is waited for by its pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Container
from pathlib import Path

log = logging.getLogger("blackhole.supervisor")

PROC = Path("/proc")


def is_init() -> bool:
    """Are we the init of our PID namespace, the parent of every orphan in it?"""
    return os.getpid() == 1


def zombie_children(parent: int, proc: Path = PROC) -> list[int]:
    """Pids of ``parent``'s children that have exited and await a wait."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # proc(5): "pid (comm) state ppid ..."; comm may hold spaces and
        # parentheses, so split after the last ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2 and fields[0] == "Z" and fields[1] == str(parent):
            found.append(int(entry.name))
    return sorted(found)


def reap_orphans(known: Container[int], proc: Path = PROC) -> list[int]:
    """Wait for every zombie child not in ``known``; return their pids."""
    reaped = []
    for pid in zombie_children(os.getpid(), proc):
        if pid in known:
            continue
        with contextlib.suppress(ChildProcessError):
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                reaped.append(pid)
                log.debug("reaped orphan %d (%s)", pid, os.waitstatus_to_exitcode(status))
    return reaped
