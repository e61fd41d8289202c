"""RedisStore against a real redis-server: the same answers as MemoryStore, outages typed.

The equivalence property runs any sequence of decisions, keeps and resets on
both stores and wants identical answers and ``acted`` figures: Redis's Lua
scripts and ``MemoryStore.decide_now`` are two spellings of one rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from blackhole.config.model import Config
from blackhole.hub.client import HubClient, HubUnavailableError
from blackhole.hub.redisstore import ACTED, CONNECTIONS, PREFIX, RedisStore
from blackhole.observe.layout import Layout
from blackhole.rules.model import Selection
from blackhole.rules.select import FORGET_AFTER
from blackhole.rules.store import Answer, StoreUnavailableError
from blackhole.supervisor.hubkeeper import HubKeeper
from tests.redisserver import RedisServer
from tests.storesteps import START, ask, rule_lists, run, steps


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rules=rule_lists, script=steps)
def test_same_answers_as_memory_store(
    shared_redis: RedisServer, rules: list[Selection], script: list[tuple[object, ...]]
) -> None:
    async def scenario() -> None:
        redis = RedisStore(shared_redis.url)
        try:
            await run(redis, rules, script)
        finally:
            await redis.close()

    asyncio.run(scenario())


def test_times_is_exact_under_concurrent_decisions(shared_redis: RedisServer) -> None:
    async def scenario() -> list[Answer]:
        stores = [RedisStore(shared_redis.url) for _ in range(4)]
        try:
            await stores[0].reset()
            sel = Selection(probability=0.5, times=5)
            questions = [ask("t", str(n), START, sel) for n in range(400)]
            answers = await asyncio.gather(
                *(stores[n % 4].decide(q) for n, q in enumerate(questions))
            )
            # A burst queues for a bounded pool instead of opening a connection
            # per decision (a connect storm that, on a busy host, timed out).
            info = shared_redis.command("INFO", "clients").decode()
            clients = int(info.split("connected_clients:")[1].split()[0])
            assert clients <= 4 * CONNECTIONS + 1
            return answers
        finally:
            for store in stores:
                await store.close()

    answers = asyncio.run(scenario())
    assert sum(answer.act for answer in answers) == 5


def test_entries_expire_two_days_after_their_last_match(shared_redis: RedisServer) -> None:
    async def scenario() -> int:
        store = RedisStore(shared_redis.url)
        try:
            await store.reset()
            await store.decide(ask("g", "k", time.time(), Selection(greylist=300.0)))
            return int(await store.redis.pttl(f"{PREFIX}g:k:k"))
        finally:
            await store.close()

    left = asyncio.run(scenario())
    assert FORGET_AFTER * 1000 - 60_000 < left <= FORGET_AFTER * 1000


def test_a_flushed_script_cache_is_reloaded(shared_redis: RedisServer) -> None:
    async def scenario() -> list[Answer]:
        store = RedisStore(shared_redis.url)
        try:
            await store.reset()
            sel = Selection(every=2)
            first = await store.decide(ask("s", "k", START, sel))
            assert shared_redis.command("SCRIPT", "FLUSH").startswith(b"+OK")
            return [first, await store.decide(ask("s", "k", START, sel))]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [Answer(False, 1), Answer(True, 2)]


def test_keep_forgets_only_the_rules_it_is_told(shared_redis: RedisServer) -> None:
    async def scenario() -> dict[str, int]:
        store = RedisStore(shared_redis.url)
        try:
            await store.reset()
            for rule in ("old", "kept"):
                await store.decide(ask(rule, "k", START, Selection(every=1)))
            await store.keep(frozenset({"kept"}))
            assert await store.redis.exists(f"{PREFIX}old:k:k") == 0
            assert await store.redis.exists(f"{PREFIX}kept:k:k") == 1
            return await store.acted()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == {"kept": 1}
    assert ACTED.startswith(PREFIX)


def test_an_outage_is_typed_logged_once_and_recovered_from(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    sel = Selection(first=2)

    async def scenario() -> None:
        store = RedisStore(server.url)
        store.start()
        try:
            assert await store.decide(ask("o", "k", START, sel)) == Answer(True, 1)
            assert store.trouble() is None
            server.stop()
            for _ in range(5):
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError):
                    await store.decide(ask("o", "k", START, sel))
                assert time.monotonic() - started < 1.5
            assert store.trouble() == f"state store unreachable: {server.url}"
            server.start()
            # Redis restarted empty (no persistence): the watcher notices, counts start over.
            for _ in range(200):
                if store.trouble() is None:
                    break
                await asyncio.sleep(0.05)
            assert store.trouble() is None
            assert await store.decide(ask("o", "k", START, sel)) == Answer(True, 1)
        finally:
            await store.close()
            server.stop()

    with caplog.at_level(logging.WARNING, logger="blackhole.rules"):
        asyncio.run(scenario())
    lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.ERROR
    assert len(back) == 1


def test_a_redis_that_never_answered_is_reported(tmp_path: Path) -> None:
    dead = RedisServer(tmp_path)  # never started: nothing listens on its port

    async def scenario() -> str | None:
        store = RedisStore(dead.url)
        store.start()
        try:
            with pytest.raises(StoreUnavailableError):
                await store.decide(ask("d", "k", START, Selection(first=1)))
            return store.trouble()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == f"state store unreachable: {dead.url}"


def test_a_unix_socket_url_and_its_database(shared_redis: RedisServer) -> None:
    async def scenario() -> list[Answer]:
        store = RedisStore(shared_redis.unix_url)
        try:
            await store.reset()
            sel = Selection(first=1)
            answers = [await store.decide(ask("u", "k", START, sel)) for _ in range(2)]
            assert await store.redis.exists(f"{PREFIX}u:k:k") == 1
            return answers
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [Answer(True, 1), Answer(False, 2)]
    # Database 0 (where a plain connection lands) holds none of it.
    assert shared_redis.command("KEYS", "blackhole:u:*") == b"*0\r\n"


def test_a_hub_on_a_dead_redis_refuses_decisions_at_once(tmp_path: Path) -> None:
    # Through a real hub process: the worker's RemoteStore gets the hub's
    # Refused (StoreUnavailableError) at once, not its own 2 s timeout.
    dead = RedisServer(tmp_path)  # never started
    keeper = HubKeeper()
    keeper.bind_store()
    keeper.configure(Config(state_url=dead.url), None, Layout(["smtp://127.0.0.1:25"]))
    keeper.start_and_wait([])

    async def scenario() -> None:
        assert keeper.path is not None
        client = HubClient(keeper.path, 1)
        assert await client.start(10.0)
        try:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError) as caught:
                    await client.store.decide(ask("h", "k", time.time(), Selection(first=1)))
                assert not isinstance(caught.value, HubUnavailableError)
                assert "unreachable" in str(caught.value)
                assert time.monotonic() - started < 1.5
        finally:
            await client.close()

    try:
        asyncio.run(scenario())
    finally:
        keeper.stop()
