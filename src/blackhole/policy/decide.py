"""Choosing the final answer to a message, and how long to wait before it.

Precedence, first match wins (SPEC "Choosing the answer"): the flags of the
listener that accepted the connection, then the message's own X-Blackhole-*
headers, then the config file. Whether headers are read at all
(``dynamic_switch``) is decided in one place, the protocol core: it reports
no switch values when they are off, so there is nothing to re-check here.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Final

from blackhole.policy.modes import ACCEPT, BOUNCE, CLASSIC_RANDOM_ACCEPT, RANDOM, Delay, Mode
from blackhole.policy.switches import parse_delay, parse_mode
from blackhole.protocol.replies import BOUNCES, Reply, queued

# Bytes of the per-process id prefix: 32 bits, so that two of the processes
# of one server run (workers, their replacements) share one with a chance of
# about n*n / 2**33, whatever the seed.
_PREFIX_BYTES = 4
# The counter's six hex digits, as two halves of three: f"{n:06X}" for n < 2**24.
_HEX3: Final[tuple[str, ...]] = tuple(f"{n:03X}" for n in range(4096))
_TABLED: Final = 1 << 24


@dataclass(frozen=True, slots=True)
class Defaults:
    """The answer settings that apply to a connection before any header is read."""

    mode: Mode
    delay: Delay | None
    listener_mode: Mode | None = None
    listener_delay: Delay | None = None
    # Random mode: the share of accepts; the rest are the bounces, uniformly.
    random_accept: float = CLASSIC_RANDOM_ACCEPT


class Policy:
    """Pure decisions, driven by an injected ``random.Random`` (seed it to replay)."""

    __slots__ = ("_counter", "_prefix", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # A per-process prefix plus a counter: unique within the process and,
        # with overwhelming probability, across workers and restarts. The
        # prefix comes from os.urandom, never from ``rng``: with a ``seed``
        # every worker's rng starts alike, and ids drawn from it repeated
        # across workers. Ids are names, not decisions, so replaying a seed
        # still gives the same replies (only the ids differ).
        self._prefix = os.urandom(_PREFIX_BYTES).hex().upper()
        self._counter = 0

    def queue_id(self) -> str:
        """A fresh id for every message (the classic reused one per connection)."""
        self._counter += 1
        counter = self._counter
        if counter < _TABLED:
            # Two table lookups: formatting "06X" cost thousands of instructions.
            return self._prefix + _HEX3[counter >> 12] + _HEX3[counter & 0xFFF]
        return f"{self._prefix}{counter:06X}"

    def decide(
        self, defaults: Defaults, header_mode: str | None, header_delay: str | None
    ) -> tuple[Reply, float]:
        """(final reply, delay in seconds) for one message."""
        mode = defaults.listener_mode
        if mode is None:
            switched = None
            if header_mode is not None:
                switched = parse_mode(header_mode)
            mode = switched or defaults.mode
        delay = defaults.listener_delay
        if delay is None:
            switched_delay = None
            if header_delay is not None:
                switched_delay = parse_delay(header_delay)
            delay = switched_delay or defaults.delay
        if delay is None and mode is ACCEPT:
            return queued(self.queue_id()), 0.0  # the common case, kept short
        return self.reply_for(mode, defaults.random_accept), self.seconds(delay)

    def reply_for(self, mode: Mode, random_accept: float = CLASSIC_RANDOM_ACCEPT) -> Reply:
        if mode is RANDOM:
            mode = ACCEPT if self._rng.random() < random_accept else BOUNCE
        if mode is ACCEPT:
            return queued(self.queue_id())
        return self._rng.choice(BOUNCES)

    def seconds(self, delay: Delay | None) -> float:
        if delay is None:
            return 0.0
        if delay.low == delay.high:
            return delay.low
        return self._rng.uniform(delay.low, delay.high)
