"""X-Blackhole-Mode / X-Blackhole-Delay header values, validated.

Invalid values are ignored (the message then follows the config), as the
classic server did; delays are capped at ``MAX_DELAY``.
"""

from __future__ import annotations

import re

from blackhole.policy.modes import MAX_DELAY, Delay, Mode


def parse_mode(value: str | None) -> Mode | None:
    if value is None:
        return None
    try:
        return Mode(value.strip().lower())
    except ValueError:
        return None


# Plain decimal seconds. float() alone would also take "1e3", "1_0", "inf",
# "nan", "+5" and non-ASCII digits, none of which a header should mean.
_NUMBER = r"\s*([0-9]+(?:\.[0-9]+)?)\s*"
_DELAY = re.compile(rf"{_NUMBER}(?:[,-]{_NUMBER})?")


def parse_delay(value: str | None) -> Delay | None:
    """``N`` or ``A, B`` (also ``A-B``) seconds; None when invalid."""
    if value is None:
        return None
    m = _DELAY.fullmatch(value)
    if m is None:
        return None
    low = float(m.group(1))
    high = low if m.group(2) is None else float(m.group(2))
    if low > high:
        return None
    return Delay(min(low, MAX_DELAY), min(high, MAX_DELAY))
