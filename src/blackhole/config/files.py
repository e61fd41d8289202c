"""Path options: where they point, and whether the files there are usable.

Every path option (``tls_cert``, ``tls_key``, ``tls_dhparams``, ``pidfile``,
``log_file``, and any file a later key names) goes through ``resolve``: a
relative path is taken from the directory Blackhole was started in, and fixed
as an absolute path when the config is loaded. The daemon (``-b``) changes
to ``/`` and a SIGHUP reload re-reads the file there, so a path resolved any
later would point somewhere else. Messages name the resolved path, the file
that was really looked at.

Each check returns the absolute path as a string, or raises ``ValueError``
with a phrase that reads after the key name.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from blackhole.regular import read_regular

# Only the start of a PEM file is read to check what it holds.
_PEM_SNIFF_BYTES = 1 << 20

CERTIFICATE = "-----BEGIN CERTIFICATE-----"
PRIVATE_KEY = "PRIVATE KEY-----"
# PKCS #3 "DH PARAMETERS", or X9.42 ones ("X9.42 DH PARAMETERS", from
# `openssl dhparam -dsaparam`): OpenSSL loads both, and both start with the prime.
DH_PARAMETERS = "DH PARAMETERS-----"
_DH_BLOCK = re.compile(
    rb"-----BEGIN (?:X9\.42 )?DH PARAMETERS-----(.*?)-----END (?:X9\.42 )?DH PARAMETERS-----",
    re.DOTALL,
)


def resolve(text: str, base: Path) -> Path:
    """``text`` as an absolute path, a relative one taken from ``base``."""
    return base / text  # an absolute text replaces base


def _read_head(path: Path) -> bytes:
    try:
        return read_regular(path, _PEM_SNIFF_BYTES)
    except FileNotFoundError:
        raise ValueError(f"file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{str(path)!r} is a directory, not a file") from None
    except OSError as exc:
        raise ValueError(f"file {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def pem_file(text: str, base: Path, marker: str, what: str) -> str:
    """A readable file whose first MiB holds ``marker`` (a PEM armour line)."""
    path = resolve(text, base)
    if marker.encode() not in _read_head(path):
        raise ValueError(f"file {str(path)!r} does not look like {what} (no {marker!r} line)")
    return str(path)


def readable_file(text: str, base: Path) -> str:
    """A file that can be read now (``control_token_file``)."""
    path = resolve(text, base)
    _read_head(path)
    return str(path)


def writable_path(text: str, base: Path) -> str:
    """A file name in a directory that exists (the file itself is made later)."""
    path = resolve(text, base)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; give a file name inside it")
    if not path.parent.is_dir():
        raise ValueError(f"directory {str(path.parent)!r} does not exist")
    return str(path)


def dh_prime_bits(pem: bytes) -> int:
    """The size in bits of the prime in a PEM ``DH PARAMETERS`` block.

    Read here from the DER (PKCS #3: ``DHParameter ::= SEQUENCE { prime
    INTEGER, base INTEGER, ... }``) because cryptography's DH API is
    deprecated and warns on every use. Raises ``ValueError``.
    """
    block = _DH_BLOCK.search(pem)
    if block is None:
        raise ValueError("no complete DH PARAMETERS block")
    try:
        der = base64.b64decode(b"".join(block.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("the block is not valid base64") from None
    tag, start, _end = _der_header(der, 0)
    if tag != 0x30:
        raise ValueError("the block is not a DER SEQUENCE")
    tag, start, end = _der_header(der, start)
    if tag != 0x02:
        raise ValueError("the prime is not a DER INTEGER")
    return int.from_bytes(der[start:end], "big", signed=True).bit_length()


def _der_header(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at ``pos`` (X.690 section 8.1)."""
    if pos + 2 > len(der):
        raise ValueError("the DER data is cut short")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > len(der):
            raise ValueError("the DER data has a bad length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("the DER data is cut short")
    return tag, pos, pos + length
