"""The parts of a listener entry that name files: ``unix:/path``, ``socket_mode=``,
``cert=`` and ``key=``.

Paths are fixed as absolute when the config is loaded (``files.resolve``), as
every path option is. Each check returns the value or raises ``ValueError``
with a phrase that reads after the entry or flag name.
"""

from __future__ import annotations

import stat
from pathlib import Path

from blackhole.config import files

UNIX_PREFIX = "unix:"
# sockaddr_un.sun_path is 108 bytes on Linux, the terminating NUL included (unix(7)).
_MAX_SOCKET_PATH = 107


def unix_path(text: str, base: Path) -> str:
    """The socket file of ``unix:PATH``: in a directory that exists, not a directory."""
    path = files.resolve(text, base)
    if not text:
        raise ValueError("needs a path after unix:, such as unix:/run/blackhole/lmtp.sock")
    if len(str(path).encode()) > _MAX_SOCKET_PATH:
        raise ValueError(
            f"socket path {str(path)!r} is longer than {_MAX_SOCKET_PATH} bytes, the most"
            " a UNIX socket address holds"
        )
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; give a socket file name inside it")
    if not path.parent.is_dir():
        raise ValueError(f"directory {str(path.parent)!r} does not exist")
    if path.exists() and not stat.S_ISSOCK(path.lstat().st_mode):
        # Replacing a stale socket is fine; replacing someone's file is not.
        raise ValueError(f"{str(path)!r} exists and is not a socket")
    return str(path)


def socket_mode(text: str) -> int:
    """``0660``-style octal permission bits for the socket file."""
    digits = text.removeprefix("0o")
    if not (digits.isascii() and digits and all(c in "01234567" for c in digits)):
        raise ValueError(f"must be octal permission bits such as 0660, not {text!r}")
    mode = int(digits, 8)
    if mode > 0o777:
        raise ValueError(f"must be at most 0777, not {text!r}")
    return mode


def cert_file(text: str, base: Path) -> str:
    return files.pem_file(text, base, files.CERTIFICATE, "a PEM certificate")


def key_file(text: str, base: Path) -> str:
    return files.pem_file(text, base, files.PRIVATE_KEY, "a PEM private key")
