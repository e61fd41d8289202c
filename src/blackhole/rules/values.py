"""Parsers for the values a rule's keys take: replies, durations, ranges, globs.

Each function takes what TOML or JSON gave and returns a plain value, or
raises ``ValueError`` with a sentence that says what is wrong and what is
expected; the rule parser adds where (file:line or rule name, and key).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re
from dataclasses import dataclass

from blackhole.protocol.replies import Reply

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets, code and CRLF included.
MAX_REPLY_LINE = 512
MAX_DELAY = 600.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# re.ASCII: \d alone also takes other scripts' digits ("５m").
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])", re.ASCII)
# RFC 3463 section 2: class "." subject "." detail, subject and detail 1-3 digits.
_REPLY = re.compile(
    r"(\d{3})(?: +(\d)\.(\d{1,3})\.(\d{1,3})(?=$| ))?(?: +(.*))?", re.DOTALL | re.ASCII
)
# RFC 5321 4.2: textstring = 1*( %d09 / %d32-126 ).
_TEXT = re.compile(r"[\t\x20-\x7e]*")
# ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses,
# and a count of more than 20 digits is no count of bytes or messages.
_COUNT = re.compile(r"[0-9]{1,20}")


# A reply needs some text after the code (RFC 5321 4.2: "Reply-line ... [ textstring ]"
# is optional, but many clients log it): used when a rule gives only a code.
_DEFAULT_TEXT = {2: "OK", 3: "Go ahead", 4: "Temporary failure", 5: "Failed"}


def is_number(value: object) -> bool:
    # TOML and JSON both have inf and nan; neither is a usable number of seconds.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def duration(value: object) -> float:
    """``"300s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number of seconds."""
    if is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f'{value!r} is not a duration (use e.g. "300s", "5m", "2h", "1d")')
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    return seconds


def window(value: object) -> tuple[float, float | None]:
    """``"60s-120s"`` or ``"30s-"`` (open end): start and end in seconds."""
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(f'{value!r} is not a window (use "60s-120s" or "30s-")')
    start_text, end_text = (part.strip() for part in value.split("-"))
    start = duration(start_text) if start_text else 0.0
    end = duration(end_text) if end_text else None
    if end is not None and end <= start:
        raise ValueError(f"{value!r} ends before it starts")
    return start, end


def _count(text: str, what: str) -> int:
    if not _COUNT.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not a whole number of {what}")
    return int(text)


def size_range(value: object) -> tuple[int | None, int | None]:
    """``"MIN-MAX"`` bytes, either end open (``"1000-"``, ``"-5000"``)."""
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(f'{value!r} is not a size range (use "MIN-MAX", e.g. "1000-50000")')
    low_text, high_text = (part.strip() for part in value.split("-"))
    low = _count(low_text, "bytes") if low_text else None
    high = _count(high_text, "bytes") if high_text else None
    if low is None and high is None:
        raise ValueError(f"{value!r} has neither a minimum nor a maximum")
    if low is not None and high is not None and high < low:
        raise ValueError(f"{value!r}: the maximum is below the minimum")
    return low, high


