"""SharedStore: the same answers as MemoryStore, exact across processes, robust to deaths.

The equivalence property runs any sequence of decisions, keeps and resets on
both stores and wants identical answers and ``acted`` figures. The other
tests are what sharing a region between processes adds: several processes
counting one ``first = 3`` exactly, a process SIGKILLed while it holds the
lock, a torn entry, a full table.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from blackhole.hub.sharedstore import SharedStore
from blackhole.rules.model import Key, Selection
from blackhole.rules.select import FORGET_AFTER
from blackhole.rules.store import Answer, MemoryStore, StoreUnavailableError
from tests.storesteps import START, ask, rule_lists, run, steps

GREY = Selection(greylist=300.0, key=Key.TRIPLET)

# A process that decides COUNT times with one `first = 3` rule in the region
# at descriptor FD and prints how many of its decisions acted.
DECIDER = """
import sys
from blackhole.hub.sharedstore import SharedStore
from blackhole.rules.model import Selection
from blackhole.rules.store import Ask
store = SharedStore.attach(int(sys.argv[1]), keeper=False)
ask = Ask("first3", "first3", "", Selection(first=3), 1.0, 1.0, 7)
sys.stdout.write(str(sum(store.decide_now(ask).act for _ in range(int(sys.argv[2])))))
"""

# A process that takes the region's lock, says so, and waits to be killed.
LOCKER = """
import fcntl, signal, sys
fcntl.lockf(int(sys.argv[1]), fcntl.LOCK_EX)
sys.stdout.write("locked\\n")
sys.stdout.flush()
signal.pause()  # until the test's SIGKILL
"""


@pytest.fixture
def store() -> Iterator[SharedStore]:
    shared = SharedStore.create(rule_slots=16, buckets=64)
    try:
        yield shared
    finally:
        shared.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_lists, script=steps)
def test_same_answers_as_memory_store(
    rules: list[Selection], script: list[tuple[object, ...]]
) -> None:
    # Room for all nine keys of the scripts (seven share bucket 0): no evictions.
    shared = SharedStore.create(rule_slots=4, buckets=2, ways=8)
    try:
        asyncio.run(run(shared, rules, script))
    finally:
        shared.close()


def test_processes_share_first_n_exactly(store: SharedStore) -> None:
    deciders = [
        subprocess.Popen(
            [sys.executable, "-c", DECIDER, str(store.fd), "200"],
            pass_fds=(store.fd,),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    acts = [int(decider.communicate(timeout=60)[0]) for decider in deciders]
    assert [decider.returncode for decider in deciders] == [0, 0, 0, 0]
    # 800 matches of one `first = 3` rule from four processes: exactly 3 act.
    assert sum(acts) == 3
    assert asyncio.run(store.acted()) == {"first3": 3}


def test_a_process_killed_holding_the_lock_does_not_wedge_the_others(store: SharedStore) -> None:
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(store.fd)],
        pass_fds=(store.fd,),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline() == "locked\n"
        with pytest.raises(OSError):  # held by the other process
            fcntl.lockf(store.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        locker.kill()
        locker.wait(timeout=30)
    # The kernel released the dead process's lock: no waiting, no wedge.
    fcntl.lockf(store.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.lockf(store.fd, fcntl.LOCK_UN)
    assert store.decide_now(ask("r", "k", START, Selection(every=1))) == Answer(True, 1)


def test_a_torn_entry_loses_only_its_own_key() -> None:
    shared = SharedStore.create(rule_slots=4, buckets=1, ways=4)
    memory = MemoryStore()
    try:
        for key in ("a", "b", "c"):
            question = ask("r", key, START, GREY)
            assert shared.decide_now(question) == memory.decide_now(question)
        # A writer killed half-way through one entry (the first written, "a"'s):
        # its bytes are garbage.
        at = shared._entries_at
        shared._map[at + 8 : at + 40] = os.urandom(32)
        later = START + 400.0
        for key in ("b", "c", "new"):
            question = ask("r", key, later, GREY)
            assert shared.decide_now(question) == memory.decide_now(question), key
    finally:
        shared.close()


def test_a_torn_rule_slot_loses_only_its_own_rule(store: SharedStore) -> None:
    every = Selection(every=1)
    for rule in ("a", "b"):
        store.decide_now(ask(rule, "k", START, every))
    slot, _stamp = store._slots["a"]
    at = store._rules_at + slot * 64
    store._map[at + 17 : at + 64] = b"\xff" * 47  # "a"'s id, half-written
    assert asyncio.run(store.acted())["b"] == 1  # readable, "b" intact
    other = SharedStore.attach(store.fd, keeper=False)  # another process's view
    try:
        assert other.decide_now(ask("a", "k", START, every)) == Answer(True, 1)  # starts over
        assert other.decide_now(ask("b", "k", START, every)) == Answer(True, 2)
    finally:
        other.close()


def test_a_full_bucket_evicts_the_least_recently_seen_key_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared = SharedStore.create(rule_slots=4, buckets=1, ways=2)
    try:
        shared.decide_now(ask("r", "a", START, GREY))
        shared.decide_now(ask("r", "b", START + 1, GREY))
        assert shared.evictions == 0
        with caplog.at_level(logging.WARNING, logger="blackhole.rules"):
            assert shared.decide_now(ask("r", "c", START + 2, GREY)) == Answer(True, 1)
        assert shared.evictions == 1
        assert "the shared rule state is full (2 keys)" in caplog.text
        # "b" kept its count; "a" (the least recently seen) starts over.
        assert shared.decide_now(ask("r", "b", START + 3, GREY)).count == 2
        assert shared.decide_now(ask("r", "a", START + 400, GREY)) == Answer(True, 1)
    finally:
        shared.close()


def test_keys_unseen_for_two_days_make_room_without_an_eviction() -> None:
    shared = SharedStore.create(rule_slots=4, buckets=1, ways=2)
    try:
        shared.decide_now(ask("r", "a", START, GREY))
        shared.decide_now(ask("r", "b", START + 1, GREY))
        later = START + 1 + FORGET_AFTER
        assert shared.decide_now(ask("r", "c", later, GREY)) == Answer(True, 1)
        assert shared.decide_now(ask("r", "d", later, GREY)) == Answer(True, 1)
        assert shared.evictions == 0
    finally:
        shared.close()


def test_the_state_of_forgotten_rules_makes_room(store: SharedStore) -> None:
    small = SharedStore.create(rule_slots=2, buckets=1, ways=2)
    try:
        small.decide_now(ask("old", "k", START, Selection(every=1)))
        small.decide_now(ask("kept", "k", START, Selection(every=1)))
        with pytest.raises(StoreUnavailableError, match="at most 2 rules"):
            small.decide_now(ask("new", "k", START, Selection(every=1)))
        asyncio.run(small.keep(frozenset({"kept"})))
        assert small.decide_now(ask("new", "k", START, Selection(every=1))) == Answer(True, 1)
        assert small.evictions == 0  # the one entry belonged to a forgotten rule
        assert asyncio.run(small.acted()) == {"kept": 1, "new": 1}
    finally:
        small.close()


def test_only_the_keeper_forgets(store: SharedStore) -> None:
    worker = SharedStore.attach(store.fd, keeper=False)
    try:
        worker.decide_now(ask("r", "k", START, Selection(every=1)))
        asyncio.run(worker.keep(frozenset()))
        assert asyncio.run(store.acted()) == {"r": 1}
        asyncio.run(store.keep(frozenset()))
        assert asyncio.run(worker.acted()) == {}
        assert worker.decide_now(ask("r", "k", START, Selection(every=2))).count == 1
    finally:
        worker.close()


def test_a_region_of_another_layout_is_refused() -> None:
    fd = os.memfd_create("not-a-region")
    try:
        os.ftruncate(fd, 4096)
        with pytest.raises(ValueError, match="wrong layout"):
            SharedStore.attach(fd, keeper=False)
    finally:
        os.close(fd)
