"""The in-process state store: atomic counts, greylist expiry, times, keep, reset."""

from __future__ import annotations

import asyncio
import json

from blackhole.rules.model import Key, Selection
from blackhole.rules.parse import parse_object
from blackhole.rules.select import FORGET_AFTER
from blackhole.rules.store import SWEEP_EVERY, Answer, Ask, MemoryStore


def ask(key: str = "k", now: float = 0.0, rule_id: str = "id1", **selection: object) -> Ask:
    return Ask(rule_id, "r", key, Selection(**selection), now, now, 1)  # type: ignore[arg-type]


def test_counts_per_rule_and_key() -> None:
    store = MemoryStore()
    answers = [store.decide_now(ask("a", every=2)) for _ in range(4)]
    assert answers == [Answer(False, 1), Answer(True, 2), Answer(False, 3), Answer(True, 4)]
    assert store.decide_now(ask("b", every=2)) == Answer(False, 1)
    assert store.decide_now(ask("a", rule_id="id2", every=2)) == Answer(False, 1)


def test_times_spends_the_rule_across_keys() -> None:
    store = MemoryStore()
    acted = [store.decide_now(ask(str(n), times=2)).act for n in range(5)]
    assert acted == [True, True, False, False, False]
    assert asyncio.run(store.acted()) == {"id1": 2}


def test_greylist_passes_after_the_period_then_starts_over_after_two_days() -> None:
    store = MemoryStore()
    grey = {"greylist": 300.0, "key": Key.TRIPLET}
    assert store.decide_now(ask(now=1000.0, **grey)).act
    assert store.decide_now(ask(now=1200.0, **grey)).act
    assert not store.decide_now(ask(now=1300.0, **grey)).act
    # Seen again within two days: still passes.
    later = 1300.0 + FORGET_AFTER - 1
    assert not store.decide_now(ask(now=later, **grey)).act
    # Unseen for two days: a new entry, refused again.
    answer = store.decide_now(ask(now=later + FORGET_AFTER, **grey))
    assert answer == Answer(True, 1)


def test_idle_entries_are_swept() -> None:
    store = MemoryStore()
    for n in range(100):
        store.decide_now(ask(f"k{n}", now=0.0, every=1))
    store.decide_now(ask("fresh", now=FORGET_AFTER + SWEEP_EVERY, every=1))
    assert list(store._rules["id1"].entries) == ["fresh"]


def test_keep_and_reset() -> None:
    store = MemoryStore()
    store.decide_now(ask(rule_id="old", every=1))
    store.decide_now(ask(rule_id="kept", every=1))
    asyncio.run(store.keep(frozenset({"kept"})))
    assert asyncio.run(store.acted()) == {"kept": 1}
    assert store.decide_now(ask(rule_id="kept", every=1)).count == 2
    asyncio.run(store.reset())
    assert asyncio.run(store.acted()) == {}
    assert store.decide_now(ask(rule_id="kept", every=1)).count == 1


def test_decide_is_the_same_through_the_coroutine() -> None:
    store = MemoryStore()
    assert asyncio.run(store.decide(ask(first=1))) == Answer(True, 1)
    assert asyncio.run(store.decide(ask(first=1))) == Answer(False, 2)


def test_ask_and_answer_cross_a_process_boundary_as_json() -> None:
    # The supervisor's store serves workers over a socket: one JSON object each way.
    for fields in (
        {"greylist": "5m"},
        {"window": "30s-", "probability": 0.5, "key": "message"},
        {"window": "1m-2m", "every": 3, "first": 4, "after": 1, "times": 9, "key": "session"},
    ):
        rule = parse_object({"name": "r", "at": "rcpt", "reply": "450", **fields}, now=0.0)
        sent = Ask(rule.fingerprint, rule.name, "k\0x", rule.selection, 12.5, 2.5, 7)
        assert Ask.from_wire(json.loads(json.dumps(sent.to_wire()))) == sent
    answer = Answer(act=True, count=3)
    assert Answer.from_wire(json.loads(json.dumps(answer.to_wire()))) == answer
