"""Reading the files a user names (config, rules, token, TLS): regular files only.

Reading a FIFO would wait for a writer for ever, and a device (``/dev/zero``)
never ends: a path option pointing at either must be a clear error, not a
hang or a process that eats memory. Each file is opened without blocking and
checked before a byte is read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# A config, rules or token file is a few KiB; this is far more.
MAX_TEXT_FILE = 1 << 20


def read_regular(path: str | Path, size: int) -> bytes:
    """Up to ``size`` bytes of a regular file; anything else raises ``OSError``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file")
    except BaseException:
        os.close(fd)  # os.fdopen() has not taken it yet
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read(size)


def read_text_file(path: str | Path) -> bytes:
    """A config, rules or token file's bytes: a regular file of at most 1 MiB."""
    data = read_regular(path, MAX_TEXT_FILE + 1)
    if len(data) > MAX_TEXT_FILE:
        raise OSError(errno.EFBIG, "larger than 1 MiB")
    return data
