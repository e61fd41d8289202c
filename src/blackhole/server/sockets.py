"""Listening sockets, bound in the parent before any worker exists.

The supervisor binds every listener while it still has the privileges to do
so (ports below 1024), then drops them and hands the sockets to its workers,
which all accept on the same sockets. Binding failures become typed errors
with the sysexits code the command line returns: ``PermissionDenied`` (77) or
``Unavailable`` (69).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable
from pathlib import Path

from blackhole.config.model import Listener
from blackhole.errors import BlackholeError, ConfigError, PermissionDenied, Unavailable
from blackhole.net import host_port
from blackhole.server.unixsock import bind_unix, release

__all__ = ["MIN_BACKLOG", "bind_all", "bind_listener", "default_backlog", "describe"]

log = logging.getLogger(__name__)

# A load test opens hundreds of connections at once. When the accept queue is
# full Linux drops the SYN and the client retries after 1 s, 3 s, 7 s... which
# shows up as latency spikes the server did not cause (the classic server
# listened with a backlog of 100 and did exactly that). 1024 absorbs a burst
# of 500 connects with room to spare.
MIN_BACKLOG = 1024
_SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def default_backlog(somaxconn: Path = _SOMAXCONN) -> int:
    """``net.core.somaxconn`` when readable, but at least ``MIN_BACKLOG``.

    listen(2): the kernel silently caps the backlog at somaxconn, so asking for
    more is harmless; asking for less wastes what the admin allowed. When
    somaxconn is below MIN_BACKLOG (older kernels default to 128) we warn,
    because bursts will then be dropped whatever we ask for.
    """
    try:
        limit = int(somaxconn.read_text().strip())
    except (OSError, ValueError):
        return MIN_BACKLOG
    if limit < MIN_BACKLOG:
        log.warning(
            "net.core.somaxconn is %d: connection bursts above that will be delayed; "
            "raise it with: sysctl -w net.core.somaxconn=%d",
            limit,
            MIN_BACKLOG,
        )
    return max(limit, MIN_BACKLOG)


def _bind_host(listener: Listener) -> str:
    host = listener.host.strip()
    if host.startswith("[") and host.endswith("]"):
        # Tolerate a bracketed IPv6 literal (RFC 3986 section 3.2.2 form).
        host = host[1:-1]
    # The classic ":PORT" meant every IPv4 address.
    return host or "0.0.0.0"


def _bind_error(listener: Listener, exc: OSError) -> BlackholeError:
    """Map a bind(2)/listen(2) failure to the typed error the CLI turns into an exit code."""
    where = f"cannot bind {listener}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(
            f"{where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        )
    if exc.errno == errno.EADDRINUSE:
        return Unavailable(f"{where}: address already in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return Unavailable(f"{where}: address not available (it is not an address of this host)")
    return Unavailable(f"{where}: {exc.strerror or exc}")


def bind_listener(listener: Listener, backlog: int | None = None) -> socket.socket:
    """Bind and listen on ``listener``; return the non-blocking listening socket.

    ``"0.0.0.0"`` (or an empty host) binds every IPv4 address; ``"::"`` every
    IPv6 address with IPV6_V6ONLY set, so that the classic pair ``:25`` and
    ``:::25`` can both be bound (ipv6(7)); a host name binds its first
    address. ``backlog`` defaults to ``default_backlog()``.

    Raises ``PermissionDenied`` (EACCES/EPERM), ``Unavailable`` (address in
    use, not available, unresolvable) or ``ConfigError`` (port out of range).
    The socket is close-on-exec: the supervisor passes it to workers explicitly.
    A ``unix:`` listener binds its socket file (server/unixsock.py).
    """
    if listener.path is not None:
        return bind_unix(listener, default_backlog() if backlog is None else backlog)
    if not 0 <= listener.port <= 65535:
        # getaddrinfo() would silently bind the port modulo 65536.
        raise ConfigError(f"cannot bind {listener}: port must be between 0 and 65535")
    host = _bind_host(listener)
    try:
        infos = socket.getaddrinfo(
            host,
            listener.port,
            family=socket.AF_UNSPEC,
            type=socket.SOCK_STREAM,
            proto=socket.IPPROTO_TCP,
            flags=socket.AI_PASSIVE,
        )
    except socket.gaierror as exc:
        raise Unavailable(
            f"cannot bind {listener}: cannot resolve {host!r}: {exc.strerror or exc}"
        ) from None
    except UnicodeError as exc:
        # A host name IDNA cannot encode (a label over 63 octets...).
        raise Unavailable(f"cannot bind {listener}: {exc}") from None
    if not infos:
        raise Unavailable(f"cannot bind {listener}: {host!r} has no address")
    family, type_, proto, _canonname, sockaddr = infos[0]

    sock = socket.socket(family, type_, proto)
    try:
        # Restarting must not wait for old connections in TIME_WAIT
        # (RFC 9293 section 3.6.1); Linux still refuses a second live listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Without V6ONLY, "::" also takes the IPv4 port on Linux (per
            # net.ipv6.bindv6only) and a separate ":25" listener fails with
            # EADDRINUSE.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(default_backlog() if backlog is None else backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _bind_error(listener, exc) from None
    except BaseException:
        sock.close()
        raise
    return sock


def bind_all(listeners: Iterable[Listener]) -> list[tuple[Listener, socket.socket]]:
    """Bind every listener, in order. All or nothing: on the first failure the
    sockets already bound are closed and the error is re-raised."""
    bound: list[tuple[Listener, socket.socket]] = []
    try:
        for listener in listeners:
            bound.append((listener, bind_listener(listener)))
    except BaseException:
        for listener, sock in bound:
            release(listener)
            sock.close()
        raise
    return bound


def describe(listener: Listener, sock: socket.socket) -> str:
    """``smtp://127.0.0.1:2525`` / ``smtps://[::1]:4650`` with the real bound
    address and port (port 0 in the config means "any free port")."""
    if listener.path is not None:
        return str(listener)
    address = sock.getsockname()
    return f"{listener.scheme}://{host_port(str(address[0]), int(address[1]))}"
