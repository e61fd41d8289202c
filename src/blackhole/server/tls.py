"""TLS server contexts: the one place that decides how Blackhole speaks TLS.

Both implicit TLS (SMTPS, RFC 8314) and STARTTLS (RFC 3207) listeners use the
context built here. The policy follows the Mozilla "intermediate"
recommendations (https://wiki.mozilla.org/Security/Server_Side_TLS, v5.7) and
RFC 9325 (BCP 195): TLS 1.2 minimum, TLS 1.3 on, only forward-secret AEAD
cipher suites for TLS 1.2, no TLS compression (CRIME, RFC 9325 section 3.3),
no renegotiation. Every file problem becomes a ``ConfigError`` naming the file,
so that ``blackhole -t`` can print it instead of a traceback.

This module does blocking file I/O and key generation: call it at start-up or
on a reload, never from the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import os
import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from blackhole.config.files import dh_prime_bits
from blackhole.errors import ConfigError
from blackhole.server.alerts import AlertingContext

__all__ = [
    "SELF_SIGNED_CERT_NAME",
    "SELF_SIGNED_KEY_NAME",
    "TLS12_CIPHERS",
    "build_server_context",
    "generate_self_signed",
]

log = logging.getLogger(__name__)

# TLS 1.2 cipher suites: Mozilla "intermediate" v5.7, i.e. ephemeral (EC)DH key
# exchange (forward secrecy) with AEAD only (AES-GCM, ChaCha20-Poly1305,
# RFC 5288 / RFC 7905). This excludes by construction NULL, anonymous (aNULL),
# export, LOW, 3DES, RC4 and every CBC mode cipher (Lucky13, RFC 9325 4.2).
# swaks, curl and openssl s_client all offer ECDHE-*-AES*-GCM. TLS 1.3 suites
# (RFC 8446) are configured separately by OpenSSL and are all AEAD already.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        # DHE suites are only ever chosen when tls_dhparams is set (OpenSSL
        # needs the group) and the certificate is RSA.
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)

SELF_SIGNED_CERT_NAME = "blackhole-selfsigned-cert.pem"
SELF_SIGNED_KEY_NAME = "blackhole-selfsigned-key.pem"

# RFC 5280 appendix A.1: ub-common-name INTEGER ::= 64.
_MAX_COMMON_NAME = 64
# RFC 7919 / Mozilla: finite-field DH groups below 2048 bits are Logjam-weak.
_MIN_DH_BITS = 2048

_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.*?-----END \1-----", re.S
)


class _EncryptedKeyError(Exception):
    """Raised from the password callback: the key wants a passphrase."""


def _refuse_password() -> bytes:
    # Without a callback OpenSSL would prompt on the controlling terminal and
    # block start-up (or a daemonised reload) forever; fail loudly instead.
    raise _EncryptedKeyError


def _read(path: str, what: str) -> bytes:
    """Read a whole PEM file, mapping OS errors to a ConfigError naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read TLS {what} {path}: {reason}") from None


def _encrypted_key_error(key: str) -> ConfigError:
    return ConfigError(
        f"TLS key {key} is protected by a passphrase; Blackhole needs an unencrypted key "
        f"(openssl pkey -in {key} -out KEY.pem)"
    )


def _diagnose_pair(cert: str, key: str, exc: ssl.SSLError) -> ConfigError:
    """Explain why OpenSSL refused a certificate/key pair, naming the culprit file.

    OpenSSL's own messages ("PEM lib", "key values mismatch") do not say which
    file is wrong, so re-read both with ``cryptography`` to find out. The files
    were readable a moment ago; a race here only degrades the message.
    """
    cert_data = _read(cert, "certificate")
    key_data = _read(key, "key")

    cert_block = _CERT_BLOCK.search(cert_data)
    if cert_block is None:
        return ConfigError(f"TLS certificate {cert} holds no PEM certificate")
    try:
        leaf = x509.load_pem_x509_certificate(cert_block.group(0))
    except ValueError as err:
        return ConfigError(f"TLS certificate {cert} is not a valid PEM certificate: {err}")

    key_block = _KEY_BLOCK.search(key_data)
    if key_block is None:
        return ConfigError(f"TLS key {key} holds no PEM private key")
    try:
        private = serialization.load_pem_private_key(key_block.group(0), password=None)
    except TypeError:
        return _encrypted_key_error(key)
    except (ValueError, UnsupportedAlgorithm) as err:
        return ConfigError(f"TLS key {key} is not a valid PEM private key: {err}")

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if leaf.public_key().public_bytes(der, spki) != private.public_key().public_bytes(der, spki):
        return ConfigError(
            f"TLS certificate {cert} and key {key} do not match "
            "(the key is not the certificate's private key)"
        )
    return ConfigError(
        f"cannot load TLS certificate {cert} with key {key}: {exc.reason or exc.strerror or exc}"
    )


