"""The listen / tls_listen value syntax, and the mode and delay values it shares."""

from __future__ import annotations

import pytest

from blackhole.config.domain import is_domain
from blackhole.config.listen import (
    ListenError,
    parse_address,
    parse_delay,
    parse_listen,
    parse_mode,
)
from blackhole.config.model import Listener
from blackhole.policy.modes import Delay, Mode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":25", ("0.0.0.0", 25)),  # classic: empty address = every IPv4 address
        (":::25", ("::", 25)),  # classic: "::" = every IPv6 address
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("0.0.0.0:2525", ("0.0.0.0", 2525)),
        ("[::1]:25", ("::1", 25)),
        ("[::]:587", ("::", 587)),
        ("::1:25", ("::1", 25)),  # bare IPv6: the last colon starts the port
        ("fe80::1:465", ("fe80::1", 465)),
        ("[2001:db8:0:0::1]:25", ("2001:db8::1", 25)),  # compressed form
        ("localhost:25", ("localhost", 25)),
        ("MX.Example.test:25", ("mx.example.test", 25)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_parse_address_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "no port; write HOST:PORT, or :PORT for every IPv4 address"),
        ("25", "no port; write HOST:PORT, or :PORT for every IPv4 address"),
        (":65536", "port must be from 0 to 65535, not 65536"),
        (":smtp", "port must be a number from 0 to 65535, not 'smtp'"),
        (":", "port must be a number from 0 to 65535, not ''"),
        (":-1", "port must be a number from 0 to 65535, not '-1'"),
        ("127.0.0.1:²", "port must be a number from 0 to 65535, not '²'"),
        ("300.1.1.1:25", "'300.1.1.1' is not a valid IPv4 address"),
        ("bad_host:25", "'bad_host' is not an IP address or a host name"),
        ("-bad:25", "'-bad' is not an IP address or a host name"),
        ("*:25", "'*' is not an IP address or a host name"),
        ("[::1]25", "a bracketed IPv6 address needs the form [ADDR]:PORT"),
        ("[::1:25", "a bracketed IPv6 address needs the form [ADDR]:PORT"),
        (
            "[nope]:25",
            "'nope' is not a valid IPv6 address (write IPv6 as [ADDR]:PORT or ADDR:PORT)",
        ),
        (
            "::25",  # one colon short of ":::25"
            "':' is not a valid IPv6 address (write IPv6 as [ADDR]:PORT or ADDR:PORT)",
        ),
    ],
)
def test_parse_address_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_address(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("localhost", True),
        ("mx.example.test", True),
        ("mx.example.test.", False),  # RFC 5321 Domain: no trailing dot
        ("1.example", True),
        ("a-b.c", True),
        ("-a.c", False),
        ("a-.c", False),
        ("a..c", False),
        ("", False),
        ("a" * 64 + ".test", False),
        (".".join(["a" * 63] * 4), True),  # 255 octets, RFC 5321 section 4.5.3.1.2
        (("a" * 63 + ".") * 4 + "test", False),  # over 255 octets
        ("under_score", False),
    ],
)
def test_is_domain(name: str, ok: bool) -> None:
    assert is_domain(name) is ok


def test_listen_host_may_end_with_a_dot() -> None:
    assert parse_address("mx.example.test.:25") == ("mx.example.test.", 25)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Delay(0, 0)),
        ("5", Delay(5, 5)),
        ("2.5", Delay(2.5, 2.5)),
        (".5", Delay(0.5, 0.5)),
        ("60", Delay(60, 60)),
        ("1-5", Delay(1, 5)),
        (" 1 - 5 ", Delay(1, 5)),
        ("1, 5", Delay(1, 5)),
        ("3-3", Delay(3, 3)),
    ],
)
def test_parse_delay_accepts(text: str, expected: Delay) -> None:
    assert parse_delay(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("61", "61 seconds is over the maximum of 60"),
        ("1-61", "61 seconds is over the maximum of 60"),
        ("-5", "cannot be negative: '-5'"),
        ("5-1", "range '5-1' runs backwards; write the smaller number first"),
        ("soon", "must be seconds from 0 to 60, as N or A-B (or A, B), not 'soon'"),
        ("1-", "must be seconds from 0 to 60, as N or A-B (or A, B), not '1-'"),
        ("inf", "must be seconds from 0 to 60, as N or A-B (or A, B), not 'inf'"),
        ("nan", "must be seconds from 0 to 60, as N or A-B (or A, B), not 'nan'"),
        ("1e1", "must be seconds from 0 to 60, as N or A-B (or A, B), not '1e1'"),
    ],
)
def test_parse_delay_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_delay(text)
    assert str(caught.value) == message


def test_parse_delay_without_comma_form() -> None:
    with pytest.raises(ValueError, match=r"^must be seconds from 0 to 60, as N or A-B, not '1,5'$"):
        parse_delay("1,5", allow_comma=False)