def message_range(value: object) -> tuple[int, int]:
    """The n-th message of a session: ``2`` or ``"2-5"`` (counted from 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif isinstance(value, str):
        parts = [part.strip() for part in value.split("-")]
        if len(parts) > 2:
            raise ValueError(f'{value!r} is not a message number or range (use 2 or "2-5")')
        low = _count(parts[0], "messages")
        high = _count(parts[-1], "messages")
    else:
        raise ValueError(f'{value!r} is not a message number or range (use 2 or "2-5")')
    if low < 1 or high < low:
        raise ValueError(f"{value!r}: messages are counted from 1, low to high")
    return low, high


def delay(value: object) -> tuple[float, float]:
    """Seconds before the reply: ``3`` or ``"2-5"``, at most 600."""
    if is_number(value):
        low = high = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        parts = [part.strip() for part in value.split("-")]
        try:
            if len(parts) > 2 or not value.isascii():  # float() reads "５" too
                raise ValueError
            low, high = float(parts[0]), float(parts[-1])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError
        except ValueError:
            raise ValueError(f'{value!r} is not a delay (use seconds, 3 or "2-5")') from None
    else:
        raise ValueError(f'{value!r} is not a delay (use seconds, 3 or "2-5")')
    if low < 0:
        raise ValueError(f"{value!r} is negative")
    if high < low:
        raise ValueError(f"{value!r}: the upper end is below the lower end")
    if high > MAX_DELAY:
        raise ValueError(f"{value!r} is over the maximum of {MAX_DELAY:g} seconds")
    return low, high


def reply(value: object) -> Reply:
    """``"CODE [X.Y.Z] text"`` into a Reply; a ``\\n`` in the text starts a new line.

    The code is 200-599 (RFC 5321 4.2: 2yz-5yz are the replies a server may
    give); the enhanced code's class must be the code's first digit (RFC 3463
    section 2), and a missing one is filled in as X.0.0 (3xx have none: RFC
    3463 defines no class 3). Text is printable ASCII and every line fits in
    512 octets, so a rule can never make the server speak broken SMTP.
    """
    if not isinstance(value, str):
        raise ValueError(f'{value!r} is not a reply (use "CODE [X.Y.Z] text")')
    m = _REPLY.fullmatch(value.strip(" "))
    if m is None:
        raise ValueError(f'{value!r} is not a reply (use "CODE [X.Y.Z] text")')
    code = int(m.group(1))
    if not 200 <= code <= 599:
        raise ValueError(f"code {code} is not between 200 and 599")
    klass = code // 100
    if m.group(2) is not None:
        if int(m.group(2)) != klass:
            raise ValueError(
                f"enhanced code {m.group(2)}.{m.group(3)}.{m.group(4)} does not match"
                f" reply code {code} (its class must be {klass})"
            )
        if klass == 3:
            raise ValueError(f"a {code} reply takes no enhanced code (RFC 3463 has no class 3)")
        enhanced: str | None = f"{klass}.{int(m.group(3))}.{int(m.group(4))}"
    else:
        enhanced = None if klass == 3 else f"{klass}.0.0"
    lines = (m.group(5) or _DEFAULT_TEXT[klass]).split("\n")
    for line in lines:
        if not _TEXT.fullmatch(line):
            raise ValueError(f"{value!r}: reply text must be printable ASCII (no CR or controls)")
    made = Reply(code, enhanced, lines)
    longest = max(len(line) for line in made.wire.split(b"\r\n")) + 2
    if longest > MAX_REPLY_LINE:
        raise ValueError(
            f"a reply line would be {longest} octets, over the limit of {MAX_REPLY_LINE}"
            " (RFC 5321 4.5.3.1.5)"
        )
    return made


@dataclass(frozen=True, slots=True)
class Globs:
    """Shell-style patterns, case-insensitive; holds when any pattern does."""

    patterns: tuple[str, ...]
    regex: re.Pattern[str]

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None


def _check_brackets(pattern: str) -> None:
    # fnmatch quietly takes an unclosed "[" as a literal; a user who typed one
    # meant a set, so it is an error here.
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            close = pattern.find("]", j)
            if close < 0:
                raise ValueError(f"glob {pattern!r} has a '[' without its ']'")
            i = close
        i += 1


def globs(value: object) -> Globs:
    """A glob or a list of globs (``""`` matches only the empty value, the null sender)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ValueError(f"{value!r} is not a glob or a list of globs")
    patterns: tuple[str, ...] = tuple(items)
    for pattern in patterns:
        _check_brackets(pattern)
    joined = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)
    return Globs(patterns, re.compile(joined, re.IGNORECASE | re.DOTALL))


def networks(value: object) -> tuple[IPNetwork, ...]:
    """An IP address or CIDR, or a list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"{value!r} is not an IP address or CIDR (or a list of them)")
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR") from None
    return tuple(out)
