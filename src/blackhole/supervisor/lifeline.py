"""Stop when the process that started the server is gone.

A test suite that runs Blackhole as its child (``blackhole.testing``) can
itself die without a word: SIGKILL, an out-of-memory kill, a CI runner
cancelled. Nothing would then tell the server to stop, and it would keep its
ports. So the test process opens a pipe, keeps the write end, and hands the
read end to the server, naming its descriptor in ``BLACKHOLE_LIFELINE_FD``.
Nothing is ever written to the pipe: when the last write end closes, which the
kernel does when the test process dies, the read end polls readable at end of
file, and the supervisor stops as it does on SIGTERM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

ENV = "BLACKHOLE_LIFELINE_FD"

log = logging.getLogger("blackhole.supervisor")


def take_lifeline(environ: MutableMapping[str, str]) -> int | None:
    """The lifeline's descriptor, taken out of ``environ`` so no child sees it."""
    value = environ.pop(ENV, None)
    if value is None:
        return None
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError):
        log.warning("%s=%r is not an open descriptor: ignored", ENV, value)
        return None
    os.set_inheritable(fd, False)  # spawned workers and the hub do not hold it
    return fd
