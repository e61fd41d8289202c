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

import fcntl
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_LOCK = ".lock"


# The directories this process made: never its own leftovers, even where
# flock is emulated by per-process POSIX locks (NFS) and so would not stop
# this process from locking its own lock file a second time.
_MINE: set[Path] = set()


class PrivateDirectory:
    """A new directory (mode 0700) in ``parent``, made once leftovers are removed."""

    def __init__(self, prefix: str, parent: Path) -> None:
        sweep(prefix, parent)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            self._lock: int | None = _lock(self.path)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        _MINE.add(self.path)

    def remove(self) -> None:
        """Remove the directory and release its lock; safe to call twice."""
        shutil.rmtree(self.path, ignore_errors=True)
        _MINE.discard(self.path)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _lock(directory: Path) -> int:
    # Locked before it takes its name: a sweep that finds the name finds it
    # locked, and one that comes earlier finds no lock file and keeps the
    # directory. Readable by all (the directory alone is private), so that a
    # directory handed to another user (the TLS store's) can still be tested.
    # Open for writing: on NFS an exclusive flock needs it (flock(2), NOTES).
    scratch = directory / f"{_LOCK}.new"
    fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        scratch.rename(directory / _LOCK)
    except BaseException:
        os.close(fd)
        raise
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
        if entry not in _MINE and _owner_gone(entry):
            log.debug("removing %s, left by a process that is gone", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _owner_gone(entry: Path) -> bool:
    """True if ``entry`` is a directory whose lock file nobody holds."""
    try:
        if not stat.S_ISDIR(entry.lstat().st_mode):
            return False  # a symbolic link or a file named like ours: not ours
        # Non-blocking: anyone may put a FIFO there, whose open would wait
        # for a writer for ever.
        fd = os.open(
            entry / _LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        )
    except OSError:
        return False  # no lock (not ours, or still being made), or not readable
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        # Shared: it works on a descriptor opened for reading everywhere
        # (NFS included), and still conflicts with the owner's exclusive lock.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False  # its owner lives
    finally:
        os.close(fd)
    return True
