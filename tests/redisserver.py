"""A private redis-server for the tests: a child process on a free port, no persistence.

Started from Debian's ``redis-server`` package (scripts/install-test-deps)
with ``--save ''`` and ``--appendonly no``, so nothing is written to disk and
a restart starts empty, as a Redis without persistence does. ``stop`` kills
it by pid and ``start`` brings it back on the same port: the tests use that to
take Redis away in the middle of a run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proctools import wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    """Whether Redis on ``port`` answers PING (RESP: ``+PONG``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server through its UNIX socket, database 1."""
        return f"unix://{self.directory / 'redis.sock'}?db=1"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
                str(self.directory / "redis.sock"),
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        process = self.process
        wait_until(
            lambda: _answers(self.port) or process.poll() is not None,
            what="redis-server to answer",
        )
        if process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")
            raise AssertionError(f"redis-server exited {process.returncode}: {log[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def command(self, *words: str) -> bytes:
        """One command in RESP, the raw reply (enough for the tests' checks)."""
        parts = [f"*{len(words)}\r\n".encode()]
        for word in words:
            data = word.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as conn:
            conn.sendall(b"".join(parts))
            return conn.recv(65536)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.fail("redis-server is not installed: run scripts/install-test-deps")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError):
            server.stop()
