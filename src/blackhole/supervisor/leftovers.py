"""Private temporary directories that a later start removes if their owner died.

A process killed with SIGKILL cannot remove its temporary directory (the
supervisor's copies of the TLS key, the hub's socket, the testing API's
config). So each such directory holds a lock file, locked (flock(2)) for as
long as its owner, or a child forked with the descriptor, lives: the kernel
releases the lock when the last of them exits, however it exits. Making a
new directory of the same kind first removes those whose lock is free.

A lock, not a process id in the name: a pid says nothing across PID
namespaces (a container's supervisor is pid 1 at every start, and a server
in a namespace cannot see the host's pids), and a recycled pid would keep a
dead directory, or a test process running the supervisor's code would not
look like a supervisor.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_LOCK = ".lock"


class PrivateDirectory:
    """A new directory (mode 0700) in ``parent``, made once leftovers are removed."""

    def __init__(self, prefix: str, parent: Path) -> None:
        sweep(prefix, parent)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._lock: int | None = _lock(self.path)

    def remove(self) -> None:
        """Remove the directory and release its lock; safe to call twice."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _lock(directory: Path) -> int:
    # Locked before it takes its name: a sweep that finds the name finds it
    # locked, and one that comes earlier finds no lock file and keeps the
    # directory. Readable by all (the directory alone is private), so that a
    # directory handed to another user (the TLS store's) can still be tested.
    scratch = directory / f"{_LOCK}.new"
    fd = os.open(scratch, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    scratch.rename(directory / _LOCK)
    return fd


def sweep(prefix: str, parent: Path) -> None:
    """Remove the directories ``prefix*`` in ``parent`` whose lock is free.

    Never fails: what cannot be looked at or removed (another user's, in a
    sticky /tmp) is left alone.
    """
    try:
        entries = list(parent.glob(f"{prefix}*"))
    except OSError:
        return
    for entry in entries:
        try:
            fd = os.open(entry / _LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # no lock (not ours, or still being made), or not readable
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its owner lives
        with contextlib.suppress(OSError):
            # A symbolic link named like ours is not our directory: only its
            # name would go, and only if it pointed at a lock nobody holds.
            if not entry.is_symlink():
                log.debug("removing %s, left by a process that is gone", entry)
                shutil.rmtree(entry, ignore_errors=True)
        os.close(fd)
