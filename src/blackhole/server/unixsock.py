"""UNIX-domain listening sockets (``unix:/path`` listeners).

A socket file outlives the process that bound it: one left by a server that
was killed blocks the next bind with EADDRINUSE, though nothing listens.
Such a stale file (connecting to it is refused) is replaced; a live one (a
server accepts on it) is "address in use", exactly as a TCP port would be.
The supervisor removes the file when it closes the listener, at exit or
when a reload drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Iterable
from pathlib import Path

from blackhole.config.model import Listener
from blackhole.errors import PermissionDenied, Unavailable

__all__ = ["UNIX_CLIENT", "apply_modes", "bind_unix", "client_of", "hand_over", "release"]

# How a session over a UNIX socket names its client (logs, event log, rules'
# Facts): the peer has no address, and "unix" is no IP, so a rule's client
# matcher never holds for it.
UNIX_CLIENT = "unix"

log = logging.getLogger(__name__)


def client_of(transport: asyncio.BaseTransport) -> str | None:
    """The client's IP address, ``"unix"`` over a UNIX socket, None if unknown."""
    peername = transport.get_extra_info("peername")
    if isinstance(peername, tuple):
        return str(peername[0])
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        return UNIX_CLIENT
    return None


def _clear_stale(listener: Listener, path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise Unavailable(f"cannot bind {listener}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        # Nobody accepts on it: left behind by a server that is gone.
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
        return
    except OSError:
        return  # not ours to judge (no permission...): bind() will say why
    finally:
        probe.close()
    raise Unavailable(f"cannot bind {listener}: address already in use (a server accepts on it)")


def bind_unix(listener: Listener, backlog: int) -> socket.socket:
    """Bind and listen on ``listener.path``; return the non-blocking socket.

    ``socket_mode`` is applied before listen(2), so no client can connect
    while the file still has the umask's permissions.
    """
    path = listener.path
    assert path is not None
    _clear_stale(listener, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if listener.socket_mode is not None:
            Path(path).chmod(listener.socket_mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"cannot bind {listener}"
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PermissionDenied(f"{where}: permission denied") from None
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(f"{where}: address already in use") from None
        raise Unavailable(f"{where}: {exc.strerror or exc}") from None
    return sock


def hand_over(listeners: Iterable[Listener], uid: int, gid: int) -> None:
    """Give the socket files to the user the server is about to become, so that
    its ``socket_mode`` speaks of that user and group."""
    for listener in listeners:
        if listener.path is not None:
            os.chown(listener.path, uid, gid)


def apply_modes(listeners: Iterable[Listener]) -> None:
    """Set ``socket_mode`` again: a reload keeps an unchanged socket, not its old mode."""
    for listener in listeners:
        if listener.path is not None and listener.socket_mode is not None:
            try:
                Path(listener.path).chmod(listener.socket_mode)
            except OSError as exc:
                log.warning("cannot set socket_mode of %s: %s", listener.path, exc)


def release(listener: Listener) -> None:
    """Remove the socket file of a listener about to be closed (no-op for TCP)."""
    path = listener.path
    if path is None:
        return
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            Path(path).unlink()
