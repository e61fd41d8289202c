"""The values a rule's keys take: replies, durations, windows, ranges, globs, networks."""

from __future__ import annotations

import ipaddress

import pytest

from blackhole.protocol.replies import Reply
from blackhole.rules import values


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("452 4.2.2 Mailbox full", b"452 4.2.2 Mailbox full\r\n"),
        ("451 Try later", b"451 4.0.0 Try later\r\n"),  # enhanced filled from the code
        ("550", b"550 5.0.0 Failed\r\n"),  # text filled too
        ("250 2.1.5 OK", b"250 2.1.5 OK\r\n"),
        ("221 2.0.0 Bye", b"221 2.0.0 Bye\r\n"),
        ("354 Go on", b"354 Go on\r\n"),  # RFC 3463 has no class 3
        ("421 4.3.2 one\ntwo", b"421-4.3.2 one\r\n421 4.3.2 two\r\n"),
        ("599 5.999.999 edge", b"599 5.999.999 edge\r\n"),
        ("200 2.0.0 low edge", b"200 2.0.0 low edge\r\n"),
    ],
)
def test_reply_parses(text: str, wire: bytes) -> None:
    assert values.reply(text).wire == wire


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("600 5.0.0 too high", "code 600 is not between 200 and 599"),
        ("199 low", "code 199 is not between 200 and 599"),
        ("250 5.1.1 wrong class", "enhanced code 5.1.1 does not match reply code 250 (its class must be 2)"),  # noqa: E501
        ("451 5.7.1 wrong class", "enhanced code 5.7.1 does not match reply code 451 (its class must be 4)"),  # noqa: E501
        ("354 3.0.0 x", "a 354 reply takes no enhanced code (RFC 3463 has no class 3)"),
        ("25 short", "'25 short' is not a reply (use \"CODE [X.Y.Z] text\")"),
        ("OK", "'OK' is not a reply (use \"CODE [X.Y.Z] text\")"),
        (452, "452 is not a reply (use \"CODE [X.Y.Z] text\")"),
        ("\uff14\uff15\uff10 busy", "'４５０ busy' is not a reply (use \"CODE [X.Y.Z] text\")"),
        ("450 4.2.0 a\rb", "'450 4.2.0 a\\rb': reply text must be printable ASCII (no CR or controls)"),  # noqa: E501
        ("450 4.2.0 caf\u00e9", "'450 4.2.0 café': reply text must be printable ASCII (no CR or controls)"),  # noqa: E501
        (
            "450 4.2.0 " + "x" * 501,
            "a reply line would be 513 octets, over the limit of 512 (RFC 5321 4.5.3.1.5)",
        ),
    ],
)  # fmt: skip
def test_reply_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        values.reply(value)
    assert str(info.value) == message


def test_reply_line_of_exactly_512_octets_is_allowed() -> None:
    made = values.reply("450 4.2.0 " + "x" * 500)
    assert len(made.wire) == 512
    assert isinstance(made, Reply)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("300s", 300.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), (30, 30.0), ("1.5m", 90.0)],
)
def test_duration(value: object, seconds: float) -> None:
    assert values.duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 minutes", '\'5 minutes\' is not a duration (use e.g. "300s", "5m", "2h", "1d")'),
        ("5w", '\'5w\' is not a duration (use e.g. "300s", "5m", "2h", "1d")'),
        ("\uff15m", '\'５m\' is not a duration (use e.g. "300s", "5m", "2h", "1d")'),
        (-3, "-3 is negative"),
        (True, 'True is not a duration (use e.g. "300s", "5m", "2h", "1d")'),
    ],
)
def test_duration_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        values.duration(value)
    assert str(info.value) == message


def test_window() -> None:
    assert values.window("60s-120s") == (60.0, 120.0)
    assert values.window("30s-") == (30.0, None)
    assert values.window("-2m") == (0.0, 120.0)
    for bad, message in [
        ("120s-60s", "'120s-60s' ends before it starts"),
        ("60s", '\'60s\' is not a window (use "60s-120s" or "30s-")'),
        ("1m-2x", '\'2x\' is not a duration (use e.g. "300s", "5m", "2h", "1d")'),
    ]:
        with pytest.raises(ValueError) as info:
            values.window(bad)
        assert str(info.value) == message


