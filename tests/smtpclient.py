"""The raw SMTP client every end-to-end test module shares.

It speaks bytes on a real socket, so a test can send what no well-behaved
library would (bare LFs, NUL bytes, 100 KB lines, half a command) and read the
server's replies exactly as they went out. ``tests.tlsclients.Smtp`` extends it
with STARTTLS.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from typing import Self

HOST = "127.0.0.1"
# RFC 5321 section 4.2: "code-text" on every line but the last, "code text".
_REPLY_LINE = re.compile(rb"([2-5][0-9]{2})([ -])(.*)\r\n", re.S)
# RFC 3463 section 2: class.subject.detail.
ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |$)")


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The RFC 2034 enhanced status code at the start of the text, if any."""
        m = ENHANCED.match(self.lines[-1])
        return m.group(0).strip() if m else None

    def __str__(self) -> str:
        return "\n".join(f"{self.code} {line}" for line in self.lines)


def insecure_context() -> ssl.SSLContext:
    """Client side: the test's self-signed certificate is not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Client:
    """A line-level SMTP client over a raw socket (plain or TLS from the start)."""

    # What ``closed`` counts as the server having closed the connection.
    _CLOSED_ERRORS: tuple[type[Exception], ...] = (ConnectionResetError, BrokenPipeError)

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock: socket.socket = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout

    @classmethod
    def connect(
        cls,
        port: int,
        host: str = HOST,
        *,
        tls: bool = False,
        timeout: float = 10.0,
        greet: bool = True,
    ) -> Self:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            sock = insecure_context().wrap_socket(sock, server_hostname="localhost")
        client = cls(sock, timeout)
        if greet:
            reply = client.reply()
            assert reply.code == 220, reply
        return client

    # --- bytes ------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

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
                raise AssertionError(f"connection closed by the server; unread: {self.buf!r}")
        end = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def reply(self) -> Reply:
        lines: list[str] = []
        while True:
            raw = self.line()
            m = _REPLY_LINE.fullmatch(raw)
            assert m is not None, f"malformed reply line: {raw!r}"
            lines.append(m.group(3).decode("utf-8"))
            if m.group(2) == b" ":
                return Reply(int(m.group(1)), lines)

    def replies(self, n: int) -> list[Reply]:
        return [self.reply() for _ in range(n)]

    # --- commands ---------------------------------------------------------------

    def cmd(self, line: str | bytes) -> Reply:
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.reply()

    def expect(self, line: str | bytes, code: int, enhanced: str | None = None) -> Reply:
        reply = self.cmd(line)
        assert reply.code == code, f"{line!r} -> {reply}"
        if enhanced is not None:
            assert reply.enhanced == enhanced, f"{line!r} -> {reply}"
        return reply

    def mail_rcpt(self, sender: str = "a@example.com", rcpt: str = "b@example.com") -> None:
        self.expect(f"MAIL FROM:<{sender}>", 250)
        self.expect(f"RCPT TO:<{rcpt}>", 250)

    def into_data(self) -> None:
        """EHLO, MAIL, RCPT and DATA: the server now reads a message's content."""
        self.expect("EHLO client.test", 250)
        self.mail_rcpt()
        self.expect("DATA", 354)

    def data(self, body: bytes = b"Subject: t\r\n\r\nhello\r\n") -> Reply:
        """DATA and a CRLF-terminated body: the final reply."""
        self.expect("DATA", 354)
        self.send(body + b".\r\n")
        return self.reply()

    def transaction(self, body: bytes = b"Subject: t\r\n\r\nhello\r\n") -> Reply:
        """MAIL, RCPT, DATA and a body (already CRLF-terminated): the final reply."""
        self.mail_rcpt()
        return self.data(body)

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except self._CLOSED_ERRORS:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