def _load_dhparams(ctx: ssl.SSLContext, dhparams: str) -> None:
    data = _read(dhparams, "dhparams")
    try:
        ctx.load_dh_params(dhparams)
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        # OpenSSL 3 refuses a group under 2048 bits at its default security level.
        what = (
            "too small a group"
            if reason == "DH_KEY_TOO_SMALL"
            else "not a PEM 'DH PARAMETERS' file"
        )
        raise ConfigError(
            f"TLS dhparams {dhparams} is {what} ({reason}); "
            "make one with: openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read TLS dhparams {dhparams}: {exc.strerror or exc}") from None
    # OpenSSL accepts small groups here and then either uses them (Logjam) or
    # fails handshakes at its security level; say so once, at start-up.
    with contextlib.suppress(ValueError):
        bits = dh_prime_bits(data)  # not cryptography's DH API: deprecated, it warns
        if bits < _MIN_DH_BITS:
            log.warning(
                "TLS dhparams %s is a %d-bit group; use at least %d bits",
                dhparams,
                bits,
                _MIN_DH_BITS,
            )


def build_server_context(
    cert: str, key: str, dhparams: str | None = None, less_secure: bool = False
) -> ssl.SSLContext:
    """Build the server-side TLS context from PEM files.

    ``cert`` may hold the chain after the leaf certificate; ``key`` may be the
    same file as ``cert``. ``dhparams`` enables the DHE suites. ``less_secure``
    is the classic ``-ls`` switch: do not force single-use (EC)DH keys. Since
    OpenSSL 1.1.0 both ``OP_SINGLE_*_USE`` flags are no-ops (fresh ephemeral
    keys are always used), so on a modern OpenSSL ``-ls`` changes nothing; it
    is kept so that classic command lines still work.

    Raises ``ConfigError`` (naming the file) for an unreadable or invalid
    certificate, key or dhparams file, an encrypted key, or a key that is not
    the certificate's.
    """
    # Its SSL objects send the alert of a failed handshake (server.alerts).
    ctx = AlertingContext(ssl.PROTOCOL_TLS_SERVER)
    # RFC 8996 deprecates TLS 1.0 and 1.1; RFC 9325 section 3.1.1 asks for 1.2+.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= (
        # Our list is ordered strongest first; let it win over the client's.
        ssl.OP_CIPHER_SERVER_PREFERENCE
        # CRIME (RFC 9325 section 3.3).
        | ssl.OP_NO_COMPRESSION
        # Client-initiated renegotiation is a cheap CPU DoS and an old
        # injection vector (RFC 5746); SMTP never needs it.
        | ssl.OP_NO_RENEGOTIATION
    )
    single_use = ssl.OP_SINGLE_DH_USE | ssl.OP_SINGLE_ECDH_USE
    if less_secure:
        ctx.options &= ~single_use
    else:
        ctx.options |= single_use

    _read(cert, "certificate")
    _read(key, "key")
    try:
        ctx.load_cert_chain(cert, key, password=_refuse_password)
    except _EncryptedKeyError:
        raise _encrypted_key_error(key) from None
    except ssl.SSLError as exc:
        raise _diagnose_pair(cert, key, exc) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read TLS certificate {cert} or key {key}: {exc.strerror or exc}"
        ) from None

    # TLS 1.3 sends session tickets after the handshake, two by OpenSSL's
    # default (RFC 8446 section 4.6.1 leaves the number to the server). An
    # SMTP client resumes one connection with one ticket and gets a new one
    # on it; a second ticket per handshake was work for nothing (~3 % of a
    # full handshake's CPU, client and server).
    ctx.num_tickets = 1

    if dhparams is not None:
        _load_dhparams(ctx, dhparams)
    return ctx


def _san_for(name: str) -> x509.GeneralName | None:
    """The subjectAltName entry for ``name``, or None if it cannot be one."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        # DNSName wants the A-label (RFC 5280 section 4.2.1.6, RFC 5890).
        ascii_name = name.encode("idna").decode("ascii")
        return x509.DNSName(ascii_name)
    except (UnicodeError, ValueError):
        return None


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` created with ``mode``, replacing it atomically.

    A worker (re)loading the certificate must never see half a file, and the
    key must never exist, even briefly, with wider permissions than ``mode``.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def generate_self_signed(common_name: str, directory: Path) -> tuple[Path, Path]:
    """Make a self-signed EC P-256 certificate for ``common_name`` in ``directory``.

    Valid from one day ago (clock skew) for one year. The subjectAltName lists
    ``common_name`` (as a DNS name, or an IP address if it is one), DNS
    ``localhost``, IP ``127.0.0.1`` and IP ``::1``: clients check SANs, not the
    CN (RFC 6125 section 6.4.4). EC rather than RSA because generating the key
    takes microseconds instead of up to a second.

    Writes ``blackhole-selfsigned-cert.pem`` (0644) and
    ``blackhole-selfsigned-key.pem`` (0600), replacing older ones, and returns
    ``(cert_path, key_path)``. Raises ``ConfigError`` if the directory is not
    writable.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)

    cn = common_name if 0 < len(common_name) <= _MAX_COMMON_NAME else "localhost"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Blackhole self-signed"),
        ]
    )
    sans: list[x509.GeneralName] = []
    candidates = (
        _san_for(common_name),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(ipaddress.IPv6Address("::1")),
    )
    for entry in candidates:
        if entry is not None and entry not in sans:
            sans.append(entry)

    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )

    cert_path = directory / SELF_SIGNED_CERT_NAME
    key_path = directory / SELF_SIGNED_KEY_NAME
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        _write_atomically(key_path, key_pem, 0o600)
        _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot write a self-signed certificate in {directory}: {exc.strerror or exc}"
        ) from None
    return cert_path, key_path
