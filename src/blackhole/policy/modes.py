"""Response modes and delays: the values, and the one grammar that reads them.

The config file (``mode``, ``delay``, the listener flags) and the
X-Blackhole-* headers share this grammar. They differ only in what a bad
value means: the config reports it (``parse_mode``/``parse_delay`` raise
``ValueError`` with a phrase that reads after the key name), a header is
ignored or capped (policy/switches.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

# The classic server capped every delay at 60 seconds so that a typo in a
# header cannot hold a connection for hours; we keep the cap.
MAX_DELAY = 60.0
# Random mode, classically: accept or one of the ten bounces, all equally likely.
CLASSIC_RANDOM_ACCEPT = 1 / 11


class Mode(enum.StrEnum):
    """How the final reply to a message is chosen."""

    ACCEPT = "accept"
    BOUNCE = "bounce"
    RANDOM = "random"


# The members again, as module constants: on Python 3.11 reading a member
# through its class (Mode.ACCEPT) goes through EnumType.__getattr__'s slow
# slot, and the policy reads one for every message.
ACCEPT: Final = Mode.ACCEPT
BOUNCE: Final = Mode.BOUNCE
RANDOM: Final = Mode.RANDOM


@dataclass(frozen=True, slots=True)
class Delay:
    """A delay in seconds: fixed when ``low == high``, else uniform in [low, high]."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high <= MAX_DELAY:
            raise ValueError(f"delay must satisfy 0 <= low <= high <= {MAX_DELAY:g}")

    @classmethod
    def fixed(cls, seconds: float) -> Delay:
        return cls(seconds, seconds)

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.low:g}"
        return f"{self.low:g}-{self.high:g}"


def parse_mode(text: str) -> Mode:
    """``accept``, ``bounce`` or ``random``, in any letter case, spaces around ignored."""
    try:
        return Mode(text.strip().lower())
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise ValueError(f"must be one of {choices}, not {text!r}") from None


# Plain decimal seconds: digits with an optional fraction. No sign, no
# exponent, no "inf"/"nan", no "_" and no non-ASCII digits (float() takes all
# of those), so "-5" is reported as negative instead of being taken for a range.
_SECONDS = r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+"
# "N", or a range "A-B" (the config form) or "A, B" (the classic header form).
_DELAY = re.compile(rf"\s*({_SECONDS})\s*(?:([-,])\s*({_SECONDS})\s*)?", re.ASCII)


def delay_bounds(text: str, *, allow_comma: bool = True) -> tuple[float, float]:
    """The two ends of a delay ``N`` / ``A-B`` / ``A, B``, as written (not yet checked).

    ``allow_comma`` is off inside a ``listen`` value, where a comma already
    separates listeners. Raises ``ValueError`` for text that is not a delay.
    """
    forms = "N or A-B" + (" (or A, B)" if allow_comma else "")
    match = _DELAY.fullmatch(text)
    if match is None or (match.group(2) == "," and not allow_comma):
        if text.strip().startswith("-"):
            raise ValueError(f"cannot be negative: {text!r}")
        raise ValueError(f"must be seconds from 0 to {MAX_DELAY:g}, as {forms}, not {text!r}")
    low = float(match.group(1))
    return low, low if match.group(3) is None else float(match.group(3))


def parse_delay(text: str, *, allow_comma: bool = True) -> Delay:
    """Seconds ``N``, or a range ``A-B`` (or ``A, B``), each from 0 to 60; strict."""
    low, high = delay_bounds(text, allow_comma=allow_comma)
    for seconds in (low, high):
        if seconds > MAX_DELAY:
            raise ValueError(f"{seconds:g} seconds is over the maximum of {MAX_DELAY:g}")
    if low > high:
        raise ValueError(f"range {text.strip()!r} runs backwards; write the smaller number first")
    return Delay(low, high)
