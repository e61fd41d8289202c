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
from typing import Any

import pytest

from tests.proctools import tree
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
def running(
    directory: Path, text: str, *args: str, mailname: bool = True
) -> Iterator[ServerProcess]:
    """``start`` for fixtures wider than one test (server_factory is per test).

    ``mailname=False`` leaves the mail name to the server (the host's name).
    """
    if mailname:
        text = _with_mailname(text)
    server = start_server(config_file(directory, text), *args)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


PLAIN_AND_SMTPS = "listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\n"


def tls_config(
    cert_pair: tuple[Path, Path] | None, extra: str = "", listen: str = PLAIN_AND_SMTPS
) -> str:
    """A plain (STARTTLS) and an SMTPS listener with ``cert_pair``, then ``extra``."""
    text = listen + ("" if "timeout" in extra else "timeout = 20\n")
    if cert_pair is not None:
        text += f"tls_cert = {cert_pair[0]}\ntls_key = {cert_pair[1]}\n"
    return text + extra


def shared_server(text: str = "", *args: str, tls: bool = False) -> Any:
    """A module-scoped fixture: one server for all of a module's tests.

    Assign it to the fixture's name (``server = shared_server(...)``). With
    ``tls``, ``text`` comes after a plain and an SMTPS listener using the
    session's certificate (``tls_config``). Tests that need their own
    configuration start their own server with ``server_factory``.
    """

    @pytest.fixture(scope="module")
    def fixture(
        tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
    ) -> Iterator[ServerProcess]:
        config = tls_config(request.getfixturevalue("cert_pair"), text) if tls else text
        with running(tmp_path_factory.mktemp("server"), config, *args) as server:
            yield server

    return fixture


def assert_clean_log(server: ServerProcess) -> None:
    text = server.text()
    assert "Traceback" not in text, text
    assert "internal error" not in text.lower(), text


# --- /proc probes ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the server and its children (proc(5) fields 14 and 15)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
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
    for p in tree(pid):
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
