"""SMTP sessions over TLS, one after another, for a number of seconds: one bench client.

``handshakes.py`` runs several of these in parallel and reads the server's CPU
from /proc; each prints one JSON line: sessions, how many resumed a session,
the first error. ``openssl s_time`` cannot speak STARTTLS, and with TLS 1.3 it
cannot resume either: it never reads after the handshake, so it never sees
the session tickets, which a TLS 1.3 server sends after it (RFC 8446 section
4.6.1). This client reads the greeting, which comes after them.

    python bench/tlsclient.py HOST PORT MODE TLS RESUME SECONDS

MODE: ``smtps`` (TLS first, RFC 8314), ``starttls`` (EHLO, STARTTLS, EHLO
again, RFC 3207) or ``plain`` (EHLO only: what the session costs without
TLS). TLS: ``1.2`` or ``1.3``. RESUME: ``new`` (a full handshake every time)
or ``reuse`` (offer the last session's ticket).
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time

TIMEOUT_S = 10.0
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_context(version: str) -> ssl.SSLContext:
    # The bench's own self-signed certificate: nothing to verify it against.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    return ctx


class Lines:
    """Reply lines from a socket (plain or TLS)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def reply(self) -> bytes:
        """The last line of the next (possibly multi-line) reply."""
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError(f"closed mid-reply ({self.buf[:60]!r})")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            if line[3:4] != b"-":
                return line


def expect(line: bytes, code: bytes) -> None:
    if not line.startswith(code):
        raise ConnectionError(f"expected {code.decode()}, got {line[:60]!r}")


def session(
    host: str, port: int, mode: str, ctx: ssl.SSLContext, last: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool]:
    """One SMTP session: its TLS session (None for plain), and whether it resumed ``last``."""
    raw = socket.create_connection((host, port), TIMEOUT_S)
    # Like any MTA that writes a command right after its own last handshake
    # message (TLS 1.2 resumption ends on the client's Finished): with Nagle
    # the command waited 40 ms for the server's delayed ACK.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock: socket.socket = raw
    try:
        if mode == "smtps":
            sock = ctx.wrap_socket(raw, session=last)
        lines = Lines(sock)
        expect(lines.reply(), b"220")
        sock.sendall(b"EHLO bench.example\r\n")
        expect(lines.reply(), b"250")
        if mode == "starttls":
            sock.sendall(b"STARTTLS\r\n")
            expect(lines.reply(), b"220")
            sock = ctx.wrap_socket(raw, session=last)
            lines = Lines(sock)
            sock.sendall(b"EHLO bench.example\r\n")
            expect(lines.reply(), b"250")
        sock.sendall(b"QUIT\r\n")
        expect(lines.reply(), b"221")
        if isinstance(sock, ssl.SSLSocket):
            return sock.session, bool(sock.session_reused)
        return None, False
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    host, port, mode, version, resume, seconds = argv
    ctx = client_context(version)
    deadline = time.monotonic() + float(seconds)
    count = reused = 0
    last: ssl.SSLSession | None = None
    error = ""
    while time.monotonic() < deadline:
        try:
            last, resumed = session(host, int(port), mode, ctx, last if resume == "reuse" else None)
        except (OSError, ssl.SSLError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            break
        count += 1
        reused += resumed
    print(json.dumps({"sessions": count, "reused": reused, "error": error}))
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
