"""Where rule state lives: match counts, greylist entries, spent rules.

One decision is one call, ``decide(Ask) -> Answer``: the store counts the
match, remembers when the key was first seen, applies ``times`` and the pure
selection (``select.choose``) in one atomic step. ``Ask`` and ``Answer`` hold
only plain values, so a store in another process (the supervisor's, for all
workers of one server) or on the network (Redis) answers in one round trip and
every worker sees exactly the same counts. Rules without a stateful selection
never reach the store.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from blackhole.errors import BlackholeError
from blackhole.rules.model import Key, Selection
from blackhole.rules.select import FORGET_AFTER, choose

# Idle entries are swept at most this often, so a sweep costs O(entries) per
# minute, not per decision.
SWEEP_EVERY = 60.0


@dataclass(slots=True)
class Ask:
    """One match of a stateful rule, with all the store needs to decide.

    Not frozen: a frozen dataclass pays an ``object.__setattr__`` per
    field. A store must not keep it past its answer: the engine asks a
    synchronous store the next question in the same object
    (``RuleSet.evaluate_now``).
    """

    rule_id: str  # the rule's fingerprint: state survives a reload only if unchanged
    rule: str  # the rule's name, which chance is keyed by
    key: str
    selection: Selection
    now: float  # seconds, on one clock for every worker (time.time())
    elapsed: float  # seconds since the rule's start, for `window`
    seed: int

    def to_wire(self) -> dict[str, Any]:
        """Plain JSON-able values, for a store in another process."""
        return asdict(self)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Ask:
        sel = dict(wire["selection"])
        window = sel.get("window")
        sel["window"] = None if window is None else (window[0], window[1])
        sel["key"] = Key(sel["key"])
        fields = {k: wire[k] for k in ("rule_id", "rule", "key", "now", "elapsed", "seed")}
        return cls(selection=Selection(**sel), **fields)


@dataclass(slots=True)
class Answer:  # not frozen either: one is made at every stateful decision
    act: bool
    count: int  # this match's number for its key, from 1

    def to_wire(self) -> dict[str, Any]:
        return {"act": self.act, "count": self.count}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Answer:
        return cls(act=bool(wire["act"]), count=int(wire["count"]))


def advance(
    ask: Ask, count: int, first_seen: float, last_seen: float, acted: int
) -> tuple[int, float, bool]:
    """One match of ``ask.key``: its new count and first-seen time, and whether it acts.

    ``count``, ``first_seen`` and ``last_seen`` are the key's entry (count 0:
    none yet), ``acted`` how often the rule acted in all. The one place every
    store (in memory, in shared memory) applies RULES.md "Selection": a key
    unseen for two days starts over, ``times`` spends the rule, ``choose``
    does the rest. The caller stores the entry (last seen: ``ask.now``) and,
    when it acts, counts the action.
    """
    if count == 0 or ask.now - last_seen >= FORGET_AFTER:
        count, first_seen = 0, ask.now
    count += 1
    times = ask.selection.times
    if times is not None and acted >= times:
        return count, first_seen, False
    act = choose(
        ask.selection,
        rule=ask.rule,
        key=ask.key,
        count=count,
        first_seen=first_seen,
        now=ask.now,
        elapsed=ask.elapsed,
        seed=ask.seed,
    )
    return count, first_seen, act


@dataclass(slots=True)
class _Entry:
    count: int
    first_seen: float
    last_seen: float


@dataclass(slots=True)
class _RuleState:
    acted: int = 0
    entries: dict[str, _Entry] = field(default_factory=dict)


class StoreUnavailableError(BlackholeError):
    """The store cannot decide now (Redis or the hub is unreachable): the
    adapter answers that event ``451 4.3.0``; whoever saw the outage logs it once."""


class Store(abc.ABC):
    """The interface every state store implements."""

    # True when ``decide`` never suspends (it answers in the call, in this
    # process or in shared memory): the adapter then decides without a task.
    synchronous = False

    def trouble(self) -> str | None:
        """Why the store cannot decide now, for ``/healthz``; None while it can."""
        return None

    @abc.abstractmethod
    async def decide(self, ask: Ask) -> Answer:
        """Count the match and say whether it acts, atomically."""

    def decide_now(self, ask: Ask) -> Answer:
        """``decide`` without the coroutine: only a ``synchronous`` store has it."""
        raise NotImplementedError(f"{type(self).__name__} decides only asynchronously")

    @abc.abstractmethod
    async def acted(self) -> dict[str, int]:
        """How many times each rule (by id) acted, for ``spent`` in /rules."""

    @abc.abstractmethod
    async def keep(self, rule_ids: frozenset[str]) -> None:
        """Forget the state of every rule not in ``rule_ids`` (reload, API delete)."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Forget all state (POST /reset)."""


class MemoryStore(Store):
    """State in this process: for one worker, or hosted by the supervisor for all."""

    __slots__ = ("_last_sweep", "_rules")
    synchronous = True

    def __init__(self) -> None:
        self._rules: dict[str, _RuleState] = {}
        self._last_sweep = 0.0

    async def decide(self, ask: Ask) -> Answer:
        return self.decide_now(ask)

    def decide_now(self, ask: Ask) -> Answer:
        """``decide`` without the coroutine, for a host that serves other processes."""
        if ask.now - self._last_sweep >= SWEEP_EVERY:
            self._sweep(ask.now)
        state = self._rules.get(ask.rule_id)
        if state is None:
            state = self._rules[ask.rule_id] = _RuleState()
        entry = state.entries.get(ask.key)
        if entry is None:
            entry = state.entries[ask.key] = _Entry(0, ask.now, ask.now)
        entry.count, entry.first_seen, act = advance(
            ask, entry.count, entry.first_seen, entry.last_seen, state.acted
        )
        entry.last_seen = ask.now
        if act:
            state.acted += 1
        return Answer(act, entry.count)

    def _sweep(self, now: float) -> None:
        # RULES.md: a key unseen for 2 days starts over; its entry goes, so
        # memory follows the keys of the last two days, not of all time.
        self._last_sweep = now
        for state in self._rules.values():
            stale = [k for k, e in state.entries.items() if now - e.last_seen >= FORGET_AFTER]
            for key in stale:
                del state.entries[key]

    async def acted(self) -> dict[str, int]:
        return self.acted_now()

    def acted_now(self) -> dict[str, int]:
        """``acted`` without the coroutine, for the hub's synchronous ``GET /rules``."""
        return {rule_id: state.acted for rule_id, state in self._rules.items()}

    async def keep(self, rule_ids: frozenset[str]) -> None:
        for rule_id in [r for r in self._rules if r not in rule_ids]:
            del self._rules[rule_id]

    async def reset(self) -> None:
        self._rules.clear()
