"""Private temporary directories that name the process that made them.

A process killed with SIGKILL cannot remove its temporary directory (the
supervisor's copies of the TLS key, the hub's socket, the testing API's
config). Each such directory is named ``<prefix><pid>-<random>``, and making
a new one of the same kind first removes those whose process no longer runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def running(pid: int) -> bool:
    """True if a process with this pid exists (under any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def private_directory(prefix: str, parent: Path, owner_runs: Callable[[int], bool]) -> Path:
    """A new directory (mode 0700) in ``parent``, once leftovers are removed.

    ``owner_runs(pid)`` says whether the process named by a leftover still
    runs; its directory is then kept.
    """
    _sweep(prefix, parent, owner_runs)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def _sweep(prefix: str, parent: Path, owner_runs: Callable[[int], bool]) -> None:
    try:
        entries = list(parent.glob(f"{prefix}*-*"))
    except OSError:
        return
    for entry in entries:
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if owner_runs(int(pid_text)) or not entry.is_dir():
            continue
        log.debug("removing %s, left by a process that is gone", entry)
        # Another user's leftover (in sticky /tmp) cannot be removed: kept.
        shutil.rmtree(entry, ignore_errors=True)
