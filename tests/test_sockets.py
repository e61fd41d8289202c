"""Binding listeners: real sockets on loopback, ephemeral ports."""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from blackhole.config.model import Listener
from blackhole.errors import ConfigError, PermissionDenied, Unavailable
from blackhole.server.sockets import (
    MIN_BACKLOG,
    _bind_error,
    bind_all,
    bind_listener,
    default_backlog,
    describe,
)

IO_TIMEOUT = 10.0
NOBODY = 65534


@pytest.fixture
def closing() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def bound(stack: ExitStack, listener: Listener, backlog: int | None = None) -> socket.socket:
    return stack.enter_context(bind_listener(listener, backlog))


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def accept_queue(sock: socket.socket) -> tuple[int, int]:
    """(connections waiting in the accept queue, its maximum) for a Linux listener.

    tcp(7) TCP_INFO on a listening socket reports the queue length in
    tcpi_unacked and the effective backlog in tcpi_sacked (offsets 24 and 28
    of struct tcp_info).
    """
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    waiting, maximum = struct.unpack_from("=II", info, 24)
    return waiting, maximum


# --------------------------------------------------------------------------
# binding
# --------------------------------------------------------------------------


def test_ipv4_loopback_ephemeral_port(closing: ExitStack) -> None:
    listener = Listener("127.0.0.1", 0)
    sock = bound(closing, listener)
    port = sock.getsockname()[1]
    assert port != 0
    assert describe(listener, sock) == f"smtp://127.0.0.1:{port}"
    assert sock.family == socket.AF_INET
    assert not sock.getblocking()
    assert not sock.get_inheritable()
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT):
        readable, _, _ = select.select([sock], [], [], IO_TIMEOUT)
        assert readable
        conn, _ = sock.accept()
        conn.close()


def test_ipv6_loopback_ephemeral_port(closing: ExitStack) -> None:
    listener = Listener("::1", 0, tls=True)
    sock = bound(closing, listener)
    port = sock.getsockname()[1]
    assert port != 0
    assert describe(listener, sock) == f"smtps://[::1]:{port}"
    assert sock.family == socket.AF_INET6
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    with socket.create_connection(("::1", port), timeout=IO_TIMEOUT):
        pass


def test_bracketed_ipv6_literal(closing: ExitStack) -> None:
    sock = bound(closing, Listener("[::1]", 0))
    assert sock.getsockname()[0] == "::1"


def test_ipv4_and_ipv6_wildcards_share_a_port(closing: ExitStack) -> None:
    # The classic "listen = :25, :::25".
    v4 = bound(closing, Listener("0.0.0.0", 0))
    port = v4.getsockname()[1]
    v6 = bound(closing, Listener("::", port))
    assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    assert describe(Listener("0.0.0.0", 0), v4) == f"smtp://0.0.0.0:{port}"
    assert describe(Listener("::", port), v6) == f"smtp://[::]:{port}"
    # Each family reaches its own socket.
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT):
        assert select.select([v4], [], [], IO_TIMEOUT)[0] == [v4]
    with socket.create_connection(("::1", port), timeout=IO_TIMEOUT):
        assert select.select([v6], [], [], IO_TIMEOUT)[0] == [v6]


def test_empty_host_means_all_ipv4(closing: ExitStack) -> None:
    sock = bound(closing, Listener("", 0))
    assert sock.getsockname()[0] == "0.0.0.0"


def test_hostname_binds_its_first_address(closing: ExitStack) -> None:
    sock = bound(closing, Listener("localhost", 0))
    assert sock.family in (socket.AF_INET, socket.AF_INET6)
    assert sock.getsockname()[0] in ("127.0.0.1", "::1")


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_address_in_use_is_unavailable(closing: ExitStack) -> None:
    first = bound(closing, Listener("127.0.0.1", 0))
    port = first.getsockname()[1]
    busy = Listener("127.0.0.1", port)
    before = open_fds()
    with pytest.raises(Unavailable) as info:
        bind_listener(busy)
    assert info.value.exit_code == 69
    assert str(info.value) == f"cannot bind smtp://127.0.0.1:{port}: address already in use"
    assert open_fds() == before  # the failed socket was closed


def test_ipv6_wildcard_on_a_port_taken_by_ipv6_loopback(closing: ExitStack) -> None:
    taken = bound(closing, Listener("::1", 0))
    with pytest.raises(Unavailable, match="already in use"):
        bind_listener(Listener("::", taken.getsockname()[1]))


def test_address_not_available() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this host.
    with pytest.raises(Unavailable, match="address not available") as info:
        bind_listener(Listener("192.0.2.1", 0))
    assert info.value.exit_code == 69
    assert "smtp://192.0.2.1:0" in str(info.value)


def test_unresolvable_host() -> None:
    # RFC 6761 section 6.4: ".invalid" never resolves.
    with pytest.raises(Unavailable, match=r"cannot resolve 'no-such-host\.invalid'") as info:
        bind_listener(Listener("no-such-host.invalid", 25))
    assert info.value.exit_code == 69


def test_host_name_idna_cannot_encode() -> None:
    # A DNS label is at most 63 octets (RFC 1035 section 2.3.4).
    with pytest.raises(Unavailable, match="cannot bind"):
        bind_listener(Listener("a" * 70 + ".example", 25))


