"""The PROXY protocol header (HAProxy's specification, versions 1 and 2), sans-IO.

A proxy in front of the server (HAProxy ``send-proxy`` / ``send-proxy-v2``,
nginx ``proxy_protocol``, a cloud load balancer) sends one header before the
client's first byte, carrying the client's real address. This module reads
that header from bytes pushed in any chunking and says what it held; the
adapter (``server.proxied``) owns the socket and the timeout.

The specification is doc/proxy-protocol.txt in the HAProxy sources; section
numbers below are its. Any byte sequence gives a header, "need more", or a
``ProxyHeaderError`` holding a reason, never another exception; and the answer
depends only on the bytes, never on how they were split (the tests check both).

The PyPI package ``proxy-protocol`` was considered: it bundles its own asyncio
server and has had no release since 2024, while all that is needed here is a
bounded parser with no I/O, small enough to own.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Section 2.1: "PROXY" and one space start a version 1 line...
V1_PREFIX = b"PROXY "
# ...which, CRLF included, is at most 107 bytes ("PROXY UNKNOWN" with two
# full-length IPv6 addresses and ports); no CRLF in those is invalid.
V1_MAX = 107
# Section 2.2: the twelve-byte signature of version 2, chosen so that it can
# never start a valid line of any text protocol.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# Signature, version/command, family/protocol, two-byte length.
V2_FIXED = 16

_V2_LOCAL = 0x0
_V2_PROXY = 0x1
# Address family (high nibble) and transport (low nibble) of byte 14.
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_UNSPEC, _STREAM = 0x0, 0x1
# Section 2.2: the address block's length for each family; the rest of the
# announced length is TLVs (section 2.2.1).
_ADDRESS_BYTES = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}

# Section 2.1: decimal numbers without leading zeroes (no octal confusion).
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
_IPV4 = re.compile(rb"(?:(?:0|[1-9][0-9]{0,2})\.){3}(?:0|[1-9][0-9]{0,2})")
_IPV6 = re.compile(rb"[0-9A-Fa-f:]{2,39}")


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY header; ``reason`` says why, for the log."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header said.

    ``source`` and ``destination`` are ``(address, port)``, or ``None`` when
    the header carries no addresses the receiver should use (v1 ``UNKNOWN``,
    v2 ``LOCAL``, the UNSPEC and UNIX families): the specification then asks
    for the real connection's addresses.
    """

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    tlvs: tuple[tuple[int, bytes], ...] = ()


class ProxyHeaderReader:
    """Bytes in, one header out; ``rest`` is what followed it (the client's bytes)."""

    __slots__ = ("_buffer", "_need", "header", "rest")

    def __init__(self) -> None:
        self._buffer = bytearray()
        # Nothing can change before the buffer holds this many bytes: a
        # version 2 header of 64 KiB sent a byte at a time is looked at once,
        # not 64 Ki times.
        self._need = 1
        self.header: ProxyHeader | None = None
        self.rest = b""

    def receive_data(self, data: bytes) -> ProxyHeader | None:
        """Add bytes; the header once complete, else None (more is needed).

        Raises ``ProxyHeaderError`` as soon as the bytes cannot be a header
        (section 2.1: abort "as soon as possible" so the sender notices).
        Bytes pushed after the header was found go to ``rest``.
        """
        if self.header is not None:
            self.rest += data
            return self.header
        buffer = self._buffer
        buffer += data
        if len(buffer) < self._need:
            return None
        found = _examine(bytes(buffer))
        if isinstance(found, int):
            self._need = found
            return None
        self.header, used = found
        self.rest = bytes(buffer[used:])
        buffer.clear()
        return self.header


def _examine(buffer: bytes) -> tuple[ProxyHeader, int] | int:
    """(header, bytes it used), or how many bytes are needed; raises if invalid.

    Every check looks at a fixed prefix of the buffer, in a fixed order, so
    that a longer buffer never changes an earlier verdict: that is what makes
    the result independent of the chunking.
    """
    if buffer[:1] == V2_SIGNATURE[:1]:
        return _examine_v2(buffer)
    if not V1_PREFIX.startswith(buffer[: len(V1_PREFIX)]):
        raise ProxyHeaderError("not a PROXY protocol header")
    return _examine_v1(buffer)


# --- version 1 (section 2.1) ------------------------------------------------------


def _examine_v1(buffer: bytes) -> tuple[ProxyHeader, int] | int:
    end = buffer.find(b"\n", 0, V1_MAX)
    if end == -1:
        if len(buffer) >= V1_MAX:
            raise ProxyHeaderError(f"version 1 header has no CRLF in its first {V1_MAX} bytes")
        return len(buffer) + 1
    if end == 0 or buffer[end - 1 : end] != b"\r":
        raise ProxyHeaderError("version 1 header ends in a bare LF, not CRLF")
    return _parse_v1(buffer[: end - 1]), end + 1


