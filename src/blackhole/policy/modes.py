"""Response modes and delays, the values the config and the policy share."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# The classic server capped every delay at 60 seconds so that a typo in a
# header cannot hold a connection for hours; we keep the cap.
MAX_DELAY = 60.0


class Mode(enum.StrEnum):
    """How the final reply to a message is chosen."""

    ACCEPT = "accept"
    BOUNCE = "bounce"
    RANDOM = "random"


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
