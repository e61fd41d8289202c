"""X-Blackhole-Mode / X-Blackhole-Delay header values, validated.

Invalid values are ignored (the message then follows the config), as the
classic server did; delays are capped at ``MAX_DELAY``.
"""

from __future__ import annotations

import math

from blackhole.policy.modes import MAX_DELAY, Delay, Mode


def parse_mode(value: str | None) -> Mode | None:
    if value is None:
        return None
    try:
        return Mode(value.strip().lower())
    except ValueError:
        return None


def parse_delay(value: str | None) -> Delay | None:
    """``N`` or ``A, B`` (also ``A-B``) seconds; None when invalid."""
    if value is None:
        return None
    text = value.strip()
    sep = "," if "," in text else ("-" if "-" in text.lstrip("-") else None)
    parts = [p.strip() for p in text.split(sep, 1)] if sep else [text]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    if not all(math.isfinite(n) and n >= 0 for n in numbers):
        return None
    low, high = (numbers[0], numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
    if low > high:
        return None
    return Delay(min(low, MAX_DELAY), min(high, MAX_DELAY))