def test_size_range() -> None:
    assert values.size_range("1000-50000") == (1000, 50000)
    assert values.size_range("1000-") == (1000, None)
    assert values.size_range("-5000") == (None, 5000)
    for bad, message in [
        ("-", "'-' has neither a minimum nor a maximum"),
        ("9-1", "'9-1': the maximum is below the minimum"),
        ("1k-2k", "'1k' is not a whole number of bytes"),
        (500, '500 is not a size range (use "MIN-MAX", e.g. "1000-50000")'),
    ]:
        with pytest.raises(ValueError) as info:
            values.size_range(bad)
        assert str(info.value) == message


def test_message_range() -> None:
    assert values.message_range(2) == (2, 2)
    assert values.message_range("2-5") == (2, 5)
    assert values.message_range("3") == (3, 3)
    for bad, message in [
        (0, "0: messages are counted from 1, low to high"),
        ("5-2", "'5-2': messages are counted from 1, low to high"),
        ("a-b", "'a' is not a whole number of messages"),
        ("1-2-3", "'1-2-3' is not a message number or range (use 2 or \"2-5\")"),
        (1.5, '1.5 is not a message number or range (use 2 or "2-5")'),
    ]:
        with pytest.raises(ValueError) as info:
            values.message_range(bad)
        assert str(info.value) == message


def test_delay() -> None:
    assert values.delay(3) == (3.0, 3.0)
    assert values.delay("2-5") == (2.0, 5.0)
    assert values.delay(600) == (600.0, 600.0)
    for bad, message in [
        (-1, "-1 is negative"),
        ("5-2", "'5-2': the upper end is below the lower end"),
        (601, "601 is over the maximum of 600 seconds"),
        ("soon", "'soon' is not a delay (use seconds, 3 or \"2-5\")"),
        (False, 'False is not a delay (use seconds, 3 or "2-5")'),
        ("1-\uff15", "'1-５' is not a delay (use seconds, 3 or \"2-5\")"),  # full-width 5
    ]:
        with pytest.raises(ValueError) as info:
            values.delay(bad)
        assert str(info.value) == message


def test_globs_are_case_insensitive_and_any_of_a_list() -> None:
    g = values.globs(["*@full.example", "postmaster@*"])
    assert g.matches("Someone@FULL.example")
    assert g.matches("postmaster@x.example")
    assert not g.matches("someone@empty.example")
    assert values.globs("user?@[ab].example").matches("user1@b.example")
    assert not values.globs("user?@[ab].example").matches("user1@c.example")
    assert values.globs("[!x]*").matches("abc")
    assert values.globs("[]]x").matches("]x")  # "]" first in a set is a member


def test_empty_glob_is_the_null_sender_only() -> None:
    g = values.globs("")
    assert g.matches("")
    assert not g.matches("a@b")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a[b", "glob 'a[b' has a '[' without its ']'"),
        (["ok", "[!"], "glob '[!' has a '[' without its ']'"),
        ([], "[] is not a glob or a list of globs"),
        (5, "5 is not a glob or a list of globs"),
    ],
)
def test_globs_refuse(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        values.globs(value)
    assert str(info.value) == message


def test_networks() -> None:
    assert values.networks("192.0.2.7") == (ipaddress.ip_network("192.0.2.7/32"),)
    assert values.networks(["10.0.0.0/8", "2001:db8::/32"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    with pytest.raises(ValueError, match=r"^'10.0.0.300' is not an IP address or CIDR$"):
        values.networks("10.0.0.300")
    with pytest.raises(ValueError, match=r"is not an IP address or CIDR \(or a list of them\)"):
        values.networks(7)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "inf", "nan-1", "1-inf"])
def test_non_finite_numbers_are_not_seconds(bad: object) -> None:
    # TOML has inf and nan literals: a nan delay would compare false with every
    # limit and slip through.
    with pytest.raises(ValueError):
        values.delay(bad)
    with pytest.raises(ValueError):
        values.duration(bad)