@pytest.mark.parametrize("text", ["accept", "ACCEPT", " Bounce ", "random"])
def test_parse_mode_any_case(text: str) -> None:
    assert parse_mode(text) is Mode(text.strip().lower())


def test_parse_mode_rejects() -> None:
    with pytest.raises(ValueError, match=r"^must be one of accept, bounce, random, not 'drop'$"):
        parse_mode("drop")


def test_parse_listen_classic_example() -> None:
    listeners = parse_listen(":25, :::25, :587 mode=bounce, :::587 delay=10")
    assert listeners == (
        Listener("0.0.0.0", 25),
        Listener("::", 25),
        Listener("0.0.0.0", 587, mode=Mode.BOUNCE),
        Listener("::", 587, delay=Delay(10, 10)),
    )


def test_parse_listen_flags_together_and_range() -> None:
    (listener,) = parse_listen("127.0.0.1:2525   mode=Random   delay=1-5")
    assert listener == Listener("127.0.0.1", 2525, mode=Mode.RANDOM, delay=Delay(1, 5))


def test_parse_listen_allows_spaces_around_equals() -> None:
    (listener,) = parse_listen(":25 mode = bounce delay =2")
    assert listener == Listener("0.0.0.0", 25, mode=Mode.BOUNCE, delay=Delay(2, 2))


def test_parse_listen_tls_marks_listeners() -> None:
    listeners = parse_listen(":465, [::1]:465", tls=True)
    assert [(x.host, x.tls) for x in listeners] == [("0.0.0.0", True), ("::1", True)]


def test_parse_listen_reports_every_problem_at_once() -> None:
    value = (
        ":25 mode=drop delay=99, localhost, :26 speed=1, :27 mode=accept mode=bounce,"
        " :28 bounce, :29 delay=1,5"
    )
    with pytest.raises(ListenError) as caught:
        parse_listen(value)
    assert caught.value.problems == [
        "entry ':25 mode=drop delay=99': mode must be one of accept, bounce, random, not 'drop'",
        "entry ':25 mode=drop delay=99': delay 99 seconds is over the maximum of 60",
        "entry 'localhost': no port; write HOST:PORT, or :PORT for every IPv4 address",
        "entry ':26 speed=1': unknown flag 'speed'; the flags are mode=MODE, delay=N or A-B,"
        " name=NAME, proxy=yes|no, cert=PATH, key=PATH, socket_mode=MODE and starttls=yes|no",
        "entry ':27 mode=accept mode=bounce': mode is given twice",
        "entry ':28 bounce': 'bounce' is not a flag; flags look like mode=bounce",
        "entry '5': is not an address; a comma starts a new listener, so write a delay range"
        " as delay=A-B",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (":25,", "has an empty entry at the end (a stray comma?)"),
        ("25", "entry '25': no port; write HOST:PORT, or :PORT for every IPv4 address"),
        (":25,, :26", "has an empty entry at position 2 (a stray comma?)"),
        ("", "has an empty entry at the end (a stray comma?)"),
    ],
)
def test_parse_listen_empty_entries(value: str, message: str) -> None:
    with pytest.raises(ListenError) as caught:
        parse_listen(value)
    assert caught.value.problems == [message]


def test_name_flag() -> None:
    assert parse_listen(":25 name=mx-1.a_b, :26 mode=bounce name=bad") == (
        Listener("0.0.0.0", 25, name="mx-1.a_b"),
        Listener("0.0.0.0", 26, mode=Mode.BOUNCE, name="bad"),
    )
    assert parse_listen(":24 name=lda", lmtp=True) == (
        Listener("0.0.0.0", 24, lmtp=True, name="lda"),
    )


@pytest.mark.parametrize("value", ["", "x/y", "é", "a" * 65, "a=b"])
def test_bad_names_are_refused(value: str) -> None:
    with pytest.raises(ListenError) as caught:
        parse_listen(f":25 name={value}")
    assert "name must be 1 to 64 letters" in str(caught.value)


def test_proxy_flag_on_every_kind_of_listener() -> None:
    assert parse_listen(":25 proxy=yes, :26 proxy=no mode=bounce, :27") == (
        Listener("0.0.0.0", 25, proxy=True),
        Listener("0.0.0.0", 26, mode=Mode.BOUNCE),
        Listener("0.0.0.0", 27),
    )
    assert parse_listen(":465 proxy=yes", tls=True) == (
        Listener("0.0.0.0", 465, tls=True, proxy=True),
    )
    assert parse_listen(":24 proxy=yes", lmtp=True) == (
        Listener("0.0.0.0", 24, lmtp=True, proxy=True),
    )


@pytest.mark.parametrize("value", ["", "true", "YES", "1", "on"])
def test_bad_proxy_values_are_refused(value: str) -> None:
    with pytest.raises(ListenError) as caught:
        parse_listen(f":25 proxy={value}")
    assert caught.value.problems == [
        f"entry ':25 proxy={value}': proxy must be yes or no, not {value!r}"
    ]
