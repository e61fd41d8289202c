"""Helpers for the TLS, AUTH and extension end-to-end tests.

``Smtp`` is a raw SMTP client on a real socket that can upgrade itself in
place with STARTTLS, so a test sees exactly the bytes the server sent, in TLS
or not. ``tool`` runs the real command-line clients (swaks, curl, openssl,
testssl) with a bound on their run time. ``rsa_cert`` and ``dhparams`` make
the key material the DHE tests need, in the test run.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import re
import socket
import ssl
import struct
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.serverproc import ServerProcess, start_server

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
    """A client context that accepts the test's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Smtp:
    """A line-level SMTP client over a raw socket; TLS from the start or by STARTTLS."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock: socket.socket = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout

    @classmethod
    def connect(cls, port: int, *, tls: bool = False, timeout: float = 10.0) -> Smtp:
        sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls:
            sock = insecure_context().wrap_socket(sock, server_hostname="localhost")
        client = cls(sock, timeout)
        greeting = client.reply()
        assert greeting.code == 220, greeting
        return client

    # --- bytes ------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def recv_once(self) -> bytes:
        """Exactly one recv(): what the server had written by then (maybe in one write)."""
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        return self.sock.recv(65536)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def line(self) -> bytes:
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

    def mail_rcpt(self, sender: str = "a@example.com", rcpt: str = "b@example.com") -> None:
        self.expect(f"MAIL FROM:<{sender}>", 250)
        self.expect(f"RCPT TO:<{rcpt}>", 250)

    def data(self, body: bytes = b"Subject: t\r\n\r\nhello\r\n") -> Reply:
        """DATA and a CRLF-terminated body: the final reply."""
        self.expect("DATA", 354)
        self.send(body + b".\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (EOF, reset, TLS EOF)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Smtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "rsa-cert.pem"
    key_path = directory / "rsa-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


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
    listen: str = "listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\n",
) -> ServerProcess:
    """A server with one plain (STARTTLS) and one SMTPS listener, plus ``extra`` config."""
    text = listen + ("" if "timeout" in extra else "timeout = 20\n")
    if cert_pair is not None:
        text += f"tls_cert = {cert_pair[0]}\ntls_key = {cert_pair[1]}\n"
    return server_factory(write_config(text + extra), *args)


@contextmanager
def running(
    directory: Path, cert_pair: tuple[Path, Path] | None, extra: str = "", *args: str
) -> Iterator[ServerProcess]:
    """Like ``start`` for a longer-lived (module-scoped) server, stopped on exit."""
    text = "listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\ntimeout = 20\n"
    if cert_pair is not None:
        text += f"tls_cert = {cert_pair[0]}\ntls_key = {cert_pair[1]}\n"
    config = directory / "blackhole.conf"
    config.write_text(text + extra)
    server = start_server(config, *args)
    try:
        yield server
    finally:
        server.stop()
