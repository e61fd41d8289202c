"""Rule state in Redis (``state_url``), shared exactly by every server that uses it.

``RedisStore.decide`` does what ``MemoryStore.decide_now`` does, inside one
Lua script (Redis runs a script atomically, so concurrent servers never see
half a decision): count the match, start the key over when it was unseen for
``FORGET_AFTER``, apply ``times`` and every selection but ``probability``.
Lua has no BLAKE2b, so when ``probability`` is the last test left the script
answers "draw", the store draws with ``select.drawn`` as every store does, and
a chosen match claims its act with a second script that re-checks ``times``:
``times`` is never exceeded, and only matches that act pay the second trip.

The hub uses it in place of its ``MemoryStore``, rather than every worker
talking to Redis: workers keep their one round trip (to the hub, on a local
socket), a server holds one connection pool to Redis instead of one per
worker, and one process sees an outage, logs it once and reports it on
``/healthz``. The price is one more local hop per stateful decision.

Keys (``blackhole:`` then the rule's fingerprint, so a changed rule starts
over and servers with the same rules share them):

- ``blackhole:<rule>:k:<key>``: a hash ``count``, ``first``, ``last`` (the
  times as the asking server wrote them, so they read back exactly), expiring
  ``FORGET_AFTER`` after its last match: RULES.md's "a key unseen for 2 days
  starts over", with Redis doing the sweeping;
- ``blackhole:acted``: a hash, rule -> how many times it acted (``spent``).

Outages: a command that fails marks the store down, logged once, and drops
the pooled connections; while down, ``decide`` fails at once (the adapter
answers ``451 4.3.0``) instead of waiting for a connect timeout per message.
A watch task polls Redis (``HGETALL blackhole:acted``, which also keeps the
figures for ``GET /rules`` fresh) and marks it up again when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from blackhole.config.stateurl import shown
from blackhole.rules.select import FORGET_AFTER, drawn, in_window
from blackhole.rules.store import Answer, Ask, Store, StoreUnavailableError

log = logging.getLogger("blackhole.rules")

PREFIX = "blackhole:"
ACTED = PREFIX + "acted"
# Redis answers in well under a millisecond; one that has not answered in a
# second is down for our purpose (the worker waits at most 2 s for the hub).
TIMEOUT = 1.0
# Connections to Redis per server, and how long a decision waits for one: no
# longer than a worker waits for the hub (hub.client.DECIDE_TIMEOUT).
CONNECTIONS, POOL_WAIT = 16, 2.0
# How often the watch task polls Redis while it is up, and while it is down.
WATCH_UP, WATCH_DOWN = 1.0, 0.2
_BATCH = 500  # keys deleted per UNLINK by keep and reset

# KEYS[1] the entry, KEYS[2] the acted hash. ARGV: rule, now, forget_after,
# every, first, after, greylist, in_window (1/0), times, probability (1/0),
# ttl in ms; an empty string is an unset selection (tonumber('') is nil).
# Returns {act, count, draw, acted}. The order of tests is choose()'s.
_DECIDE = """
local rule, now = ARGV[1], tonumber(ARGV[2])
local entry = redis.call('HMGET', KEYS[1], 'count', 'first', 'last')
local count, first = tonumber(entry[1]), entry[2]
if count == nil or now - tonumber(entry[3]) >= tonumber(ARGV[3]) then
  count, first = 0, ARGV[2]
