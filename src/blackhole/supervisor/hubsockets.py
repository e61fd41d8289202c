"""The hub's sockets and secret, made by the supervisor: the control API's
listening socket, the private directory of the store's UNIX socket, and the
control token.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from blackhole.config.model import Config
from blackhole.errors import ConfigError, PermissionDenied, Unavailable
from blackhole.regular import read_text_file
from blackhole.supervisor.leftovers import PrivateDirectory


def load_token(config: Config) -> str | None:
    """``control_token``, or the first line of ``control_token_file`` (read now)."""
    if config.control_token is not None or config.control_token_file is None:
        return config.control_token
    path = config.control_token_file
    try:
        text = read_text_file(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"control_token_file {path!r} cannot be read: {reason}") from None
    token = text.strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"control_token_file {path!r} must hold one token, without spaces")
    return token


def bind_control(address: tuple[str, int]) -> socket.socket:
    host, port = address
    try:
        sock = socket.create_server((host, port), family=_family(host), reuse_port=False)
    except OSError as exc:
        where = f"control_listen {host}:{port}"
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PermissionDenied(f"cannot bind {where}: {exc.strerror}") from None
        raise Unavailable(f"cannot bind {where}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# A UNIX socket path holds at most 107 bytes (unix(7), sun_path). A long
# TMPDIR (a test runner's private one, say) cannot hold the hub's socket, so
# its private directory goes to /tmp instead.
_SUN_PATH_MAX = 107
_PREFIX = "blackhole-hub-"


def socket_directory() -> PrivateDirectory:
    """The private directory of the hub's socket; a later start removes it if
    this supervisor is killed outright."""
    directory = PrivateDirectory(_PREFIX, Path(tempfile.gettempdir()))
    if len(os.fsencode(directory.path / "hub.sock")) <= _SUN_PATH_MAX:
        return directory
    directory.remove()
    return PrivateDirectory(_PREFIX, Path("/tmp"))  # noqa: S108 - a 0700 directory, as above
