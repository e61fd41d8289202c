"""TLS session resumption (RFC 8446 section 2.2, RFC 5077): tickets issued and accepted.

A client that offers the ticket of its previous session resumes it, on the
SMTPS port (RFC 8314) and after STARTTLS (RFC 3207), with TLS 1.2 and 1.3.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@pytest.fixture
def one_worker(
    server_factory: Callable[..., ServerProcess],
    write_config: Callable[[str], Path],
    cert_pair: tuple[Path, Path],
) -> ServerProcess:
    """One worker: a ticket is only good at the worker that issued it."""
    cert, key = cert_pair
    config = write_config(
        "listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\n"
        f"tls_cert = {cert}\ntls_key = {key}\ntimeout = 30\nworkers = 1\n"
    )
    return server_factory(config)


def client_context(version: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    return ctx


def last_line(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and lines[-2][3:4] == b" ":
            return lines[-2]


def session(
    server: ServerProcess, mode: str, ctx: ssl.SSLContext, offer: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool]:
    """One SMTP session over TLS; its TLS session and whether it resumed ``offer``."""
    port = server.port("smtps") if mode == "smtps" else server.port("smtp")
    raw = socket.create_connection(("127.0.0.1", port), 10)
    sock: socket.socket = raw
    try:
        if mode == "smtps":
            sock = ctx.wrap_socket(raw, session=offer)
        assert last_line(sock).startswith(b"220")
        sock.sendall(b"EHLO client.example\r\n")
        assert last_line(sock).startswith(b"250")
        if mode == "starttls":
            sock.sendall(b"STARTTLS\r\n")
            assert last_line(sock).startswith(b"220")
            sock = ctx.wrap_socket(raw, session=offer)
            sock.sendall(b"EHLO client.example\r\n")
            assert last_line(sock).startswith(b"250")
        sock.sendall(b"QUIT\r\n")
        assert last_line(sock).startswith(b"221")
        assert isinstance(sock, ssl.SSLSocket)
        return sock.session, bool(sock.session_reused)
    finally:
        sock.close()


@pytest.mark.parametrize("mode", ["smtps", "starttls"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_client_resumes_its_previous_session(
    one_worker: ServerProcess, mode: str, version: str
) -> None:
    ctx = client_context(version)
    first, resumed = session(one_worker, mode, ctx, None)
    assert first is not None and not resumed
    assert first.has_ticket, "the server issued no session ticket"
    second, resumed = session(one_worker, mode, ctx, first)
    assert resumed, "the ticket of the previous session was not accepted"
    _third, resumed = session(one_worker, mode, ctx, second)
    assert resumed, "the ticket issued on a resumed session was not accepted"


def test_tls13_handshake_issues_one_ticket(one_worker: ServerProcess) -> None:
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{one_worker.port('smtps')}"]
    argv += ["-tls1_3", "-msg", "-ign_eof"]
    proc = subprocess.run(argv, input=b"QUIT\r\n", capture_output=True, timeout=20, check=False)
    out = proc.stdout.decode(errors="replace")
    assert "221" in out, out[-500:]
    tickets = re.findall(r"<<< TLS 1.3, Handshake \[length [0-9a-f]+\], NewSessionTicket", out)
    assert len(tickets) == 1, out[-2000:]


def test_a_reload_makes_new_ticket_keys(one_worker: ServerProcess) -> None:
    # docs/tls-and-auth.md: a reload loads the certificates again, with new
    # keys; a ticket issued before it gets a full handshake.
    ctx = client_context("1.3")
    first, _ = session(one_worker, "smtps", ctx, None)
    assert first is not None and first.has_ticket
    one_worker.proc.send_signal(signal.SIGHUP)
    one_worker.wait_for(r"configuration reloaded")
    _second, resumed = session(one_worker, "smtps", ctx, first)
    assert not resumed