def test_port_out_of_range() -> None:
    # getaddrinfo() would silently take 70000 modulo 65536.
    with pytest.raises(ConfigError, match="70000"):
        bind_listener(Listener("127.0.0.1", 70000))


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_permission_errors_map_to_permission_denied(code: int) -> None:
    error = _bind_error(Listener("127.0.0.1", 25), OSError(code, os.strerror(code)))
    assert isinstance(error, PermissionDenied)
    assert error.exit_code == 77
    assert str(error) == (
        "cannot bind smtp://127.0.0.1:25: permission denied "
        "(ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    )


def test_other_errors_map_to_unavailable() -> None:
    error = _bind_error(Listener("::", 25), OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS)))
    assert isinstance(error, Unavailable)
    assert str(error) == f"cannot bind smtp://[::]:25: {os.strerror(errno.ENOBUFS)}"


_BIND_PORT_1 = textwrap.dedent(
    """
    import encodings.idna  # getaddrinfo imports it lazily; load it while we can
    import json, os
    from blackhole.config.model import Listener
    from blackhole.errors import BlackholeError
    from blackhole.server.sockets import bind_listener

    if os.geteuid() == 0:
        # Drop to nobody after the imports: the interpreter may live in a
        # directory nobody cannot read. setuid() also clears every capability.
        os.setgroups([])
        os.setgid({uid})
        os.setuid({uid})
    try:
        bind_listener(Listener("127.0.0.1", 1)).close()
    except BlackholeError as exc:
        print(json.dumps([type(exc).__name__, exc.exit_code, str(exc)]))
    else:
        print(json.dumps(None))
    """
).format(uid=NOBODY)


def test_privileged_port_as_unprivileged_user() -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 1:
        pytest.skip(f"net.ipv4.ip_unprivileged_port_start={start}: anyone may bind port 1")
    result = subprocess.run(
        [sys.executable, "-c", _BIND_PORT_1],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == [
        "PermissionDenied",
        77,
        "cannot bind smtp://127.0.0.1:1: permission denied "
        "(ports below 1024 need root or CAP_NET_BIND_SERVICE)",
    ]


# --------------------------------------------------------------------------
# bind_all
# --------------------------------------------------------------------------


def test_bind_all_in_order(closing: ExitStack) -> None:
    listeners = [Listener("127.0.0.1", 0), Listener("::1", 0, tls=True)]
    result = bind_all(listeners)
    for _listener, sock in result:
        closing.enter_context(sock)
    assert [listener for listener, _ in result] == listeners
    assert [sock.family for _, sock in result] == [socket.AF_INET, socket.AF_INET6]


def test_bind_all_closes_what_it_bound_on_failure(closing: ExitStack) -> None:
    taken = bound(closing, Listener("127.0.0.1", 0))
    busy_port = taken.getsockname()[1]
    before = open_fds()
    with pytest.raises(Unavailable, match=f"smtps://127.0.0.1:{busy_port}"):
        bind_all(
            [
                Listener("127.0.0.1", 0),
                Listener("::1", 0),
                Listener("127.0.0.1", busy_port, tls=True),
                Listener("127.0.0.1", 0),
            ]
        )
    assert open_fds() == before


# --------------------------------------------------------------------------
# backlog
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [("4096\n", 4096), ("65535", 65535), ("128\n", MIN_BACKLOG), ("junk", MIN_BACKLOG)],
)
def test_default_backlog_from_somaxconn(tmp_path: Path, content: str, expected: int) -> None:
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text(content)
    assert default_backlog(somaxconn) == expected


def test_default_backlog_without_proc(tmp_path: Path) -> None:
    assert default_backlog(tmp_path / "missing") == MIN_BACKLOG


def test_default_backlog_is_used(closing: ExitStack) -> None:
    sock = bound(closing, Listener("127.0.0.1", 0))
    _, maximum = accept_queue(sock)
    assert maximum == default_backlog() >= MIN_BACKLOG


def test_explicit_backlog(closing: ExitStack) -> None:
    sock = bound(closing, Listener("127.0.0.1", 0), backlog=7)
    assert accept_queue(sock) == (0, 7)


def test_burst_of_500_connects_is_not_dropped(closing: ExitStack) -> None:
    burst = 500
    listener_sock = bound(closing, Listener("127.0.0.1", 0))
    address = listener_sock.getsockname()
    clients: list[socket.socket] = []
    for _ in range(burst):
        client = closing.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        client.setblocking(False)
        assert client.connect_ex(address) in (0, errno.EINPROGRESS)
        clients.append(client)

    # Wait (by poll, not sleep) until every handshake is done. A SYN dropped
    # for a full queue would only be retried after a second or more.
    poller = select.poll()
    for client in clients:
        poller.register(client, select.POLLOUT)
    pending = {client.fileno() for client in clients}
    while pending:
        events = poller.poll(IO_TIMEOUT * 1000)
        assert events, f"{len(pending)} connects still pending"
        for fd, _event in events:
            poller.unregister(fd)
            pending.discard(fd)
    errors = [c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) for c in clients]
    assert errors == [0] * burst

    # All 500 sit in the accept queue at once: nothing overflowed.
    waiting, maximum = accept_queue(listener_sock)
    assert waiting == burst
    assert maximum >= MIN_BACKLOG

    accepted = 0
    while accepted < burst:
        assert select.select([listener_sock], [], [], IO_TIMEOUT)[0]
        conn, _ = listener_sock.accept()
        conn.close()
        accepted += 1
