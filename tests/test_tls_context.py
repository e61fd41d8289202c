"""The TLS server context, proven against real handshakes.

A small threaded TLS echo server on 127.0.0.1 (ephemeral port) uses the
context under test; real clients (Python's ssl, ``openssl s_client``) and
hand-built ClientHello records (for what a modern OpenSSL client refuses to
even offer: TLS 1.0/1.1, 3DES, RC4, export...) talk to it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import queue
import re
import socket
import ssl
import stat
import struct
import subprocess
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from blackhole.config.classic import load_config
from blackhole.config.model import Config, Listener
from blackhole.errors import ConfigError
from blackhole.server.tls import (
    SELF_SIGNED_CERT_NAME,
    SELF_SIGNED_KEY_NAME,
    build_server_context,
    generate_self_signed,
)
from blackhole.supervisor.tlsfiles import TLSStore
from blackhole.supervisor.worker_main import load_tls
from tests.certs import self_signed
from tests.tlsclients import dhparams as write_dhparams

OPENSSL = "/usr/bin/openssl"
IO_TIMEOUT = 10.0  # a safety net against hangs, never a wait for something to happen


# --------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    cert, key = generate_self_signed("mail.example.test", tmp_path_factory.mktemp("pki"))
    return Pair(cert, key)


@pytest.fixture(scope="module")
def server_ctx(pair: Pair) -> ssl.SSLContext:
    return build_server_context(str(pair.cert), str(pair.key))


@dataclass(frozen=True)
class Outcome:
    """What the server saw of one connection."""

    ok: bool
    version: str | None = None
    cipher: str | None = None
    compression: str | None = None
    error: BaseException | None = None


class EchoServer:
    """A threaded TLS echo server, one connection at a time."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.outcomes: queue.Queue[Outcome] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> EchoServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        # Wake the blocked accept() with one last connection.
        with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT):
            pass
        self._thread.join(IO_TIMEOUT)
        self.sock.close()

    def next_outcome(self) -> Outcome:
        return self.outcomes.get(timeout=IO_TIMEOUT)

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            if self._stopping.is_set():
                conn.close()
                return
            with conn:
                conn.settimeout(IO_TIMEOUT)
                try:
                    tls = self.ctx.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.outcomes.put(Outcome(ok=False, error=exc))
                    continue
                with tls:
                    cipher = tls.cipher()
                    self.outcomes.put(
                        Outcome(
                            ok=True,
                            version=tls.version(),
                            cipher=cipher[0] if cipher else None,
                            compression=tls.compression(),
                        )
                    )
                    try:
                        while data := tls.recv(4096):
                            tls.sendall(data)
                    except (ssl.SSLError, OSError):
                        pass


@pytest.fixture
def server(server_ctx: ssl.SSLContext) -> Iterator[EchoServer]:
    with EchoServer(server_ctx) as srv:
        yield srv


