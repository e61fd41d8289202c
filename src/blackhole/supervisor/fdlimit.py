"""The open files limit: one descriptor per session, so the server takes all it may.

Every session holds a socket, so RLIMIT_NOFILE's soft limit is the most
sessions a worker can hold. Many systems start services with a soft limit of
1,024 and a much higher hard limit (systemd since version 240: 1,024 and
524,288), and leave it to programs that need more to raise their soft limit
to the hard one themselves, which any process may do (setrlimit(2)); the
soft limit of 1,024 only protects programs that still use select(), which a
worker does not (its loop uses epoll). The supervisor raises it once at
start-up, before it starts the hub and the workers, which inherit it. The
hard limit is the administrator's ceiling and stays as it is
(docs/performance.md says how to raise it).
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger("blackhole.supervisor")

# What the kernel allows one process at most when the hard limit is
# "unlimited", which RLIMIT_NOFILE cannot be set to.
_NR_OPEN = Path("/proc/sys/fs/nr_open")
_NR_OPEN_DEFAULT = 1_048_576


def _ceiling(hard: int) -> int:
    if hard != resource.RLIM_INFINITY:
        return hard
    try:
        return int(_NR_OPEN.read_text())
    except (OSError, ValueError):
        return _NR_OPEN_DEFAULT


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _ceiling(hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            # A container or a security module may refuse: serve with what we have.
            log.debug("cannot raise the open files limit from %d to %d: %s", soft, wanted, exc)
        else:
            soft = wanted
    log.debug("open files limit: %s (sessions per worker at most about that)", soft)
    return soft
