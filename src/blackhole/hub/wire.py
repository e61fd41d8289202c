"""What a worker and the hub say to each other over the hub socket.

Both ends are processes of one program on a private UNIX socket (mode 0700
directory), so messages are pickled dataclasses framed like the supervisor's
channel (``supervisor.messages.encode`` / ``FrameReader``). Requests carry an
id so that a worker pipelines them and matches answers out of order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from blackhole.rules.store import Answer, Ask

JSON = dict[str, Any]

# --- worker -> hub ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a connection: which worker this is."""

    worker: int
    pid: int


@dataclass(frozen=True, slots=True)
class Decide:
    id: int
    ask: Ask


@dataclass(frozen=True, slots=True)
class Query:
    """``acted`` (spent rules) or ``reset`` (all rule state), for ``Store``'s other methods."""

    id: int
    what: Literal["acted", "reset"]


@dataclass(frozen=True, slots=True)
class AckRules:
    version: int


@dataclass(frozen=True, slots=True)
class Record:
    """One message record for ``GET /messages`` (fire and forget)."""

    record: JSON


# --- hub -> worker ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    id: int
    answer: Answer


@dataclass(frozen=True, slots=True)
class Refused:
    """The store could not decide (Redis unreachable): the worker answers ``451 4.3.0``."""

    id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Result:
    id: int
    value: object


@dataclass(frozen=True, slots=True)
class ApiRule:
    """An API rule as posted: the worker parses it as the hub did, with the same
    ``started`` (its window and ttl count from there), to the same ``Rule``."""

    fields: JSON
    ttl: float | None
    started: float


@dataclass(frozen=True, slots=True)
class ApiRules:
    """Every API rule in force, newest first; the worker answers ``AckRules``."""

    version: int
    rules: tuple[ApiRule, ...]
    # (rule name, counter slot) of every rule in force, file and API
    # (observe.ruleslots): what a worker counts a rule's actions and delays in.
    slots: tuple[tuple[str, int], ...] = ()