def _parse_v1(line: bytes) -> ProxyHeader:
    fields = line.split(b" ")
    protocol = fields[1] if len(fields) > 1 else b""
    if protocol == b"UNKNOWN":
        # "the receiver must ignore anything presented before the CRLF".
        return ProxyHeader(1, None, None)
    if protocol not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError(
            f"version 1 protocol must be TCP4, TCP6 or UNKNOWN, not {_shown(protocol)}"
        )
    if len(fields) != 6:
        raise ProxyHeaderError(
            "version 1 header needs exactly: PROXY, protocol, two addresses, two ports,"
            " one space apart"
        )
    version = 4 if protocol == b"TCP4" else 6
    source = (_v1_address(fields[2], version), _v1_port(fields[4]))
    destination = (_v1_address(fields[3], version), _v1_port(fields[5]))
    return ProxyHeader(1, source, destination)


def _v1_address(text: bytes, version: int) -> str:
    pattern = _IPV4 if version == 4 else _IPV6
    try:
        if pattern.fullmatch(text):
            address = ipaddress.ip_address(text.decode("ascii"))
            if address.version == version:
                return address.compressed
    except ValueError:
        pass
    raise ProxyHeaderError(
        f"version 1 header: {_shown(text)} is not a canonical IPv{version} address"
    )


def _v1_port(text: bytes) -> int:
    if _PORT.fullmatch(text) and int(text) <= 65535:
        return int(text)
    raise ProxyHeaderError(f"version 1 header: {_shown(text)} is not a port from 0 to 65535")


def _shown(text: bytes) -> str:
    # Reasons go to the log: never echo a peer's control bytes into it.
    return repr(text[:48].decode("ascii", "backslashreplace"))


# --- version 2 (section 2.2) --------------------------------------------------------


def _examine_v2(buffer: bytes) -> tuple[ProxyHeader, int] | int:
    signature = buffer[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(signature):
        raise ProxyHeaderError("not a PROXY protocol header (bad version 2 signature)")
    _check_v2_fixed(buffer)
    if len(buffer) < V2_FIXED:
        return len(buffer) + 1
    length = int.from_bytes(buffer[14:16], "big")
    family = buffer[13] >> 4
    command = buffer[12] & 0x0F
    needed = _ADDRESS_BYTES.get(family, 0)
    if command == _V2_PROXY and length < needed:
        raise ProxyHeaderError(
            f"version 2 header announces {length} bytes, fewer than its addresses need ({needed})"
        )
    end = V2_FIXED + length
    if len(buffer) < end:
        return end
    body = buffer[V2_FIXED:end]
    if command == _V2_LOCAL or family == _AF_UNSPEC:
        # The proxy's own connection (a health check): "the receiver must
        # ignore the address information" and use the real connection's.
        # UNSPEC: likewise "use the real connection's addresses"; what the
        # body holds is not specified, so it is not read.
        return ProxyHeader(2, None, None), end
    return ProxyHeader(2, *_v2_addresses(family, body), _tlvs(body[needed:])), end


def _check_v2_fixed(buffer: bytes) -> None:
    """The checks on bytes 13 and 14, each made as soon as its byte is in."""
    if len(buffer) > 12:
        version, command = buffer[12] >> 4, buffer[12] & 0x0F
        if version != 2:
            raise ProxyHeaderError(f"version 2 signature with version {version}")
        if command not in (_V2_LOCAL, _V2_PROXY):
            raise ProxyHeaderError(f"version 2 header with unknown command {command:#x}")
    if len(buffer) > 13 and buffer[12] & 0x0F == _V2_PROXY:
        family, transport = buffer[13] >> 4, buffer[13] & 0x0F
        if family not in (_AF_UNSPEC, *_ADDRESS_BYTES):
            raise ProxyHeaderError(f"version 2 header with unknown address family {family:#x}")
        if family != _AF_UNSPEC and transport != _STREAM:
            # An SMTP server only takes streams; a datagram header is a
            # misconfigured proxy.
            raise ProxyHeaderError(
                f"version 2 header for transport {transport:#x}, not a stream (TCP)"
            )


def _v2_addresses(
    family: int, body: bytes
) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    if family == _AF_INET:
        size = 4
    elif family == _AF_INET6:
        size = 16
    else:
        # UNIX: a path is no client address a rule could match; the real
        # connection's is used.
        return None, None
    source = ipaddress.ip_address(body[:size]).compressed
    destination = ipaddress.ip_address(body[size : 2 * size]).compressed
    ports = body[2 * size : 2 * size + 4]
    source_port = int.from_bytes(ports[:2], "big")
    destination_port = int.from_bytes(ports[2:], "big")
    return (source, source_port), (destination, destination_port)


def _tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """Section 2.2.1: type (1 byte), length (2 bytes), value; they fill the rest."""
    found: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if offset + 3 > len(data):
            raise ProxyHeaderError("version 2 header ends inside a TLV's type and length")
        kind = data[offset]
        length = int.from_bytes(data[offset + 1 : offset + 3], "big")
        start, offset = offset + 3, offset + 3 + length
        if offset > len(data):
            raise ProxyHeaderError(f"version 2 TLV {kind:#x} runs past the header's end")
        found.append((kind, data[start:offset]))
    return tuple(found)
