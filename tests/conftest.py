"""Shared fixtures: certificates made in the test run, a running server."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.serverproc import ServerProcess, start_server


@pytest.fixture(scope="session")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost, made for this run."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
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
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "blackhole.conf"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers; every one still running at the end is stopped."""
    started: list[ServerProcess] = []

    def factory(config: Path | None, *args: str, **kwargs: object) -> ServerProcess:
        server = start_server(config, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture
def server(
    server_factory: Callable[..., ServerProcess],
    write_config: Callable[[str], Path],
    cert_pair: tuple[Path, Path],
) -> ServerProcess:
    """A server with a plain (STARTTLS) and an SMTPS listener on ephemeral ports."""
    cert, key = cert_pair
    config = write_config(
        f"listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\n"
        f"tls_cert = {cert}\ntls_key = {key}\ntimeout = 30\n"
    )
    return server_factory(config)
