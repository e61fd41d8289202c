"""Choosing the final answer to a message, and how long to wait before it.

Precedence, first match wins (SPEC "Choosing the answer"): the flags of the
listener that accepted the connection, then the message's own X-Blackhole-*
headers, then the config file. Whether headers are read at all
(``dynamic_switch``) is decided in one place, the protocol core: it reports
no switch values when they are off, so there is nothing to re-check here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from blackhole.policy.modes import Delay, Mode
from blackhole.policy.switches import parse_delay, parse_mode
from blackhole.protocol.replies import BOUNCES, Reply, queued

_ID_ALPHABET = "0123456789ABCDEF"


@dataclass(frozen=True, slots=True)
class Defaults:
    """The answer settings that apply to a connection before any header is read."""

    mode: Mode
    delay: Delay | None
    listener_mode: Mode | None = None
    listener_delay: Delay | None = None


class Policy:
    """Pure decisions, driven by an injected ``random.Random`` (seed it to replay)."""

    __slots__ = ("_counter", "_prefix", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # A per-process prefix plus a counter: unique within the process and,
        # with overwhelming probability, across workers and restarts.
        self._prefix = "".join(rng.choice(_ID_ALPHABET) for _ in range(6))
        self._counter = 0

    def queue_id(self) -> str:
        """A fresh id for every message (the classic reused one per connection)."""
        self._counter += 1
        return f"{self._prefix}{self._counter:06X}"

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
        if delay is None and mode is Mode.ACCEPT:
            return queued(self.queue_id()), 0.0  # the common case, kept short
        return self.reply_for(mode), self.seconds(delay)

    def reply_for(self, mode: Mode) -> Reply:
        if mode is Mode.ACCEPT:
            return queued(self.queue_id())
        if mode is Mode.BOUNCE:
            return self._rng.choice(BOUNCES)
        # random: accept or one of the bounces, uniformly.
        pick = self._rng.randrange(len(BOUNCES) + 1)
        return queued(self.queue_id()) if pick == len(BOUNCES) else BOUNCES[pick]

    def seconds(self, delay: Delay | None) -> float:
        if delay is None:
            return 0.0
        if delay.low == delay.high:
            return delay.low
        return self._rng.uniform(delay.low, delay.high)
