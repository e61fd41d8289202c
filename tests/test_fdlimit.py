"""The open files limit: the server raises its soft limit to the hard one.

A soft limit of 1,024 (systemd's default for services) would cap a worker at
about a thousand sessions however high the hard limit is.
"""

from __future__ import annotations

import resource
import socket
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from blackhole.supervisor import fdlimit
from tests.proctools import wait_until, workers
from tests.serverproc import ServerProcess

SOFT, HARD = 256, 2048
SESSIONS = 400  # more than SOFT: each holds a descriptor in the worker


def open_files_soft(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open files limit for {pid}")


def test_server_takes_its_hard_limit_and_holds_more_sessions_than_the_soft_one(
    server_factory: Callable[..., ServerProcess], write_config: Callable[[str], Path]
) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < SESSIONS + 100:
        pytest.skip("this test process may not open enough sockets")
    config = write_config("listen = 127.0.0.1:0\ntimeout = 60\nworkers = 1\n")
    server = server_factory(config, open_files=(SOFT, HARD))
    wait_until(lambda: len(workers(server.pid)) == 1, 10)
    worker = workers(server.pid)[1]
    assert open_files_soft(server.pid) == HARD
    assert open_files_soft(worker) == HARD
    with ExitStack() as stack:
        for n in range(SESSIONS):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port()), 10))
            sock.settimeout(10)
            greeting = sock.recv(512)
            assert greeting.startswith(b"220"), f"session {n + 1}: {greeting!r}"


def test_a_refused_raise_keeps_the_soft_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda which: (min(soft, 64), hard))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert fdlimit.raise_open_files_limit() == min(soft, 64)


def test_an_unlimited_hard_limit_means_the_kernels_ceiling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nr_open = tmp_path / "nr_open"
    nr_open.write_text("65536\n")
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(fdlimit, "_NR_OPEN", nr_open)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, resource.RLIM_INFINITY))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: asked.append(limits))
    assert fdlimit.raise_open_files_limit() == 65536
    assert asked == [(65536, resource.RLIM_INFINITY)]
