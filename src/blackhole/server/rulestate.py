"""A worker's rules: the file rules of its config, and the store they count in.

``new_store`` is the store of a worker started on its own: an in-process
``MemoryStore`` (exact for one worker). Under the supervisor, the worker is
given the store shared by every worker (``hub.sharedstore``, or Redis through
the hub); a store's outage is answered ``451 4.3.0`` for that one event
(``server.steering``), never a crashed session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from blackhole.config.model import Config
from blackhole.protocol.hooks import Stage, bits
from blackhole.rules.addresses import MOX, SES
from blackhole.rules.engine import RuleSet
from blackhole.rules.store import MemoryStore, Store

log = logging.getLogger("blackhole.rules")
T = TypeVar("T")

# The stages each address convention decides at (RULES.md "Address conventions").
_CONVENTION_STAGES = {
    MOX: frozenset((Stage.MAIL, Stage.RCPT, Stage.END)),
    SES: frozenset((Stage.RCPT, Stage.END)),
}
_CONVENTION_BITS = {name: bits(stages) for name, stages in _CONVENTION_STAGES.items()}


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends, without an event loop task."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("the rules engine waited although no rule needs the store")


def new_store() -> Store:
    """The store every rule of this worker counts in."""
    return MemoryStore()


def _seed(config: Config) -> int:
    # RULES.md: the rules file's seed, else the config file's; 0 keeps a run
    # without either replayable all the same.
    if config.rules is not None and config.rules.seed is not None:
        return config.rules.seed
    return config.seed if config.seed is not None else 0


class WorkerRules:
    """The rules in force in one worker, and what the adapter needs to know of them."""

    __slots__ = ("_tasks", "conventions", "ruleset")

    def __init__(
        self, config: Config, store: Store | None = None, started: float | None = None
    ) -> None:
        file_rules = config.rules.rules if config.rules is not None else ()
        self.ruleset = RuleSet(
            file_rules,
            seed=_seed(config),
            started=started if started is not None else time.time(),
            store=store if store is not None else new_store(),
        )
        self.conventions = config.address_rules
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def wanted(config: Config) -> bool:
        """Whether a config asks for any of this (else sessions pay nothing)."""
        return config.rules is not None or bool(config.address_rules)

    def reload(self, config: Config) -> None:
        """SIGHUP: the new file rules; unchanged rules keep their state.

        The file was parsed when the config was loaded, so a broken one never
        gets here (the supervisor keeps the old config).
        """
        self.conventions = config.address_rules
        file_rules = config.rules.rules if config.rules is not None else ()
        task = asyncio.get_running_loop().create_task(
            self.ruleset.reload(file_rules, _seed(config))
        )
        self._tasks.add(task)
        task.add_done_callback(self._reloaded)

    def _reloaded(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the new rules are refused, the old ones stay: %s", exc)

    @property
    def stages(self) -> frozenset[Stage]:
        """The stages the core must report: the rules' and the conventions'."""
        stages = self.ruleset.stages
        for name in self.conventions:
            stages = stages | _CONVENTION_STAGES[name]
        return stages

    @property
    def stage_bits(self) -> int:
        """``stages``, as the core watches them (hooks.bits())."""
        watch = self.ruleset.stage_bits
        for name in self.conventions:
            watch |= _CONVENTION_BITS[name]
        return watch

    @property
    def content_thresholds(self) -> tuple[int, ...]:
        """The byte counts at which the core reports content: every ``after_bytes``."""
        return self.ruleset.content_thresholds

    @property
    def headers_wanted(self) -> bool:
        """Whether a session beginning now must collect its messages' header fields."""
        return self.ruleset.reads_headers

    def stateful(self, stage: Stage) -> bool:
        """Whether deciding at ``stage`` may have to wait for the store.

        A store that answers at once (in this process or in shared memory:
        ``Store.synchronous``) never waits: the rules then decide in the
        callback, without a task, as rules without state do."""
        return stage in self.ruleset.waiting_stages