end
count = count + 1
redis.call('HSET', KEYS[1], 'count', count, 'first', first, 'last', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[11])
redis.call('HSETNX', KEYS[2], rule, 0)
local acted = tonumber(redis.call('HGET', KEYS[2], rule))
local times = tonumber(ARGV[9])
if times ~= nil and acted >= times then return {0, count, 0, acted} end
if ARGV[8] ~= '1' then return {0, count, 0, acted} end
local every, firstn, after = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if every ~= nil and count % every ~= 0 then return {0, count, 0, acted} end
if firstn ~= nil and count > firstn then return {0, count, 0, acted} end
if after ~= nil and count <= after then return {0, count, 0, acted} end
local greylist = tonumber(ARGV[7])
if greylist ~= nil and now - tonumber(first) >= greylist then return {0, count, 0, acted} end
if ARGV[10] == '1' then return {0, count, 1, acted} end
return {1, count, 0, redis.call('HINCRBY', KEYS[2], rule, 1)}
"""

# KEYS[1] the acted hash. ARGV: rule, times (empty: none). Returns {act, acted}.
_CLAIM = """
local acted = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local times = tonumber(ARGV[2])
if times ~= nil and acted >= times then return {0, acted} end
return {1, redis.call('HINCRBY', KEYS[1], ARGV[1], 1)}
"""


def _arg(value: float | None) -> str:
    # repr() of a float reads back as the same double in Lua's tonumber.
    return "" if value is None else repr(value)


class RedisStore(Store):
    """Rule state in the Redis database at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        # A bounded pool: a burst of decisions queues for a few connections
        # instead of opening one each (a connection storm that, on a busy
        # host, times out and looks like an outage). No retries: a script
        # whose reply was lost may have run, and running it again would count
        # the match twice.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=CONNECTIONS,
            timeout=POOL_WAIT,
            socket_connect_timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.redis: Redis = Redis(connection_pool=pool)
        # Script objects send EVALSHA and load the script on NOSCRIPT (a
        # restarted or flushed Redis has forgotten it).
        self._decide = self.redis.register_script(_DECIDE)
        self._claim = self.redis.register_script(_CLAIM)
        self._acted: dict[str, int] = {}
        self._down: str | None = None
        self._watch: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------

    def start(self) -> None:
        """Watch Redis from now on (on the running loop)."""
        self._watch = asyncio.get_running_loop().create_task(self._watching())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        with contextlib.suppress(RedisError, OSError):  # a Redis that is down: nothing to close
            await self.redis.aclose(close_connection_pool=True)

    async def _watching(self) -> None:
        while True:
            try:
                await self._refresh()
            except (RedisError, OSError) as exc:
                await self._lost(exc)
            else:
                if self._down is not None:
                    log.warning("state store %s reachable again", shown(self.url))
                    self._down = None
            await asyncio.sleep(WATCH_UP if self._down is None else WATCH_DOWN)

    async def _lost(self, exc: Exception) -> None:
        if self._down is None:
            self._down = str(exc) or type(exc).__name__
            log.error(
                "state store %s unreachable (%s): rules that need state answer 451 4.3.0"
                " until it is back",
                shown(self.url),
                self._down,
            )
        # Connections made before a Redis restart are dead: make new ones.
        with contextlib.suppress(RedisError, OSError):
            await self.redis.connection_pool.disconnect()

    def trouble(self) -> str | None:
        return None if self._down is None else f"state store unreachable: {shown(self.url)}"

    def _unavailable(self) -> StoreUnavailableError:
        return StoreUnavailableError(f"state store unreachable: {self._down}")

    @contextlib.asynccontextmanager
    async def _reaching(self) -> AsyncIterator[None]:
        """Turn any failure to reach Redis into ``StoreUnavailableError``."""
        try:
            yield
        except (RedisError, OSError) as exc:
            await self._lost(exc)
            raise self._unavailable() from None

    # --- deciding ---------------------------------------------------------------------

    async def decide(self, ask: Ask) -> Answer:
        if self._down is not None:
            raise self._unavailable()
        sel = ask.selection
        entry = f"{PREFIX}{ask.rule_id}:k:{ask.key}"
        args = (
            ask.rule_id,
            _arg(ask.now),
            _arg(FORGET_AFTER),
            _arg(sel.every),
            _arg(sel.first),
            _arg(sel.after),
            _arg(sel.greylist),
            "1" if in_window(sel, ask.elapsed) else "0",
            _arg(sel.times),
            "0" if sel.probability is None else "1",
            str(int(FORGET_AFTER * 1000)),
        )
        async with self._reaching():
            act, count, draw, acted = await self._decide(keys=[entry, ACTED], args=args)
            if draw and drawn(sel, rule=ask.rule, key=ask.key, count=count, seed=ask.seed):
                act, acted = await self._claim(keys=[ACTED], args=[ask.rule_id, _arg(sel.times)])
        self._acted[ask.rule_id] = int(acted)
        return Answer(act=bool(act), count=int(count))

    # --- the rest of Store ------------------------------------------------------------

    async def acted(self) -> dict[str, int]:
        async with self._reaching():
            await self._refresh()
        return dict(self._acted)

    async def _refresh(self) -> None:
        acted = await self.redis.hgetall(ACTED)
        self._acted = {str(rule): int(n) for rule, n in acted.items()}

    def acted_now(self) -> dict[str, int]:
        """``acted`` as last seen (at most ``WATCH_UP`` old), for the hub's ``GET /rules``."""
        return dict(self._acted)

    async def keep(self, rule_ids: frozenset[str]) -> None:
        # Only the rules this server knows of: other servers on the same Redis
        # may have rules of their own.
        for rule in [rule for rule in self._acted if rule not in rule_ids]:
            async with self._reaching():
                await self._delete(f"{PREFIX}{rule}:k:*")
                await self.redis.hdel(ACTED, rule)
            self._acted.pop(rule, None)

    async def reset(self) -> None:
        """Forget all state, of every server using this Redis database."""
        async with self._reaching():
            await self._delete(f"{PREFIX}*")
        self._acted.clear()

    async def _delete(self, pattern: str) -> None:
        # SCAN, not KEYS: Redis keeps serving other clients meanwhile.
        batch: list[str] = []
        async for key in self.redis.scan_iter(match=pattern, count=_BATCH):
            batch.append(key)
            if len(batch) >= _BATCH:
                await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            await self.redis.unlink(*batch)
