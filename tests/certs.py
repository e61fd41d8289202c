"""Self-signed certificates made in the test run (never checked-in key material)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def self_signed(
    directory: Path,
    *,
    common_name: str = "localhost",
    rsa_key: bool = False,
    san: bool = True,
    prefix: str = "",
) -> tuple[Path, Path]:
    """Write ``{prefix}cert.pem`` and ``{prefix}key.pem`` (PKCS#8) into ``directory``.

    The key is P-256 unless ``rsa_key`` (the DHE suites need an RSA key); with
    ``san`` the certificate names localhost and 127.0.0.1 as subject alternative
    names. Valid from yesterday to the day after tomorrow. Existing files are
    overwritten, so a second call makes a new pair at the same paths.
    """
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if rsa_key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path = directory / f"{prefix}cert.pem"
    key_path = directory / f"{prefix}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