def verifying_client(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def lax_client() -> ssl.SSLContext:
    """A client that would accept anything, to see what the *server* allows."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_echo(port: int, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    tls.sendall(b"EHLO test\r\n")
    assert tls.recv(100) == b"EHLO test\r\n"
    return tls


def cipher_name(tls: ssl.SSLSocket) -> str:
    cipher = tls.cipher()
    assert cipher is not None
    return cipher[0]


# --- hand-built TLS records (RFC 5246 section 7.4.1.2, RFC 8446 section 4.1.2) ---

HANDSHAKE, ALERT = 0x16, 0x15
ALERT_HANDSHAKE_FAILURE, ALERT_PROTOCOL_VERSION = 40, 70
TLS10, TLS11, TLS12 = 0x0301, 0x0302, 0x0303

# IANA TLS cipher suite registry values.
ECDHE_ECDSA_AES128_GCM_SHA256 = 0xC02B
ECDHE_ECDSA_AES256_GCM_SHA384 = 0xC02C
ECDHE_ECDSA_AES128_CBC_SHA = 0xC009
WEAK_SUITES = {
    "3DES": (0x000A, 0xC008, 0xC012, 0x0016),  # RSA/ECDHE_ECDSA/ECDHE_RSA/DHE_RSA + 3DES
    "RC4": (0x0005, 0xC007, 0xC011),
    "NULL": (0x003B, 0xC006, 0xC010),  # eNULL: no encryption
    "aNULL": (0x00A6, 0xC018, 0xC017),  # anonymous DH/ECDH: no authentication
    "EXPORT": (0x0003, 0x0006, 0x0008),
    "CBC-SHA1": (ECDHE_ECDSA_AES128_CBC_SHA, 0xC00A, 0xC013, 0x002F),
    "static-RSA-GCM": (0x009C, 0x009D),  # no forward secrecy
}


def client_hello(version: int, suites: Sequence[int], compression: bytes = b"\x00") -> bytes:
    """A minimal ClientHello record offering exactly ``suites`` at ``version``."""

    def ext(kind: int, data: bytes) -> bytes:
        return struct.pack("!HH", kind, len(data)) + data

    extensions = (
        # supported_groups: secp256r1, x25519 (RFC 8422 section 5.1.1)
        ext(0x000A, struct.pack("!HHH", 4, 0x0017, 0x001D))
        # ec_point_formats: uncompressed
        + ext(0x000B, b"\x01\x00")
        # signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
        + ext(0x000D, struct.pack("!HHHH", 6, 0x0403, 0x0804, 0x0401))
    )
    body = (
        struct.pack("!H", version)
        + os.urandom(32)
        + b"\x00"  # no session id
        + struct.pack("!H", 2 * len(suites))
        + b"".join(struct.pack("!H", s) for s in suites)
        + bytes([len(compression)])
        + compression
        + struct.pack("!H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", HANDSHAKE, TLS10, len(handshake)) + handshake


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


@dataclass(frozen=True)
class FirstRecord:
    content_type: int
    payload: bytes

    @property
    def alert_description(self) -> int:
        assert self.content_type == ALERT
        return self.payload[1]

    def server_hello(self) -> tuple[int, int]:
        """(cipher suite, compression method) chosen in a ServerHello."""
        assert self.content_type == HANDSHAKE
        assert self.payload[0] == 0x02, "not a ServerHello"
        pos = 4 + 2 + 32  # handshake header, server_version, random
        pos += 1 + self.payload[pos]  # session id
        (suite,) = struct.unpack_from("!H", self.payload, pos)
        return suite, self.payload[pos + 2]


def send_raw_hello(port: int, hello: bytes) -> FirstRecord:
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(hello)
        content_type, _version, length = struct.unpack("!BHH", recv_exactly(sock, 5))
        return FirstRecord(content_type, recv_exactly(sock, length))


# --------------------------------------------------------------------------
# the context itself
# --------------------------------------------------------------------------


def test_context_policy(server_ctx: ssl.SSLContext) -> None:
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_ctx.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
    for flag in (ssl.OP_CIPHER_SERVER_PREFERENCE, ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION):
        assert server_ctx.options & flag == flag
    single = ssl.OP_SINGLE_DH_USE | ssl.OP_SINGLE_ECDH_USE
    assert server_ctx.options & single == single
    tls12 = [c for c in server_ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    for cipher in tls12:
        assert cipher["aead"], cipher["name"]
        assert cipher["kea"] in ("kx-ecdhe", "kx-dhe"), cipher["name"]
        assert cipher["auth"] in ("auth-ecdsa", "auth-rsa"), cipher["name"]
        assert not re.search(r"NULL|EXP|RC4|DES|CBC|MD5|SHA$", cipher["name"]), cipher["name"]


def test_less_secure_drops_single_use_flags(pair: Pair) -> None:
    ctx = build_server_context(str(pair.cert), str(pair.key), less_secure=True)
    # OP_SINGLE_*_USE are 0 (no-ops) since OpenSSL 1.1.0; on older ones they are real bits.
    assert ctx.options & (ssl.OP_SINGLE_DH_USE | ssl.OP_SINGLE_ECDH_USE) == 0
    assert ctx.options & ssl.OP_NO_COMPRESSION
    with EchoServer(ctx) as srv, tls_echo(srv.port, verifying_client(pair.cert)) as tls:
        assert tls.version() == "TLSv1.3"


# --------------------------------------------------------------------------
# handshakes that must work
# --------------------------------------------------------------------------


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1", "mail.example.test"])
def test_tls13_negotiates_and_certificate_verifies(
    server: EchoServer, pair: Pair, server_hostname: str
) -> None:
    ctx = verifying_client(pair.cert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with tls_echo(server.port, ctx, server_hostname) as tls:
        assert tls.version() == "TLSv1.3"
    outcome = server.next_outcome()
    assert outcome.ok
    assert outcome.version == "TLSv1.3"


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ],
)
def test_tls12_with_modern_cipher(server: EchoServer, pair: Pair, cipher: str) -> None:
    ctx = verifying_client(pair.cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    with tls_echo(server.port, ctx) as tls:
        assert tls.version() == "TLSv1.2"
        assert cipher_name(tls) == cipher
    assert server.next_outcome().cipher == cipher


def test_server_cipher_preference_wins(server: EchoServer, pair: Pair) -> None:
    ctx = verifying_client(pair.cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    # The client prefers AES256; the server's list puts AES128-GCM first.
    ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
    with tls_echo(server.port, ctx) as tls:
        assert cipher_name(tls) == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_compression_is_off(server: EchoServer, pair: Pair) -> None:
    with tls_echo(server.port, verifying_client(pair.cert)) as tls:
        assert tls.compression() is None
    assert server.next_outcome().compression is None
    # A client that offers DEFLATE (RFC 3749) first still gets method 0 (null).
    hello = client_hello(TLS12, [ECDHE_ECDSA_AES128_GCM_SHA256], compression=b"\x01\x00")
    suite, compression = send_raw_hello(server.port, hello).server_hello()
    assert suite == ECDHE_ECDSA_AES128_GCM_SHA256
    assert compression == 0


def test_raw_hello_control_gets_server_hello(server: EchoServer) -> None:
    # Proves the hand-built ClientHello is well formed, so that the alerts in
    # the refusal tests below mean "refused", not "garbled".
    hello = client_hello(TLS12, [ECDHE_ECDSA_AES256_GCM_SHA384])
    suite, _ = send_raw_hello(server.port, hello).server_hello()
    assert suite == ECDHE_ECDSA_AES256_GCM_SHA384


# --------------------------------------------------------------------------
# handshakes that must fail
# --------------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_protocol_client_is_refused(
    server: EchoServer, version: ssl.TLSVersion, pair: Pair
) -> None:
    ctx = lax_client()
    with warnings.catch_warnings():
        # Python deprecates these versions; using them is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    # SECLEVEL=0 lets OpenSSL 3 actually offer TLS 1.0/1.1 (and SHA-1 signatures).
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, OSError)):
        tls_echo(server.port, ctx).close()
    assert not server.next_outcome().ok


@pytest.mark.parametrize("version", [TLS10, TLS11], ids=["TLSv1.0", "TLSv1.1"])
def test_old_protocol_raw_hello_gets_protocol_version_alert(
    server: EchoServer, version: int
) -> None:
    suites = [ECDHE_ECDSA_AES128_CBC_SHA, 0xC00A, 0x002F]
    record = send_raw_hello(server.port, client_hello(version, suites))
    assert record.content_type == ALERT
    assert record.alert_description == ALERT_PROTOCOL_VERSION
    assert not server.next_outcome().ok


@pytest.mark.parametrize(
    "cipher",
    [
        "NULL-SHA256",  # eNULL
        "ADH-AES128-GCM-SHA256",  # aNULL
        "AECDH-AES128-SHA",  # aNULL
        "ECDHE-ECDSA-AES128-SHA",  # CBC with SHA-1 MAC
        "AES128-GCM-SHA256",  # static RSA: no forward secrecy
    ],
)
def test_weak_cipher_client_is_refused(server: EchoServer, cipher: str) -> None:
    ctx = lax_client()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(f"{cipher}:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, OSError)):
        tls_echo(server.port, ctx).close()
    assert not server.next_outcome().ok


@pytest.mark.parametrize("family", sorted(WEAK_SUITES))
def test_weak_cipher_raw_hello_gets_handshake_failure(server: EchoServer, family: str) -> None:
    # This OpenSSL may not even build 3DES, RC4 or export suites into its
    # client, so offer them by number: the server must refuse them all.
    record = send_raw_hello(server.port, client_hello(TLS12, WEAK_SUITES[family]))
    assert record.content_type == ALERT
    assert record.alert_description == ALERT_HANDSHAKE_FAILURE
    assert not server.next_outcome().ok


def test_plaintext_to_tls_port_fails_cleanly(server: EchoServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"EHLO plaintext.example\r\n")
        try:
            reply = sock.recv(100)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"EHLO")  # never treated as application data
    assert not server.next_outcome().ok


# --------------------------------------------------------------------------
# openssl s_client
# --------------------------------------------------------------------------


def s_client(port: int, cafile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-CAfile",
            str(cafile),
            "-verify_return_error",
            # -brief prints "Protocol version: ..." right after the handshake;
            # the full "SSL-Session ... Protocol :" block may not come at all
            # with TLS 1.3 when stdin closes before the session ticket arrives.
            "-brief",
            *extra,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def protocol_of(output: str) -> str | None:
    match = re.search(r"^\s*Protocol(?: version)?\s*:\s*(\S+)", output, re.M)
    return match.group(1) if match else None


def test_openssl_s_client_negotiates_tls13(server: EchoServer, pair: Pair) -> None:
    result = s_client(server.port, pair.cert)
    assert result.returncode == 0, result.stderr
    assert protocol_of(result.stderr) == "TLSv1.3", result.stderr
    assert "Verification: OK" in result.stderr
    assert server.next_outcome().version == "TLSv1.3"


def test_openssl_s_client_tls12(server: EchoServer, pair: Pair) -> None:
    result = s_client(server.port, pair.cert, "-tls1_2")
    assert result.returncode == 0, result.stderr
    assert protocol_of(result.stderr) == "TLSv1.2", result.stderr
    assert server.next_outcome().version == "TLSv1.2"


def test_openssl_s_client_tls11_refused(server: EchoServer, pair: Pair) -> None:
    result = s_client(server.port, pair.cert, "-tls1_1", "-cipher", "ALL:@SECLEVEL=0")
    assert result.returncode != 0
    assert not server.next_outcome().ok


# --------------------------------------------------------------------------
# DHE with dhparams
# --------------------------------------------------------------------------


def write_rsa_pair(directory: Path) -> Pair:
    cert, key = self_signed(
        directory, common_name="rsa.test", rsa_key=True, san=False, prefix="rsa-"
    )
    return Pair(cert, key)


@pytest.fixture(scope="module")
def dhparams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dhparams(tmp_path_factory.mktemp("dh"))


def dhe_client() -> ssl.SSLContext:
    """A TLS 1.2 client that offers a DHE suite only."""
    client = lax_client()
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("DHE-RSA-AES128-GCM-SHA256")
    return client


def test_dhparams_enable_dhe(tmp_path: Path, dhparams: Path) -> None:
    rsa_pair = write_rsa_pair(tmp_path)
    client = dhe_client()

    with_dh = build_server_context(str(rsa_pair.cert), str(rsa_pair.key), str(dhparams))
    with EchoServer(with_dh) as srv, tls_echo(srv.port, client) as tls:
        assert cipher_name(tls) == "DHE-RSA-AES128-GCM-SHA256"

    without_dh = build_server_context(str(rsa_pair.cert), str(rsa_pair.key))
    with EchoServer(without_dh) as srv, pytest.raises((ssl.SSLError, OSError)):
        tls_echo(srv.port, client).close()


def test_x942_dh_parameters_work_too(tmp_path: Path) -> None:
    # `openssl dhparam -dsaparam` writes X9.42 parameters: OpenSSL (and so the
    # classic server) takes them; the config check refused them.
    dhx = tmp_path / "dhx.pem"
    argv = ["openssl", "genpkey", "-genparam", "-algorithm", "DHX", "-pkeyopt", "dh_rfc5114:3"]
    subprocess.run([*argv, "-out", str(dhx)], check=True, capture_output=True)
    assert dhx.read_text().startswith("-----BEGIN X9.42 DH PARAMETERS-----")
    rsa_pair = write_rsa_pair(tmp_path)
    conf = tmp_path / "blackhole.conf"
    conf.write_text(
        f"tls_listen = 127.0.0.1:0\ntls_cert = {rsa_pair.cert}\ntls_key = {rsa_pair.key}\n"
        f"tls_dhparams = {dhx}\n"
    )
    assert load_config(conf).tls_dhparams == str(dhx)
    context = build_server_context(str(rsa_pair.cert), str(rsa_pair.key), str(dhx))
    with EchoServer(context) as srv, tls_echo(srv.port, dhe_client()) as tls:
        assert cipher_name(tls) == "DHE-RSA-AES128-GCM-SHA256"


def test_a_dh_group_under_2048_bits_is_named_too_small(tmp_path: Path) -> None:
    small = tmp_path / "dh1024.pem"
    argv = ["openssl", "dhparam", "-dsaparam", "-out", str(small), "1024"]
    subprocess.run(argv, check=True, capture_output=True)
    rsa_pair = write_rsa_pair(tmp_path)
    with pytest.raises(ConfigError, match=r"is too small a group \(DH_KEY_TOO_SMALL\)"):
        build_server_context(str(rsa_pair.cert), str(rsa_pair.key), str(small))


# --------------------------------------------------------------------------
# bad files: ConfigError naming the file, never a traceback or a prompt
# --------------------------------------------------------------------------


def garbage(path: Path) -> Path:
    path.write_text("this is not PEM\n")
    return path


def test_missing_cert(tmp_path: Path, pair: Pair) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=re.escape(str(missing))) as info:
        build_server_context(str(missing), str(pair.key))
    assert "No such file" in str(info.value)
    assert info.value.exit_code == 64


def test_missing_key(tmp_path: Path, pair: Pair) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        build_server_context(str(pair.cert), str(missing))


def test_unreadable_cert_is_a_directory(tmp_path: Path, pair: Pair) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        build_server_context(str(tmp_path), str(pair.key))


def test_invalid_cert(tmp_path: Path, pair: Pair) -> None:
    bad = garbage(tmp_path / "cert.pem")
    with pytest.raises(ConfigError, match=rf"certificate {re.escape(str(bad))}.*no PEM"):
        build_server_context(str(bad), str(pair.key))


def test_corrupt_cert_body(tmp_path: Path, pair: Pair) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        build_server_context(str(bad), str(pair.key))


def test_invalid_key(tmp_path: Path, pair: Pair) -> None:
    bad = garbage(tmp_path / "key.pem")
    with pytest.raises(ConfigError, match=rf"key {re.escape(str(bad))}.*no PEM private key"):
        build_server_context(str(pair.cert), str(bad))


def test_mismatched_pair(tmp_path: Path, pair: Pair) -> None:
    _other_cert, other_key = generate_self_signed("other.test", tmp_path)
    with pytest.raises(ConfigError, match="do not match") as info:
        build_server_context(str(pair.cert), str(other_key))
    assert str(pair.cert) in str(info.value)
    assert str(other_key) in str(info.value)


def test_encrypted_key_fails_instead_of_prompting(tmp_path: Path, pair: Pair) -> None:
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match=rf"{re.escape(str(encrypted))}.*passphrase"):
        build_server_context(str(pair.cert), str(encrypted))


def test_cert_and_key_in_one_file(tmp_path: Path, pair: Pair) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pair.cert.read_bytes() + pair.key.read_bytes())
    assert isinstance(build_server_context(str(bundle), str(bundle)), ssl.SSLContext)


def test_missing_dhparams(tmp_path: Path, pair: Pair) -> None:
    missing = tmp_path / "dh.pem"
    with pytest.raises(ConfigError, match=rf"dhparams {re.escape(str(missing))}"):
        build_server_context(str(pair.cert), str(pair.key), str(missing))


def test_invalid_dhparams(tmp_path: Path, pair: Pair) -> None:
    bad = garbage(tmp_path / "dh.pem")
    with pytest.raises(ConfigError, match=rf"dhparams {re.escape(str(bad))}.*DH PARAMETERS"):
        build_server_context(str(pair.cert), str(pair.key), str(bad))


def test_cert_given_as_dhparams(pair: Pair) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(pair.cert))):
        build_server_context(str(pair.cert), str(pair.key), str(pair.cert))


# --------------------------------------------------------------------------
# generate_self_signed
# --------------------------------------------------------------------------


def test_generated_certificate_contents(pair: Pair) -> None:
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["mail.example.test"]
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc <= now - dt.timedelta(hours=23)
    assert cert.not_valid_after_utc >= now + dt.timedelta(days=360)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_generated_files_modes_and_names(pair: Pair) -> None:
    assert pair.cert.name == SELF_SIGNED_CERT_NAME
    assert pair.key.name == SELF_SIGNED_KEY_NAME
    assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pair.cert.stat().st_mode) == 0o644
    assert not [p for p in pair.key.parent.iterdir() if p.name.endswith(".tmp")]


def test_regenerating_replaces_files(tmp_path: Path) -> None:
    first = generate_self_signed("a.test", tmp_path)
    old = first[0].read_bytes()
    second = generate_self_signed("b.test", tmp_path)
    assert first == second
    assert second[0].read_bytes() != old
    assert stat.S_IMODE(second[1].stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("name", "cn", "san"),
    [
        ("192.0.2.25", "192.0.2.25", ipaddress.ip_address("192.0.2.25")),
        ("bücher.example", "bücher.example", "xn--bcher-kva.example"),
        ("a" * 63 + ".example", "localhost", "a" * 63 + ".example"),
    ],
    ids=["ip", "idn", "longer-than-64"],
)
def test_generated_certificate_odd_names(
    tmp_path: Path, name: str, cn: str, san: str | ipaddress.IPv4Address
) -> None:
    cert_path, key_path = generate_self_signed(name, tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    values = ext.get_values_for_type(x509.DNSName) + ext.get_values_for_type(x509.IPAddress)
    assert san in values
    build_server_context(str(cert_path), str(key_path))


def test_generate_into_unwritable_directory(tmp_path: Path) -> None:
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        generate_self_signed("x.test", missing)


# --------------------------------------------------------------------------
# the context the server runs with: TLSStore.prepare, then the worker's load_tls
# --------------------------------------------------------------------------

PLAIN_ONLY = (Listener("127.0.0.1", 2525),)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TLSStore]:
    tls_store = TLSStore(str(tmp_path))
    yield tls_store
    tls_store.cleanup()


def server_context(
    store: TLSStore, config: Config, mailname: str = "x.test"
) -> ssl.SSLContext | None:
    return load_tls(store.prepare(config, mailname))


def test_server_context_from_configured_files(store: TLSStore, pair: Pair) -> None:
    config = Config(tls_cert=str(pair.cert), tls_key=str(pair.key), listeners=PLAIN_ONLY)
    assert isinstance(server_context(store, config), ssl.SSLContext)
    assert not list(store.root.rglob(SELF_SIGNED_CERT_NAME))  # nothing generated


def test_server_context_key_defaults_to_cert_file(
    tmp_path: Path, store: TLSStore, pair: Pair
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pair.cert.read_bytes() + pair.key.read_bytes())
    assert server_context(store, Config(tls_cert=str(bundle))) is not None


def test_server_context_reports_bad_files(tmp_path: Path, store: TLSStore) -> None:
    config = Config(tls_cert=str(tmp_path / "missing.pem"), tls_key=str(tmp_path / "k.pem"))
    with pytest.raises(ConfigError, match=re.escape("missing.pem")):
        server_context(store, config)


def test_server_context_generates_for_tls_listener(tmp_path: Path, store: TLSStore) -> None:
    # The default Config (no config file) has an SMTPS listener and no cert.
    files = store.prepare(Config(), "laptop.test")
    assert files is not None
    ctx = load_tls(files)
    assert ctx is not None
    cert = x509.load_pem_x509_certificate(Path(files.cert).read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "laptop.test"
    with EchoServer(ctx) as srv:
        client = verifying_client(Path(files.cert))
        with tls_echo(srv.port, client, "laptop.test") as tls:
            assert tls.version() == "TLSv1.3"


def test_server_context_generates_when_asked(store: TLSStore) -> None:
    config = Config(listeners=PLAIN_ONLY, generated_cert=True)
    assert server_context(store, config, "starttls.test") is not None


def test_server_context_none_without_tls(tmp_path: Path, store: TLSStore) -> None:
    assert server_context(store, Config(listeners=PLAIN_ONLY)) is None
    assert not list(tmp_path.iterdir())
