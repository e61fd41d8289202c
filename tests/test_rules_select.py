"""Selection decisions: pure, deterministic, and keyed as RULES.md says."""

from __future__ import annotations

from typing import Any

import pytest

from blackhole.protocol.hooks import Stage
from blackhole.rules.match import Facts
from blackhole.rules.model import Key, Selection
from blackhole.rules.select import choose, in_window, key_value, unit


def acts(selection: Selection, count: int, **kw: Any) -> bool:
    args: dict[str, Any] = {
        "rule": "r", "key": "", "count": count, "first_seen": 0.0, "now": 0.0,
        "elapsed": 0.0, "seed": 1,
    }  # fmt: skip
    args.update(kw)
    return choose(selection, **args)


def test_no_selection_always_acts() -> None:
    assert all(acts(Selection(), n) for n in range(1, 20))


def test_every() -> None:
    assert [n for n in range(1, 10) if acts(Selection(every=3), n)] == [3, 6, 9]


def test_first() -> None:
    assert [n for n in range(1, 6) if acts(Selection(first=2), n)] == [1, 2]


def test_after() -> None:
    assert [n for n in range(1, 6) if acts(Selection(after=3), n)] == [4, 5]
    assert [n for n in range(1, 3) if acts(Selection(after=0), n)] == [1, 2]


def test_greylist_refuses_until_the_period_since_first_seen() -> None:
    grey = Selection(greylist=300.0, key=Key.TRIPLET)
    assert acts(grey, 1, first_seen=1000.0, now=1000.0)
    assert acts(grey, 2, first_seen=1000.0, now=1299.9)
    assert not acts(grey, 3, first_seen=1000.0, now=1300.0)
    assert not acts(grey, 4, first_seen=1000.0, now=5000.0)


def test_window() -> None:
    w = Selection(window=(60.0, 120.0))
    assert not in_window(w, 59.9)
    assert in_window(w, 60.0)
    assert in_window(w, 119.9)
    assert not in_window(w, 120.0)
    assert in_window(Selection(window=(30.0, None)), 10**6)
    assert not acts(w, 1, elapsed=10.0)
    assert acts(w, 1, elapsed=90.0)


def test_probability_is_a_share_and_deterministic() -> None:
    p = Selection(probability=0.25)
    chosen = [n for n in range(1, 4001) if acts(p, n)]
    assert 850 < len(chosen) < 1150
    assert chosen == [n for n in range(1, 4001) if acts(p, n)]
    # Another seed, rule or key picks other matches.
    assert chosen != [n for n in range(1, 4001) if acts(p, n, seed=2)]
    assert chosen != [n for n in range(1, 4001) if acts(p, n, rule="other")]
    assert chosen != [n for n in range(1, 4001) if acts(p, n, key="k")]
    assert not any(acts(Selection(probability=0.0), n) for n in range(1, 500))
    assert all(acts(Selection(probability=1.0), n) for n in range(1, 500))


def test_selections_combine() -> None:
    s = Selection(every=2, first=6)
    assert [n for n in range(1, 12) if acts(s, n)] == [2, 4, 6]


def test_unit_is_uniform_in_0_1_and_fixed() -> None:
    draws = [unit(7, "r", "k", n) for n in range(1000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert draws == [unit(7, "r", "k", n) for n in range(1000)]
    assert unit(7, "r", "k", 1) != unit(7, "r", "k", 1, "delay")
    assert 0.4 < sum(draws) / len(draws) < 0.6


FACTS = Facts(
    Stage.RCPT,
    session="s1",
    client="192.0.2.77",
    sender="A@Example.com",
    recipients=("x@b.example",),
    recipient="Y@b.example",
)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (Key.SERVER, ""),
        (Key.SESSION, "s1"),
        (Key.CLIENT, "192.0.2.77"),
        (Key.SENDER, "a@example.com"),
        (Key.RECIPIENT, "y@b.example"),
        (Key.MESSAGE, "a@example.com\0y@b.example"),
        (Key.TRIPLET, "192.0.2.0/24\0a@example.com\0y@b.example"),
    ],
)
def test_key_values(key: Key, value: str) -> None:
    assert key_value(key, FACTS) == value


def test_message_key_prefers_message_id() -> None:
    facts = Facts(Stage.END, sender="a@b", recipients=("c@d", "e@f"))
    assert key_value(Key.MESSAGE, facts) == "a@b\0c@d,e@f"
    with_id = Facts(Stage.END, sender="a@b", headers=(("Message-ID", " <1@x> "),))
    assert key_value(Key.MESSAGE, with_id) == "<1@x>"


@pytest.mark.parametrize("key", [Key.TRIPLET, Key.RECIPIENT, Key.MESSAGE])
def test_a_message_retried_with_its_recipients_reordered_has_the_same_key(key: Key) -> None:
    first = Facts(Stage.END, client="192.0.2.1", sender="a@b", recipients=("c@d", "E@F", "g@h"))
    retry = Facts(Stage.END, client="192.0.2.1", sender="a@b", recipients=("g@h", "c@d", "e@f"))
    assert key_value(key, first) == key_value(key, retry)
    other = Facts(Stage.END, client="192.0.2.1", sender="a@b", recipients=("c@d", "g@h"))
    assert key_value(key, other) != key_value(key, first)


def test_triplet_ipv6_uses_the_64() -> None:
    facts = Facts(Stage.RCPT, client="2001:db8:1:2:3::9", sender="", recipient="r@x")
    assert key_value(Key.TRIPLET, facts) == "2001:db8:1:2::/64\0\0r@x"
    # Two addresses of one /24 are one triplet: retries from a pool count together.
    other = Facts(Stage.RCPT, client="192.0.2.1", sender="A@Example.com", recipient="y@b.example")
    assert key_value(Key.TRIPLET, other) == key_value(Key.TRIPLET, FACTS)
