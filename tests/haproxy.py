"""A private HAProxy in TCP mode in front of a server, for the PROXY protocol tests.

Each frontend listens on a socket this process bound on an ephemeral
loopback port and hands to HAProxy (``bind fd@N``): no port race, and no
wait for readiness, since the kernel queues connections on the listening
socket until HAProxy accepts them. HAProxy runs in the foreground (``-db``)
as a child and is killed by its pid at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

# Debian puts it in /usr/sbin, which a non-root PATH may lack
# (scripts/install-test-deps installs it).
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@dataclass
class Frontend:
    """A frontend passing TCP through to ``target`` with a PROXY header."""

    name: str
    target: int  # the server's port on 127.0.0.1
    send_proxy: str  # "send-proxy" (v1) or "send-proxy-v2"


@dataclass
class HAProxy:
    proc: subprocess.Popen[str]
    ports: dict[str, int]  # frontend name -> the port clients connect to


@contextmanager
def haproxy(directory: Path, frontends: list[Frontend]) -> Iterator[HAProxy]:
    with ExitStack() as stack:
        sockets: dict[str, socket.socket] = {}
        for frontend in frontends:
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            sockets[frontend.name] = listener
        config = directory / "haproxy.cfg"
        config.write_text(_config(frontends, sockets))
        proc = subprocess.Popen(
            [HAPROXY, "-f", str(config), "-db"],
            pass_fds=[s.fileno() for s in sockets.values()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield HAProxy(proc, {name: s.getsockname()[1] for name, s in sockets.items()})
        finally:
            proc.kill()
            proc.communicate(timeout=10)


def _config(frontends: list[Frontend], sockets: dict[str, socket.socket]) -> str:
    text = (
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 5s\n"
        "    timeout client 30s\n"
        "    timeout server 30s\n"
    )
    for frontend in frontends:
        # TCP mode passes SMTPS through untouched: the TLS session is the
        # client's with the server, and the header goes first on the wire.
        text += (
            f"frontend {frontend.name}\n"
            f"    bind fd@{sockets[frontend.name].fileno()}\n"
            f"    default_backend {frontend.name}\n"
            f"backend {frontend.name}\n"
            f"    server blackhole 127.0.0.1:{frontend.target} {frontend.send_proxy}\n"
        )
    return text
