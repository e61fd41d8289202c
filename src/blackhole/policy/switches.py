"""X-Blackhole-Mode / X-Blackhole-Delay header values, validated.

The grammar is the config file's (policy/modes.py); only the outcome of a bad
value differs: it is ignored (the message then follows the config), as the
classic server did, and delays over ``MAX_DELAY`` are capped, not refused.
"""

from __future__ import annotations

from blackhole.policy import modes
from blackhole.policy.modes import MAX_DELAY, Delay, Mode


def parse_mode(value: str | None) -> Mode | None:
    if value is None:
        return None
    try:
        return modes.parse_mode(value)
    except ValueError:
        return None


def parse_delay(value: str | None) -> Delay | None:
    """``N`` or ``A, B`` (also ``A-B``) seconds, capped at 60; None when invalid."""
    if value is None:
        return None
    try:
        low, high = modes.delay_bounds(value)
    except ValueError:
        return None
    if low > high:
        return None
    return Delay(min(low, MAX_DELAY), min(high, MAX_DELAY))
