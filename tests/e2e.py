"""Helpers for the end-to-end tests: a raw SMTP client and process probes.

The raw client speaks bytes on a real socket, so a test can send what no
well-behaved library would (bare LFs, NUL bytes, 100 KB lines, half a
command) and read the server's replies exactly as they went out.

The process probes read /proc for the server and every process under it (a
supervisor with workers is one tree), so that "memory stays flat" and "no CPU
spin" are checked on whatever process actually serves the connection.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.serverproc import ServerProcess, start_server

_counter = itertools.count()

# RFC 5321 section 4.2: "code-text" on every line but the last, "code text".
_REPLY_LINE = re.compile(rb"^([2-5][0-9]{2})([ -])(.*)\r\n", re.S)


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class Client:
    """A line-level SMTP client over a raw socket (plain or TLS)."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    @classmethod
    def connect(
        cls,
        port: int,
        host: str = "127.0.0.1",
        *,
        tls: bool = False,
        timeout: float = 10.0,
        greet: bool = True,
    ) -> Client:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            sock = insecure_context().wrap_socket(sock, server_hostname="localhost")
        client = cls(sock, timeout)
        if greet:
            reply = client.reply()
            assert reply.code == 220, reply
        return client

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def line(self) -> bytes:
        """One raw reply line, CRLF included; AssertionError if the server closed."""
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"connection closed; unread: {self.buf!r}")
        end = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def reply(self) -> Reply:
        lines: list[str] = []
        while True:
            raw = self.line()
            m = _REPLY_LINE.match(raw)
            assert m is not None, f"malformed reply line: {raw!r}"
            lines.append(m.group(3).decode("utf-8"))
            if m.group(2) == b" ":
                return Reply(int(m.group(1)), lines)

    def cmd(self, line: str | bytes) -> Reply:
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.reply()

    def expect(self, line: str | bytes, code: int) -> Reply:
        reply = self.cmd(line)
        assert reply.code == code, f"{line!r} -> {reply}"
        return reply

    def transaction(self, body: bytes = b"Subject: t\r\n\r\nhello\r\n") -> Reply:
        """MAIL, RCPT, DATA and a body (already CRLF-terminated): the final reply."""
        self.expect("MAIL FROM:<a@example.com>", 250)
        self.expect("RCPT TO:<b@example.com>", 250)
        self.expect("DATA", 354)
        self.send(body + b".\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def insecure_context() -> ssl.SSLContext:
    """Client side: the test's self-signed certificate is not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


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
