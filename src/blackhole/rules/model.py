"""Rules as frozen values: what a rule matches, which matches act, what it does.

Every field holds a plain value (numbers, strings, tuples, enums), so that a
``Selection`` can be sent to a store in another process as it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from blackhole.protocol.hooks import Stage, TLSFault
from blackhole.protocol.replies import Reply
from blackhole.rules.values import Globs, IPNetwork

Source = Literal["file", "api"]


class Key(enum.StrEnum):
    """What ``every``, ``first``, ``after``, ``greylist`` and ``probability`` count by."""

    SERVER = "server"
    SESSION = "session"
    CLIENT = "client"
    SENDER = "sender"
    RECIPIENT = "recipient"
    MESSAGE = "message"
    TRIPLET = "triplet"


@dataclass(frozen=True, slots=True)
class Matchers:
    """RULES.md "Matchers": every one that is set must hold."""

    listener: int | str | None = None  # a port, "host:port", or a listener's name=
    client: tuple[IPNetwork, ...] | None = None
    tls: bool | None = None
    helo: Globs | None = None
    auth_user: Globs | None = None
    sender: Globs | None = None
    recipient: Globs | None = None
    header: tuple[tuple[str, Globs], ...] | None = None  # (lower-case name, globs)
    size: tuple[int | None, int | None] | None = None
    message: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """RULES.md "Selection": which of a rule's matches act (all set must agree)."""

    probability: float | None = None
    every: int | None = None
    first: int | None = None
    after: int | None = None
    greylist: float | None = None  # seconds
    window: tuple[float, float | None] | None = None  # seconds since the rule's start
    times: int | None = None
    key: Key = Key.SERVER

    @property
    def stateful(self) -> bool:
        """Whether deciding needs shared counts (a window needs only the clock)."""
        return (
            self.probability is not None
            or self.every is not None
            or self.first is not None
            or self.after is not None
            or self.greylist is not None
            or self.times is not None
        )


@dataclass(frozen=True, slots=True)
class Actions:
    """RULES.md "Actions"; defaults (greylist's 451, close's 421) are filled by the engine."""

    reply: Reply | None = None
    delay: tuple[float, float] | None = None  # seconds, low and high
    close: bool = False
    drop: bool = False
    reset: bool = False
    hang: bool = False
    tarpit: int | None = None  # bytes per second
    after_bytes: int = 0
    tls: TLSFault | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. ``fingerprint`` identifies its definition: a reload keeps the
    state (counts, greylist entries, spent) of rules whose fingerprint is
    unchanged. ``started`` is when an API rule was added (its window counts
    from there; file rules count from the server's start) and ``expires`` when
    its ``ttl`` runs out."""

    name: str
    stage: Stage
    matchers: Matchers
    selection: Selection
    actions: Actions
    source: Source
    fingerprint: str
    started: float | None = None
    expires: float | None = None
    line: int | None = None  # the [[rule]] header's line, for messages
    # Its keys and values as written (a TOML table, a JSON object), for
    # GET /rules; an API rule's ``ttl`` is not one of them.
    # (Lists among them: out of eq and hash, which the fingerprint stands for.)
    fields: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    @property
    def stateful(self) -> bool:
        """Whether deciding counts in the store shared by every worker: for its
        selection, or for a delay range, drawn from the shared match count
        (RULES.md: never from which worker took the connection)."""
        delay = self.actions.delay
        return self.selection.stateful or (delay is not None and delay[0] != delay[1])
