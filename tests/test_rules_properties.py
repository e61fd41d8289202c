"""Properties: decisions are deterministic across workers; replies are valid SMTP;
no input makes the parser fail with anything but a RulesError."""

from __future__ import annotations

import asyncio
import re
import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blackhole.protocol.hooks import Stage, Verdict
from blackhole.rules import values
from blackhole.rules.engine import RuleSet
from blackhole.rules.match import Facts
from blackhole.rules.parse import RULE_KEYS, RulesError, parse_object, parse_text
from blackhole.rules.store import MemoryStore

RULES = """
[[rule]]
name = "every-third"
at = "rcpt"
key = "client"
every = 3
reply = "450 4.2.0 every third"

[[rule]]
name = "coin"
at = "rcpt"
key = "recipient"
probability = 0.3
delay = "1-4"
reply = "451 4.3.0 unlucky"

[[rule]]
name = "first-two"
at = "rcpt"
key = "triplet"
first = 2
reply = "452 4.2.2 try again"

[[rule]]
name = "grey"
at = "rcpt"
greylist = "50s"
key = "sender"
"""

CLIENTS = ["192.0.2.1", "192.0.2.2", "198.51.100.9"]
SENDERS = ["a@x.example", "b@x.example", "c@x.example"]
RECIPIENTS = ["r1@y.example", "r2@y.example", "r3@y.example"]


events_strategy = st.lists(
    st.tuples(
        st.integers(0, len(CLIENTS) - 1),
        st.integers(0, len(SENDERS) - 1),
        st.integers(0, len(RECIPIENTS) - 1),
    ),
    min_size=1,
    max_size=40,
)


def facts(event: tuple[int, int, int]) -> Facts:
    c, s, r = event
    return Facts(Stage.RCPT, client=CLIENTS[c], sender=SENDERS[s], recipient=RECIPIENTS[r])


def decide_all(
    order: list[int], events: list[tuple[int, int, int]], workers: list[int], n_workers: int
) -> dict[int, Verdict | None]:
    store = MemoryStore()
    parsed = parse_text(RULES).rules
    sets = [RuleSet(parsed, seed=11, started=0.0, store=store) for _ in range(n_workers)]

    async def go() -> dict[int, Verdict | None]:
        out: dict[int, Verdict | None] = {}
        for i in order:
            out[i] = await sets[workers[i]].evaluate(Stage.RCPT, facts(events[i]), float(i * 10))
        return out

    return asyncio.run(go())


@settings(max_examples=60, deadline=None)
@given(data=st.data(), events=events_strategy, n_workers=st.integers(1, 4))
def test_decisions_do_not_depend_on_workers_or_interleaving(
    data: st.DataObject, events: list[tuple[int, int, int]], n_workers: int
) -> None:
    """RULES.md "Determinism": the same traffic, sent one message after another,
    gets the same decisions with any number of workers sharing one store."""
    reference = decide_all(list(range(len(events))), events, [0] * len(events), 1)
    workers = data.draw(st.lists(st.integers(0, n_workers - 1), min_size=len(events),
                                 max_size=len(events)))  # fmt: skip
    # Which worker takes each event is drawn; the events come one after another.
    assert decide_all(list(range(len(events))), events, workers, n_workers) == reference


@settings(max_examples=40, deadline=None)
@given(events=events_strategy, data=st.data())
def test_independent_keys_interleave_freely(
    events: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    # Restrict to events whose counts are independent across clients: a
    # sender and a recipient of its own for each client, so that no key (the
    # greylist's is the sender) is shared between clients. With fewer senders
    # than clients two clients shared one, and a reordering that let the
    # later one be seen first moved the key's first-seen time: not a defect.
    assert len(SENDERS) >= len(CLIENTS) <= len(RECIPIENTS)
    events = [(c, c, c) for c, _, _ in events]
    reference = decide_all(list(range(len(events))), events, [0] * len(events), 1)
    # Draw an interleaving that keeps each client's own order.
    priorities = data.draw(st.lists(st.floats(0, 1), min_size=len(events), max_size=len(events)))
    per_client: dict[int, list[float]] = {}
    for i, (c, _, _) in enumerate(events):
        per_client.setdefault(c, []).append(priorities[i])
    for ps in per_client.values():
        ps.sort()
    seen: dict[int, int] = {}
    slot: list[tuple[float, int]] = []
    for i, (c, _, _) in enumerate(events):
        k = seen.get(c, 0)
        seen[c] = k + 1
        slot.append((per_client[c][k], i))
    order = [i for _, i in sorted(slot)]
    workers = data.draw(st.lists(st.integers(0, 2), min_size=len(events), max_size=len(events)))
    # Time is the event's own (its position in the reference run), as a real
    # client's retries carry theirs.
    assert decide_all(order, events, workers, 3) == reference


text_lines = st.lists(
    st.text(alphabet=string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "")
            .replace("\x0c", ""), max_size=600),
    min_size=1,
    max_size=4,
)  # fmt: skip


@given(code=st.integers(200, 599), with_enhanced=st.booleans(), subject=st.integers(0, 999),
       detail=st.integers(0, 999), lines=text_lines)  # fmt: skip
def test_any_valid_reply_is_valid_smtp(
    code: int, with_enhanced: bool, subject: int, detail: int, lines: list[str]
) -> None:
    klass = code // 100
    enhanced = f" {klass}.{subject}.{detail}" if with_enhanced and klass != 3 else ""
    # Text that starts like an enhanced code is read as one ("CODE [X.Y.Z] text").
    assume(enhanced or not re.match(r" *\d\.\d{1,3}\.\d{1,3}(?: |$)", lines[0]))
    text = f"{code}{enhanced} " + "\n".join(lines)
    try:
        made = values.reply(text)
    except ValueError as exc:
        assert "over the limit of 512" in str(exc)
        return
    assert_valid_smtp(made.wire, code)


@given(st.text(max_size=200))
def test_any_string_is_a_valid_reply_or_a_clear_error(text: str) -> None:
    try:
        made = values.reply(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert_valid_smtp(made.wire, made.code)


def assert_valid_smtp(wire: bytes, code: int) -> None:
    assert wire.endswith(b"\r\n")
    lines = wire[:-2].split(b"\r\n")
    for n, line in enumerate(lines):
        assert len(line) + 2 <= 512  # RFC 5321 4.5.3.1.5
        sep = b" " if n == len(lines) - 1 else b"-"
        assert line.startswith(str(code).encode() + sep)
        assert re.fullmatch(rb"[\t\x20-\x7e]*", line)
    assert 200 <= code <= 599


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from([*sorted(RULE_KEYS), "ttl", "bogus"]), json_values))
def test_any_object_is_a_rule_or_a_rules_error(raw: dict[str, object]) -> None:
    try:
        rule = parse_object(raw, now=0.0)
    except RulesError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    assert rule.name == raw["name"]
