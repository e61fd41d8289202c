"""Helpers for the TLS, AUTH and extension end-to-end tests.

``Smtp`` is the shared raw SMTP client (``tests.smtpclient``) that can also
upgrade itself in place with STARTTLS, so a test sees exactly the bytes the server sent, in TLS
or not. ``tool`` runs the real command-line clients (swaks, curl, openssl,
testssl) with a bound on their run time. ``rsa_cert`` and ``dhparams`` make
the key material the DHE tests need, in the test run.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import struct
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests import e2e
from tests.certs import self_signed
from tests.e2e import PLAIN_AND_SMTPS, tls_config
from tests.serverproc import ServerProcess
from tests.smtpclient import HOST, Client, insecure_context


class Smtp(Client):
    """``Client`` that can also upgrade itself in place with STARTTLS."""

    # A TLS connection can end with an SSL error (no close_notify) instead of EOF.
    _CLOSED_ERRORS = (ConnectionResetError, BrokenPipeError, ssl.SSLError)

    def recv_once(self) -> bytes:
        """Exactly one recv(): what the server had written by then (maybe in one write)."""
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        return self.sock.recv(65536)

    def ehlo(self, name: str = "client.test") -> list[str]:
        """EHLO; the extension keywords offered (upper case, first word of each line)."""
        reply = self.expect(f"EHLO {name}", 250)
        return [line.split()[0].upper() for line in reply.lines[1:]]

    def ehlo_lines(self, name: str = "client.test") -> list[str]:
        return self.expect(f"EHLO {name}", 250).lines[1:]

    def starttls(self) -> None:
        """STARTTLS, then the handshake on the same socket (RFC 3207 section 4)."""
        self.expect("STARTTLS", 220, "2.0.0")
        assert self.buf == b"", f"plaintext after the 220 to STARTTLS: {self.buf!r}"
        self.upgrade()

    def upgrade(self) -> None:
        self.sock = insecure_context().wrap_socket(self.sock, server_hostname="localhost")
        self.sock.settimeout(self.timeout)


# struct tcp_info (linux/tcp.h): tcpi_data_segs_in, the data segments received,
# is the u32 at offset 152 (Linux 4.6 and later).
_TCPI_DATA_SEGS_IN = 152


def data_segments_in(sock: socket.socket) -> int:
    """How many TCP segments carrying data this socket has received so far.

    On loopback one write() of a few KB arrives as one segment, so the count
    shows how many writes the server split its replies into.
    """
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    assert len(info) >= _TCPI_DATA_SEGS_IN + 4, "kernel too old for tcpi_data_segs_in"
    return int(struct.unpack_from("I", info, _TCPI_DATA_SEGS_IN)[0])


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def tool(
    argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a real client; stdout and stderr together, as text."""
    proc = subprocess.run(
        list(argv),
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), None
    )


def swaks(port: int, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """swaks to 127.0.0.1:port with a test envelope; ``args`` add --tls, --auth..."""
    return tool(
        [
            "swaks",
            "--server",
            HOST,
            "--port",
            str(port),
            "--from",
            "sender@example.com",
            "--to",
            "rcpt@example.com",
            "--helo",
            "client.test",
            "--timeout",
            "10",
            *args,
        ],
        timeout=timeout,
    )


# swaks marks server lines "<-" (plain), "<~" (TLS), "<**" / "<~*" (error replies).
_SWAKS_SERVER_LINE = re.compile(r"<[-~*]{1,2}\s+(.*)")


def server_replies(swaks_output: str) -> list[str]:
    """The server's reply lines in swaks' transcript, in order."""
    lines = (_SWAKS_SERVER_LINE.fullmatch(line) for line in swaks_output.splitlines())
    return [m.group(1) for m in lines if m is not None]


def rsa_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate for localhost (DHE suites need an RSA key)."""
    return self_signed(directory, rsa_key=True, prefix="rsa-")


def dhparams(directory: Path) -> Path:
    """The RFC 7919 ffdhe2048 group as a PEM 'DH PARAMETERS' file (no prime search)."""
    path = directory / "dhparams.pem"
    result = tool(
        [
            "openssl",
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            "group:ffdhe2048",
            "-out",
            str(path),
        ]
    )
    assert result.returncode == 0, result.stdout
    assert b"BEGIN DH PARAMETERS" in path.read_bytes()
    return path


Factory = Callable[..., ServerProcess]
WriteConfig = Callable[[str], Path]


def start(
    server_factory: Factory,
    write_config: WriteConfig,
    cert_pair: tuple[Path, Path] | None,
    extra: str = "",
    *args: str,
    listen: str = PLAIN_AND_SMTPS,
) -> ServerProcess:
    """A server with one plain (STARTTLS) and one SMTPS listener, plus ``extra`` config."""
    return server_factory(write_config(tls_config(cert_pair, extra, listen)), *args)


@contextmanager
def running(
    directory: Path, cert_pair: tuple[Path, Path] | None, extra: str = "", *args: str
) -> Iterator[ServerProcess]:
    """``tests.e2e.running`` with ``start``'s listeners, and the host's name as mail name."""
    with e2e.running(directory, tls_config(cert_pair, extra), *args, mailname=False) as server:
        yield server
