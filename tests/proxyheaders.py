"""PROXY protocol headers made by hand, for the parser and end-to-end tests."""

from __future__ import annotations

import ipaddress
import struct

from blackhole.protocol.proxyheader import V2_SIGNATURE


def v2(
    *,
    command: int = 0x1,
    family: int = 0x1,
    transport: int = 0x1,
    body: bytes = b"",
    length: int | None = None,
    version: int = 2,
) -> bytes:
    head = bytes([(version << 4) | command, (family << 4) | transport])
    return V2_SIGNATURE + head + struct.pack("!H", len(body) if length is None else length) + body


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value
