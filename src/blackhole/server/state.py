"""State shared by the sessions of one worker: policy, statistics, session set."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from blackhole.policy.decide import Policy
from blackhole.server.idle import IdleWheel
from blackhole.server.observing import Observation

if TYPE_CHECKING:
    from blackhole.server.rulestate import WorkerRules

# The loggers of the sessions' own lines (server.answers, server.endings)
# and of the rules' (server.steering).
_session_log = logging.getLogger("blackhole.session")
_rules_log = logging.getLogger("blackhole.rules")


class Session(Protocol):
    """What stopping a worker, and a change of its rules, need from each session."""

    def follow_rules(self) -> None:
        """The rules in force changed: they decide from the next command on."""
        ...

    def shutdown(self) -> None:
        """421 now if idle, else after the current transaction."""
        ...

    def cut_early(self) -> None:
        """Close if still before the greeting or in a TLS handshake."""
        ...

    def cut(self) -> None:
        """421 even mid-transaction, and close."""
        ...


@dataclass(slots=True)
class Stats:
    """Counters of one worker, logged at exit and readable by tests."""

    connections: int = 0
    messages: int = 0
    starttls: int = 0
    tls_failures: int = 0
    proxy_failures: int = 0  # proxy=yes listeners: no valid PROXY header
    timeouts: int = 0
    errors: int = 0


class ServerState:
    __slots__ = (
        "_last_id",
        "clock",
        "debug",
        "idle",
        "loop",
        "observation",
        "policy",
        "prefix",
        "rules",
        "rules_debug",
        "sessions",
        "stats",
        "stopping",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        policy: Policy,
        prefix: str = "",
        observation: Observation | None = None,
    ) -> None:
        self.loop = loop
        # The loop's clock, looked up once: a session stamps its last sign of
        # life at every read, and loop.time() is a method found by name at
        # each call (a third of the cost of that stamp, compiled).
        self.clock: Callable[[], float] = loop.time
        # Counting into private memory unless the worker shares its counters.
        self.observation = observation if observation is not None else Observation.private([])
        self.policy = policy
        self.prefix = prefix
        self.sessions: set[Session] = set()
        self.stats = Stats()
        self.rules: WorkerRules | None = None  # rules or address conventions in force
        self._last_id = 0  # session ids are numbered from 1
        self.idle = IdleWheel(loop)  # the sessions' idle timers (server.idle)
        # The worker is stopping: a session still before its greeting (a PROXY
        # header or an SMTPS handshake to come) or in a STARTTLS handshake is
        # told 421 as soon as it can read one (Endings.shutdown).
        self.stopping = False
        # Whether sessions and their rules log at debug level: read once
        # here, not by each session (asking a logger is a Python call of
        # about 1,000 instructions, and a new connection asked twice). The
        # level is set before the worker starts (observe.logs) by -d or -q,
        # which a reload keeps: it holds for the worker's life.
        self.debug = _session_log.isEnabledFor(logging.DEBUG)
        self.rules_debug = _rules_log.isEnabledFor(logging.DEBUG)

    def next_session_id(self) -> str:
        # An integer, not itertools.count(): next() is a lookup in builtins
        # and a call, where += is one C addition in the compiled build.
        self._last_id += 1
        return f"{self.prefix}{self._last_id}"
