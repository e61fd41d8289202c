"""Scripts of store operations for the equivalence properties of the shared stores.

Every store that shares rule state (Redis, shared memory) must give the same
answers and ``acted`` figures as ``MemoryStore`` for any sequence of
decisions, keeps and resets: ``run`` plays one script on both.
"""

from __future__ import annotations

from hypothesis import strategies as st

from blackhole.rules.model import Selection
from blackhole.rules.select import FORGET_AFTER
from blackhole.rules.store import Ask, MemoryStore, Store

START = 1_764_000_000.123456  # a wall-clock time with a fraction, as time.time() gives


def ask(rule_id: str, key: str, now: float, selection: Selection, seed: int = 7) -> Ask:
    return Ask(rule_id, f"rule-{rule_id}", key, selection, now, now - START, seed)


selections = st.builds(
    Selection,
    probability=st.none() | st.floats(0.0, 1.0),
    every=st.none() | st.integers(1, 4),
    first=st.none() | st.integers(0, 5),
    after=st.none() | st.integers(0, 5),
    greylist=st.none() | st.sampled_from([0.0, 1.0, 300.0, 86400.5]),
    window=st.none() | st.tuples(st.floats(0, 4 * 86400), st.none() | st.floats(0, 8 * 86400)),
    times=st.none() | st.integers(0, 6),
)
rule_lists = st.lists(selections, min_size=3, max_size=3)  # rules 0, 1, 2
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("decide"),
            st.integers(0, 2),  # rule
            st.sampled_from(["", "a", "10.0.0.0/24\0s@x\0r@y"]),  # key
            # How far the clock moves: not at all, a little, around the greylist
            # period, around the two days after which a key starts over.
            st.sampled_from([0.0, 0.25, 1.0, 299.9, 300.0, FORGET_AFTER - 0.5, FORGET_AFTER])
            | st.floats(0, 3 * 86400),
        ),
        st.tuples(st.just("keep"), st.frozensets(st.sampled_from(["0", "1", "2"]))),
        st.tuples(st.just("reset")),
    ),
    max_size=40,
)


async def run(store: Store, rules: list[Selection], script: list[tuple[object, ...]]) -> None:
    """Play ``script`` on ``store`` and on a ``MemoryStore``; assert they agree at each step."""
    memory = MemoryStore()
    await store.reset()
    now = START
    for step in script:
        if step[0] == "decide":
            _, rule, key, moved = step
            assert isinstance(rule, int) and isinstance(key, str)
            assert isinstance(moved, float)
            now += moved
            question = ask(str(rule), key, now, rules[rule])
            assert await store.decide(question) == memory.decide_now(question), step
        elif step[0] == "keep":
            kept = step[1]
            assert isinstance(kept, frozenset)
            await memory.keep(kept)
            await store.keep(kept)
        else:
            await memory.reset()
            await store.reset()
        assert await store.acted() == await memory.acted()
