"""The sans-IO PROXY header reader (HAProxy doc/proxy-protocol.txt, v1 and v2).

Valid headers of every kind, the invalid classes (truncated, oversized,
garbage), and two Hypothesis properties: any bytes in any chunking give a
header, "need more" or a ProxyHeaderError, never another exception; and the
answer (header, bytes after it, or the error's reason) never depends on the
chunking.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blackhole.protocol.proxyheader import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
)
from tests.proxyheaders import inet4, inet6, tlv, v2

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read(data: bytes, sizes: list[int] | None = None) -> tuple[ProxyHeader | None, bytes]:
    """Feed ``data`` in pieces of ``sizes`` (cycled), else in one piece."""
    reader = ProxyHeaderReader()
    header = None
    if not sizes:
        return reader.receive_data(data), reader.rest
    i = 0
    n = 0
    while i < len(data):
        size = max(1, sizes[n % len(sizes)])
        header = reader.receive_data(data[i : i + size])
        i += size
        n += 1
    return header, reader.rest


def outcome(data: bytes, sizes: list[int] | None = None) -> object:
    try:
        return read(data, sizes)
    except ProxyHeaderError as exc:
        return ("error", exc.reason)


SMTP = b"EHLO client.test\r\n"

VALID = [
    (
        b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\n",
        ProxyHeader(1, ("127.0.0.5", 40000), ("127.0.0.1", 25)),
    ),
    (
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        ProxyHeader(1, ("255.255.255.255", 65535), ("255.255.255.255", 65535)),
    ),
    (
        b"PROXY TCP6 2001:DB8::5 2001:db8:0:0:0:0:0:1 1 0\r\n",
        ProxyHeader(1, ("2001:db8::5", 1), ("2001:db8::1", 0)),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None)),
    (
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        b" ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        ProxyHeader(1, None, None),
    ),
    (
        v2(body=inet4("127.0.0.5", "127.0.0.1", 40000, 25)),
        ProxyHeader(2, ("127.0.0.5", 40000), ("127.0.0.1", 25)),
    ),
    (
        v2(family=0x2, body=inet6("2001:db8::5", "::1", 5, 587)),
        ProxyHeader(2, ("2001:db8::5", 5), ("::1", 587)),
    ),
    # LOCAL (a health check): addresses and anything else in it are ignored.
    (v2(command=0x0, family=0x0, transport=0x0), ProxyHeader(2, None, None)),
    (v2(command=0x0, family=0x1, body=b"\xff" * 40), ProxyHeader(2, None, None)),
    # UNSPEC family under PROXY: the real connection's addresses.
    (v2(family=0x0, transport=0x0, body=b"junk"), ProxyHeader(2, None, None)),
    (
        v2(family=0x3, body=b"/run/a.sock".ljust(108, b"\0") + b"\0" * 108),
        ProxyHeader(2, None, None),
    ),
    (
        v2(
            body=inet4("10.0.0.7", "10.0.0.1", 1234, 465)
            + tlv(0x01, b"smtp")  # PP2_TYPE_ALPN
            + tlv(0x04, b"")  # PP2_TYPE_NOOP
            + tlv(0x20, b"\x05\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))  # PP2_TYPE_SSL
        ),
        ProxyHeader(
            2,
            ("10.0.0.7", 1234),
            ("10.0.0.1", 465),
            ((0x01, b"smtp"), (0x04, b""), (0x20, b"\x05\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))),
        ),
    ),
]


@pytest.mark.parametrize(("data", "expected"), VALID)
def test_valid_headers_whole_and_byte_by_byte(data: bytes, expected: ProxyHeader) -> None:
    assert read(data + SMTP) == (expected, SMTP)
    assert read(data + SMTP, [1]) == (expected, SMTP)


def test_bytes_after_the_header_reach_rest_even_when_pushed_later() -> None:
    reader = ProxyHeaderReader()
    assert reader.receive_data(b"PROXY UNKNOWN\r\nEH") == ProxyHeader(1, None, None)
    reader.receive_data(b"LO x\r\n")
    assert reader.rest == b"EHLO x\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 127.0.0.5 127.0.0.1 40000",  # no CRLF yet
        b"PROXY",
        b"",
        V2_SIGNATURE[:5],
        v2(body=inet4("1.2.3.4", "5.6.7.8", 1, 2))[:20],  # the addresses not all in
        v2(body=b"", length=65535),  # the largest a header can announce
    ],
)
def test_truncated_headers_need_more(data: bytes) -> None:
    assert read(data) == (None, b"")
    assert read(data, [1]) == (None, b"")


INVALID = [
    (b"EHLO client.test\r\n", "not a PROXY protocol header"),
    (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00\x01", "not a PROXY protocol header"),  # a TLS ClientHello
    (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY protocol header"),
    (b"PROXY TCP4 " + b"1" * 200, "no CRLF in its first 107 bytes"),
    (b"PROXY UNKNOWN " + b"f" * (V1_MAX - 14) + b"\r\n", "no CRLF in its first 107 bytes"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "must be TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "needs exactly"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "needs exactly"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "needs exactly"),
    (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "canonical IPv4"),
    (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "canonical IPv4"),
    (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "canonical IPv4"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "canonical IPv6"),
    (b"PROXY TCP6 ::1::2 ::1 1 2\r\n", "canonical IPv6"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 025 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "not a port"),
    (V2_SIGNATURE[:6] + b"X", "bad version 2 signature"),
    (v2(version=1), "with version 1"),
    (v2(command=0x2), "unknown command 0x2"),
    (v2(family=0x4), "unknown address family 0x4"),
    (v2(transport=0x2, body=inet4("1.2.3.4", "5.6.7.8", 1, 2)), "not a stream"),
    (v2(body=b"\0" * 11), r"fewer than its addresses need \(12\)"),
    (v2(family=0x2, body=b"\0" * 12), r"fewer than its addresses need \(36\)"),
    (v2(body=inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00"), "inside a TLV"),
    (v2(body=inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\x09ab"), "runs past"),
]


@pytest.mark.parametrize(("data", "reason"), INVALID)
def test_invalid_headers_say_why_whole_and_byte_by_byte(data: bytes, reason: str) -> None:
    for sizes in (None, [1]):
        with pytest.raises(ProxyHeaderError, match=reason):
            read(data + SMTP, sizes)


def test_garbage_is_refused_at_its_first_byte() -> None:
    # "abort the connection as soon as possible" (section 2.1): one byte that
    # cannot start a header is enough, no need to wait for a line or a timeout.
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderReader().receive_data(b"E")


def test_reasons_never_carry_control_bytes_into_the_log() -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        read(b"PROXY TCP4 \x1b[31m\x00 5.6.7.8 1 2\r\n")
    assert "\x1b" not in caught.value.reason and "\x00" not in caught.value.reason


# --- properties ---------------------------------------------------------------------------

_PIECES = [
    b"PROXY ",
    b"TCP4 ",
    b"TCP6 ",
    b"UNKNOWN",
    b"127.0.0.5 ",
    b"::1 ",
    b"25 ",
    b"65535",
    b"\r\n",
    b"\n",
    b" ",
    V2_SIGNATURE,
    b"\x21\x11\x00\x0c",
    b"\x20\x00\x00\x00",
    b"\x21\x21\x00\x24",
    b"\x01\x00\x02ab",
    b"\x7f\x00\x00\x05\x7f\x00\x00\x01\x9c\x40\x00\x19",
]
_inputs = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_PIECES) | st.binary(max_size=8), max_size=24).map(b"".join),
)
_sizes = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=12)


@FAST
@given(_inputs, _sizes)
def test_any_bytes_give_a_header_need_more_or_a_reason(data: bytes, sizes: list[int]) -> None:
    result = outcome(data, sizes)
    if isinstance(result, tuple) and result[0] == "error":
        assert isinstance(result[1], str) and result[1]
        return
    header, rest = read(data, sizes)
    if header is None:
        assert rest == b""
    else:
        assert data.endswith(rest)


@FAST
@given(_inputs, _sizes)
def test_the_outcome_does_not_depend_on_the_chunking(data: bytes, sizes: list[int]) -> None:
    assert outcome(data, sizes) == outcome(data) == outcome(data, [1])


@FAST
@given(
    st.sampled_from([data for data, _ in VALID]),
    st.binary(max_size=64),
    _sizes,
)
def test_valid_headers_in_any_chunking_leave_the_client_bytes_intact(
    header: bytes, after: bytes, sizes: list[int]
) -> None:
    expected, _ = read(header)
    assert read(header + after, sizes) == (expected, after)


def test_a_large_header_sent_byte_by_byte_is_examined_once_not_per_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A slow client: 64 KiB of v2 header one byte per read once meant 64 Ki
    # parses of a growing buffer (gigabytes copied), within one timeout.
    from blackhole.protocol import proxyheader

    calls = 0
    examine = proxyheader._examine

    def counted(buffer: bytes) -> object:
        nonlocal calls
        calls += 1
        return examine(buffer)

    monkeypatch.setattr(proxyheader, "_examine", counted)
    body = inet4("127.0.0.5", "127.0.0.1", 1, 25) + tlv(0x04, b"\0" * (65535 - 12 - 3))
    header, rest = read(v2(body=body) + SMTP, [1])
    assert header is not None and header.source == ("127.0.0.5", 1) and rest == SMTP
    assert calls <= 2 * 16 + 1
