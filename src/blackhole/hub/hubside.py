"""The hub's end of the workers' connections.

One ``Hub`` owns the shared rule state (one ``MemoryStore``: every worker's
``Ask`` is decided here, one at a time, so counts are exact; or, with
``state_url``, a ``RedisStore`` shared with other servers), the API rules,
and the recorded messages. A ``WorkerLink`` is one worker's connection; it
answers each request as soon as it is read, in order, without awaiting
anything, so a decision costs one read and one write.

API rules reach the workers by push: ``Hub.push`` sends every connected
worker the whole list under a new version and returns once each has
acknowledged it (or has gone): that is how ``POST /rules`` answers only once
every worker applies the rule. A worker that connects is sent the list at
once, and reports ready to the supervisor only after it has applied it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from blackhole.framing import ChannelError, FrameReader, encode
from blackhole.hub.apirules import ApiRuleBook
from blackhole.hub.sharedstore import SharedStore
from blackhole.hub.wire import (
    AckRules,
    ApiRules,
    Decide,
    Decision,
    Hello,
    Query,
    Record,
    Refused,
    Result,
)
from blackhole.observe.record import Recorder
from blackhole.observe.ruleslots import RuleSlots
from blackhole.rules.store import MemoryStore, StoreUnavailableError

if TYPE_CHECKING:
    from blackhole.hub.redisstore import RedisStore

# All keep ``acted_now`` for the synchronous ``GET /rules``.
HubStore: TypeAlias = "MemoryStore | SharedStore | RedisStore"
# The stores that decide at once, in this process's memory or in shared memory.
LOCAL_STORES = (MemoryStore, SharedStore)

log = logging.getLogger("blackhole.hub")

# A worker that does not apply a rule list in this long is hung; the
# supervisor's heartbeat replaces it, and its successor gets the list before
# it serves, so the control API does not wait for it any longer.
ACK_TIMEOUT = 5.0


class WorkerLink(asyncio.Protocol):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.worker: int | None = None  # known once it said Hello
        self.acked = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, message: object) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(message))

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.reader.feed(data)
        except ChannelError as exc:
            log.error("worker %s: %s", self.worker, exc)
            assert self.transport is not None
            self.transport.abort()
            return
        hub = self.hub
        for message in messages:
            if isinstance(message, Decide):
                store = hub.store
                if isinstance(store, LOCAL_STORES):
                    self.send(Decision(message.id, store.decide_now(message.ask)))
                else:
                    hub.spawn(self._decide(message))
            elif isinstance(message, Record):
                hub.recorder.add(message.record)
            elif isinstance(message, AckRules):
                self.acked = max(self.acked, message.version)
                hub.changed()
            elif isinstance(message, Query):
                hub.spawn(self._query(message))
            elif isinstance(message, Hello):
                self.worker = message.worker
                hub.links.add(self)
                self.send(hub.rules_message())
                log.debug("worker %d (pid %d) connected", message.worker, message.pid)

    async def _decide(self, decide: Decide) -> None:
        # A store across the network answers later; requests carry ids, so
        # answers may go out of order.
        try:
            answer = await self.hub.store.decide(decide.ask)
        except StoreUnavailableError as exc:
            self.send(Refused(decide.id, str(exc)))  # the store logged the outage
            return
        except Exception:
            log.exception("the state store failed")
            self.send(Refused(decide.id, "the state store failed"))
            return
        self.send(Decision(decide.id, answer))

    async def _query(self, query: Query) -> None:
        try:
            self.send(Result(query.id, await self.hub.query(query.what)))
        except StoreUnavailableError as exc:
            self.send(Refused(query.id, str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.hub.links.discard(self)
        self.hub.changed()


class Hub:
    def __init__(self, book: ApiRuleBook, record: int, store: HubStore | None = None) -> None:
        self.store: HubStore = store if store is not None else MemoryStore()
        self.book = book
        self.recorder = Recorder(record)
        self.links: set[WorkerLink] = set()
        self.version = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Rule names bound to counter slots (HubBackend binds them); None: no counters.
        self.rule_slots: RuleSlots | None = None

    def connected(self) -> set[int]:
        """Numbers of the workers connected now."""
        return {link.worker for link in self.links if link.worker is not None}

    def changed(self) -> None:
        self._changed.set()

    def rules_message(self) -> ApiRules:
        slots = () if self.rule_slots is None else tuple(self.rule_slots.names().items())
        return ApiRules(self.version, self.book.wire(), slots)

    async def query(self, what: str) -> object:
        if what == "acted":
            return await self.store.acted()
        await self.store.reset()
        return None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task, held until it ends (the loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def push(self) -> None:
        """Send the API rules to every worker; return once each applied them."""
        self.version += 1
        message = self.rules_message()
        waiting = set(self.links)
        for link in waiting:
            link.send(message)
        deadline = time.monotonic() + ACK_TIMEOUT
        while True:
            waiting = {link for link in waiting if link in self.links}
            waiting = {link for link in waiting if link.acked < message.version}
            remaining = deadline - time.monotonic()
            if not waiting:
                return
            if remaining <= 0:
                late = sorted(str(link.worker) for link in waiting)
                log.warning(
                    "API rules version %d: no acknowledgement from worker %s in %gs",
                    message.version,
                    ", ".join(late),
                    ACK_TIMEOUT,
                )
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue
