"""Helpers for the end-to-end tests: server start-up and process probes.

The raw SMTP client the tests use with these is ``tests.smtpclient.Client``.

The process probes read /proc for the server and every process under it (a
supervisor with workers is one tree), so that "memory stays flat" and "no CPU
spin" are checked on whatever process actually serves the connection.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.serverproc import ServerProcess, start_server
from tests.smtpclient import Reply

_counter = itertools.count()


def queue_id(reply: Reply) -> str:
    m = re.fullmatch(r"2\.0\.0 OK: queued as (\S+)", reply.text)
    assert reply.code == 250 and m is not None, reply
    return m.group(1)


# --- starting servers -----------------------------------------------------------


def config_file(directory: Path, text: str) -> Path:
    """A config file of its own (tests that run two servers need two)."""
    path = directory / f"blackhole-{next(_counter)}.conf"
    path.write_text(text)
    return path


Factory = Callable[..., ServerProcess]


def _with_mailname(text: str) -> str:
    return text if "mailname" in text else "mailname = mx.test\n" + text


def start(factory: Factory, directory: Path, text: str, *args: str) -> ServerProcess:
    """A server for ``text`` (with ``mailname = mx.test`` unless it sets one)."""
    return factory(config_file(directory, _with_mailname(text)), *args)


@contextmanager
def running(directory: Path, text: str, *args: str) -> Iterator[ServerProcess]:
    """``start`` for fixtures wider than one test (server_factory is per test)."""
    server = start_server(config_file(directory, _with_mailname(text)), *args)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


def assert_clean_log(server: ServerProcess) -> None:
    text = server.text()
    assert "Traceback" not in text, text
    assert "internal error" not in text.lower(), text


# --- /proc probes ------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and every live process under it."""
    pids = [pid]
    children = {pid}
    for _ in range(8):  # bounded depth: supervisor -> workers is two levels
        found: set[int] = set()
        for parent in children:
            for task in Path(f"/proc/{parent}/task").glob("*/children"):
                try:
                    found |= {int(p) for p in task.read_text().split()}
                except OSError:
                    continue
        if not found:
            break
        pids += sorted(found)
        children = found
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of the server and its children (proc(5) fields 14 and 15)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def rss_kib(pid: int) -> int:
    """Resident memory of the server and its children, in KiB (VmRSS)."""
    total = 0
    for p in _tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if m:
            total += int(m.group(1))
    return total


def assert_no_spin(pid: int, window: float = 1.0, limit: float = 0.3) -> None:
    """The server burns (almost) no CPU while nothing happens.

    A correctness check, not a benchmark: a busy loop uses the whole window
    (1.0 s of CPU per second), an idle server a few milliseconds.
    """
    before = cpu_seconds(pid)
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        time.sleep(0.05)
    used = cpu_seconds(pid) - before
    assert used < limit, f"server used {used:.2f}s of CPU in a {window}s idle window"


@contextmanager
def connections(port: int, count: int, host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection((host, port), timeout=10))
        yield socks
    finally:
        for sock in socks:
            sock.close()
