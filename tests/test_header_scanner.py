"""protocol.reader.HeaderScanner: the header section found the same way whatever the
reads, so the fast path for a section that comes whole in one read is checked
against the general one (fed in pieces), over generated content."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from blackhole.protocol.reader import HeaderScanner

_LINES = st.sampled_from(
    [
        b"From: <a@example.com>",
        b"Subject: hi",
        b"X-Blackhole-Mode: bounce",
        b" folded",
        b"",
        b"body text",
        b".dot",
    ]
)
_ENDS = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def contents(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(_LINES, _ENDS), max_size=12))
    return b"".join(line + end for line, end in lines)


def _scan(data: bytes, cuts: list[int]) -> tuple[bool, int, list[tuple[str, str]]]:
    scanner = HeaderScanner()
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > start:
            scanner.feed(data, start, cut)
            start = cut
    return scanner.done, scanner.end, scanner.fields()


@given(contents(), st.lists(st.integers(min_value=1, max_value=200), max_size=8))
def test_one_read_and_many_find_the_same_header_section(data: bytes, cuts: list[int]) -> None:
    pieces = [cut for cut in cuts if cut < len(data)]
    assert _scan(data, []) == _scan(data, pieces)
    assert _scan(data, []) == _scan(data, list(range(1, len(data))))  # a byte at a time


def test_the_usual_section_ends_after_its_crlf_blank_line() -> None:
    data = b"From: <a@x>\r\nSubject: s\r\n\r\nbody\r\n"
    scanner = HeaderScanner()
    scanner.feed(data)
    assert scanner.done and scanner.end == data.index(b"body")
    assert scanner.fields() == [("From", "<a@x>"), ("Subject", "s")]


def test_a_bare_lf_blank_line_before_a_crlf_one_ends_the_section() -> None:
    data = b"A: 1\n\nB: 2\r\n\r\nbody"
    scanner = HeaderScanner()
    scanner.feed(data)
    assert scanner.done and scanner.end == len(b"A: 1\n\n")
    assert scanner.fields() == [("A", "1")]


def test_switches_are_found_whatever_their_case() -> None:
    scanner = HeaderScanner()
    scanner.feed(b"x-BLACKHOLE-mode: bounce\r\nX-Blackhole-Delay: 2\r\n\r\n")
    assert scanner.switches() == ("bounce", "2")
    plain = HeaderScanner()
    plain.feed(b"Subject: blackhole-mode\r\n\r\n")
    assert plain.switches() == (None, None)


def test_a_bare_lf_blank_line_right_before_a_crlf_one_ends_the_section() -> None:
    data = b"A: 1\n\n\r\nbody"
    whole = _scan(data, [])
    assert whole == (True, len(b"A: 1\n\n"), [("A", "1")])
    assert whole == _scan(data, list(range(1, len(data))))
