"""The worker's end of the hub: ``HubClient`` and the ``RemoteStore`` over it.

``RemoteStore.decide`` is one round trip: the ``Ask`` goes out with a request
id, the worker's loop goes on with other sessions, and the hub's ``Decision``
resolves the future of that id. Requests pipeline: any number may be in
flight on the one connection.

When the hub cannot answer (it died and the supervisor is restarting it, or
it does not answer within ``timeout``), ``decide`` raises
``HubUnavailableError`` at once rather than wait: the adapter answers that
event ``451 4.3.0`` (a transient failure, RFC 5321 section 4.2.5), and the
client retries later, as it would with any real server in trouble. The
client reconnects by itself, at once and then with a growing pause. A hub
whose own store cannot decide (Redis unreachable) says so (``wire.Refused``):
``decide`` raises ``StoreUnavailableError``, answered the same way.

API rules arrive pushed by the hub (``wire.ApiRules``): ``on_api_rules`` gets
the whole list, newest first, each time; the hub is told once it returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from typing import cast

from blackhole.framing import ChannelError, FrameReader, encode
from blackhole.hub.apirules import to_rule
from blackhole.hub.wire import (
    JSON,
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
from blackhole.rules.model import Rule
from blackhole.rules.parse import RulesError
from blackhole.rules.store import Answer, Ask, Store, StoreUnavailableError

log = logging.getLogger("blackhole.worker")

# The hub answers in microseconds; a decision it has not answered in this
# long is not coming (the hub is hung or being restarted).
DECIDE_TIMEOUT = 2.0
RETRY_FIRST, RETRY_MAX = 0.05, 1.0


class HubUnavailableError(StoreUnavailableError):
    """The hub cannot decide now: answer this event ``451 4.3.0``."""


def _expire(waiter: asyncio.Future[object], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(HubUnavailableError(f"the hub did not answer in {timeout:g}s"))


def _ignore(_rules: list[Rule]) -> None:
    return None


def _ignore_slots(_slots: dict[str, int]) -> None:
    return None


class _Link(asyncio.Protocol):
    """One connection to the hub; its loss fails every request in flight."""

    def __init__(self, client: HubClient) -> None:
        self.client = client
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, message: object) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(encode(message))
        return True

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.reader.feed(data)
        except ChannelError as exc:
            log.error("hub connection: %s", exc)
            assert self.transport is not None
            self.transport.abort()
            return
        for message in messages:
            if isinstance(message, Decision | Result):
                waiter = self.client.pending.pop(message.id, None)
                if waiter is not None and not waiter.done():
                    value = message.answer if isinstance(message, Decision) else message.value
                    waiter.set_result(value)
            elif isinstance(message, Refused):
                waiter = self.client.pending.pop(message.id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(StoreUnavailableError(message.reason))
            elif isinstance(message, ApiRules):
                self.client.apply(message)
                self.send(AckRules(message.version))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        self.client.link_lost(self)


class HubClient:
    """A worker's connection to the hub at ``path``, kept up until ``close``."""

    def __init__(
        self,
        path: str,
        worker: int,
        on_api_rules: Callable[[list[Rule]], None] = _ignore,
        timeout: float = DECIDE_TIMEOUT,
    ) -> None:
        self.path = path
        self.worker = worker
        self.on_api_rules = on_api_rules
        # Every rule's counter slot, with each list (observe.ruleslots).
        self.on_rule_slots: Callable[[dict[str, int]], None] = _ignore_slots
        self.timeout = timeout
        self.pending: dict[int, asyncio.Future[object]] = {}
        self.store = RemoteStore(self)
        self.api_rules: list[Rule] = []
        self.rules_version: int | None = None  # None until the first list arrived
        self._ids = itertools.count(1)
        self._link: _Link | None = None
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait: float) -> bool:
        """Connect, and wait up to ``wait`` seconds for the API rules; whether they came."""
        self._task = asyncio.get_running_loop().create_task(self._keep_connected())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), wait)
        return self._synced.is_set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()

    async def _keep_connected(self) -> None:
        loop = asyncio.get_running_loop()
        pause = RETRY_FIRST
        while True:
            try:
                _transport, link = await loop.create_unix_connection(lambda: _Link(self), self.path)
            except OSError as exc:
                log.debug("cannot reach the hub at %s: %s", self.path, exc)
                await asyncio.sleep(pause)
                pause = min(RETRY_MAX, pause * 2)
                continue
            self._link = link
            link.send(Hello(self.worker, os.getpid()))
            await link.lost
            pause = RETRY_FIRST
            log.warning("lost the hub connection: reconnecting")

    def link_lost(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(HubUnavailableError("the hub connection was lost"))

    def apply(self, message: ApiRules) -> None:
        rules = []
        for api in message.rules:
            try:
                rules.append(to_rule(api))
            except RulesError as exc:  # the hub parsed it the same way: a bug
                log.error("API rule from the hub refused: %s", exc)
        self.api_rules = rules
        self.rules_version = message.version
        self.on_api_rules(rules)
        self.on_rule_slots(dict(message.slots))
        self._synced.set()

    async def call(self, make: Callable[[int], object]) -> object:
        """Send the request ``make(id)``; its answer, or ``HubUnavailableError``."""
        link = self._link
        request_id = next(self._ids)
        if link is None or not link.send(make(request_id)):
            raise HubUnavailableError("the hub is not reachable")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[object] = loop.create_future()
        self.pending[request_id] = waiter
        # A timer on the future rather than asyncio.wait_for, which costs a
        # good part of a round trip's CPU (one is made per stateful decision).
        timer = loop.call_later(self.timeout, _expire, waiter, self.timeout)
        try:
            return await waiter
        finally:
            timer.cancel()
            self.pending.pop(request_id, None)

    def record(self, record: JSON) -> None:
        """Hand a message record to the hub for ``GET /messages``; dropped if it is down."""
        if self._link is not None:
            self._link.send(Record(record))


class RemoteStore(Store):
    """The rule state kept by the hub, shared by every worker of the server."""

    def __init__(self, client: HubClient) -> None:
        self.client = client

    async def decide(self, ask: Ask) -> Answer:
        answer = await self.client.call(lambda request_id: Decide(request_id, ask))
        assert isinstance(answer, Answer)
        return answer

    async def acted(self) -> dict[str, int]:
        acted = await self.client.call(lambda request_id: Query(request_id, "acted"))
        assert isinstance(acted, dict)
        return acted

    async def keep(self, rule_ids: frozenset[str]) -> None:
        # Nothing to send: the hub forgets the state of the API rules it
        # removes itself, and one worker's view of the rules in force (in
        # the middle of a rolling reload) must not wipe what the others use.
        return None

    async def reset(self) -> None:
        await self.client.call(lambda request_id: Query(request_id, "reset"))
