"""The engine: which rule acts, what it counts, the Verdict it gives, reloads."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from blackhole.protocol.hooks import Stage, TLSFault, Verdict
from blackhole.protocol.replies import Reply
from blackhole.rules.engine import CLOSING, GREYLISTED, NameInUseError, RuleSet
from blackhole.rules.match import Facts
from blackhole.rules.parse import RulesError, parse_object, parse_text
from blackhole.rules.store import Answer, Ask, MemoryStore, Store


class NoStore(Store):
    """A store that fails the test if it is ever asked."""

    async def decide(self, ask: Ask) -> Answer:
        raise AssertionError(f"the store was asked about {ask.rule}")

    async def acted(self) -> dict[str, int]:
        return {}

    async def keep(self, rule_ids: frozenset[str]) -> None:
        return None

    async def reset(self) -> None:
        return None


def ruleset(text: str, store: Store | None = None, seed: int = 1) -> RuleSet:
    return RuleSet(parse_text(text).rules, seed=seed, started=0.0, store=store or MemoryStore())


def run(
    rules: RuleSet, stage: Stage, facts: Facts | None = None, now: float = 0.0
) -> Verdict | None:
    return asyncio.run(rules.evaluate(stage, facts or Facts(stage), now))


RCPT = Facts(Stage.RCPT, client="192.0.2.1", sender="s@x", recipient="a@full.example")


def test_first_acting_rule_wins_and_earlier_matches_are_counted() -> None:
    rules = ruleset("""
[[rule]]
name = "second-try"
at = "rcpt"
every = 2
reply = "450 4.2.0 every other"

[[rule]]
name = "full"
at = "rcpt"
recipient = "*@full.example"
reply = "452 4.2.2 Mailbox full"

[[rule]]
name = "never-reached"
at = "rcpt"
reply = "550 5.0.0 no"
""")
    replies = [run(rules, Stage.RCPT, RCPT) for _ in range(4)]
    assert [v.rule if v else None for v in replies] == ["full", "second-try", "full", "second-try"]
    assert replies[0] == Verdict("full", reply=Reply(452, "4.2.2", "Mailbox full"))
    assert rules.hits == {"second-try": 4, "full": 2}


def test_no_rule_for_a_stage_is_none_and_stages_are_listed() -> None:
    rules = ruleset('[[rule]]\nname = "x"\nat = "rcpt"\nreply = "450"\n')
    assert rules.stages == frozenset({Stage.RCPT})
    assert run(rules, Stage.MAIL) is None
    assert run(rules, Stage.RCPT, Facts(Stage.RCPT)) is not None


def test_matchers_that_do_not_hold_pass_on() -> None:
    rules = ruleset('[[rule]]\nname = "x"\nat = "rcpt"\nrecipient = "*@y"\nreply = "450"\n')
    assert run(rules, Stage.RCPT, RCPT) is None
    assert rules.hits == {}


def test_rules_without_state_never_touch_the_store() -> None:
    rules = ruleset(
        """
[[rule]]
name = "plain"
at = "mail"
delay = 2
reply = "451 4.3.0 later"

[[rule]]
name = "windowed"
at = "rcpt"
window = "10s-"
close = true
""",
        store=NoStore(),
    )
    verdict = run(rules, Stage.MAIL)
    assert verdict is not None and verdict.delay == 2.0
    assert run(rules, Stage.RCPT, now=5.0) is None
    assert run(rules, Stage.RCPT, now=15.0) == Verdict("windowed", reply=CLOSING, close=True)


def test_a_delay_range_is_drawn_from_the_count_all_workers_share() -> None:
    # RULES.md: never from which worker took the connection. Two workers'
    # rule sets on one store draw, in turns, what one worker draws alone.
    text = '[[rule]]\nname = "d"\nat = "mail"\ndelay = "1-3"\n'
    alone = ruleset(text)
    shared = MemoryStore()
    one, two = ruleset(text, store=shared), ruleset(text, store=shared)
    drawn = [run(alone, Stage.MAIL) for _ in range(4)]
    turns = [run(worker, Stage.MAIL) for worker in (one, two, two, one)]
    assert [v.delay for v in turns if v] == [v.delay for v in drawn if v]
    assert len({v.delay for v in drawn if v}) == 4  # a range, drawn anew each time


def test_greylist_default_reply_and_pass_after_period() -> None:
    rules = ruleset('[[rule]]\nname = "g"\nat = "rcpt"\ngreylist = "5m"\n')
    assert run(rules, Stage.RCPT, RCPT, now=100.0) == Verdict("g", reply=GREYLISTED)
    assert GREYLISTED.wire == b"451 4.7.1 Greylisted, please try again later\r\n"
    # Another triplet is refused on its own first try.
    other = Facts(Stage.RCPT, client="198.51.100.1", sender="s@x", recipient="a@full.example")
    assert run(rules, Stage.RCPT, other, now=200.0) is not None
    assert run(rules, Stage.RCPT, RCPT, now=400.0) is None


def test_close_default_reply() -> None:
    assert CLOSING.wire == b"421 4.3.2 Service not available, closing channel\r\n"
    rules = ruleset('[[rule]]\nname = "c"\nat = "connect"\nclose = true\n')
    assert run(rules, Stage.CONNECT) == Verdict("c", reply=CLOSING, close=True)
    rules = ruleset('[[rule]]\nname = "c"\nat = "connect"\nclose = true\nreply = "554 5.7.1 go"\n')
    assert run(rules, Stage.CONNECT) == Verdict("c", reply=Reply(554, "5.7.1", "go"), close=True)


@pytest.mark.parametrize(
    ("body", "at", "verdict"),
    [
        ("drop = true", "data", Verdict("a", drop=True)),
        ("reset = true", "data", Verdict("a", reset=True)),
        ("hang = true", "helo", Verdict("a", hang=True)),
        ("tarpit = 20", "connect", Verdict("a", tarpit=20)),
        ('tls = "fail"', "starttls", Verdict("a", tls=TLSFault.FAIL)),
        ('tls = "hang"', "starttls", Verdict("a", tls=TLSFault.HANG)),
        ("delay = 3", "end", Verdict("a", delay=3.0)),
        ('reply = "250 2.0.0 fine"', "end", Verdict("a", reply=Reply(250, "2.0.0", "fine"))),
    ],
)
def test_every_action(body: str, at: str, verdict: Verdict) -> None:
    rules = ruleset(f'[[rule]]\nname = "a"\nat = "{at}"\n{body}\n')
    assert run(rules, Stage(at)) == verdict


def test_content_acts_once_when_after_bytes_arrive() -> None:
    rules = ruleset('[[rule]]\nname = "cut"\nat = "content"\nafter_bytes = 100\ndrop = true\n')
    seen = [
        run(rules, Stage.CONTENT, Facts(Stage.CONTENT, content_bytes=total, chunk_bytes=50))
        for total in (50, 100, 150)
    ]
    assert seen == [None, Verdict("cut", drop=True), None]


def test_delay_range_is_deterministic_from_the_seed() -> None:
    text = '[[rule]]\nname = "d"\nat = "end"\ndelay = "2-5"\nevery = 1\n'

    def delays(seed: int) -> list[float]:
        rules = ruleset(text, seed=seed)
        out = []
        for _ in range(20):
            verdict = run(rules, Stage.END)
            assert verdict is not None
            out.append(verdict.delay)
        return out

    first = delays(7)
    assert all(2.0 <= d <= 5.0 for d in first)
    assert len(set(first)) > 10
    assert first == delays(7)
    assert first != delays(8)


def test_api_rules_come_first_newest_first() -> None:
    rules = ruleset('[[rule]]\nname = "file"\nat = "rcpt"\nreply = "451"\n')
    rules.add(parse_object({"name": "old", "at": "rcpt", "reply": "452"}, now=0.0))
    rules.add(parse_object({"name": "new", "at": "rcpt", "reply": "453"}, now=0.0))
    assert [r.name for r in rules.rules] == ["new", "old", "file"]
    verdict = run(rules, Stage.RCPT)
    assert verdict is not None and verdict.rule == "new"
    with pytest.raises(NameInUseError, match='rule "file" already exists'):
        rules.add(parse_object({"name": "file", "at": "rcpt", "reply": "452"}, now=0.0))
    assert asyncio.run(rules.remove("new"))
    assert not asyncio.run(rules.remove("new"))
    assert not asyncio.run(rules.remove("file"))  # file rules go only with the file
    verdict = run(rules, Stage.RCPT)
    assert verdict is not None and verdict.rule == "old"
    asyncio.run(rules.remove_api())
    assert [r.name for r in rules.rules] == ["file"]


def test_api_rule_window_counts_from_when_it_was_added_and_ttl_expires() -> None:
    rules = ruleset("")
    rules.add(
        parse_object(
            {"name": "w", "at": "rcpt", "window": "10s-", "reply": "450", "ttl": 60}, now=1000.0
        )
    )
    assert run(rules, Stage.RCPT, now=1005.0) is None
    assert run(rules, Stage.RCPT, now=1015.0) is not None
    assert run(rules, Stage.RCPT, now=1060.0) is None  # expired, even before the sweep
    assert asyncio.run(rules.expire(1060.0)) == ["w"]
    assert rules.rules == ()


def test_times_then_spent() -> None:
    rules = ruleset('[[rule]]\nname = "t"\nat = "rcpt"\ntimes = 2\nreply = "450"\n')
    acted = [run(rules, Stage.RCPT) is not None for _ in range(4)]
    assert acted == [True, True, False, False]
    assert asyncio.run(rules.spent()) == frozenset({"t"})


def test_reload_keeps_state_of_unchanged_rules_only() -> None:
    before = """
[[rule]]
name = "same"
at = "rcpt"
first = 2
reply = "450"

[[rule]]
name = "changed"
at = "mail"
first = 2
reply = "450"
"""
    rules = ruleset(before)
    for _ in range(2):
        run(rules, Stage.RCPT)
        run(rules, Stage.MAIL)
    after = parse_text(
        before.replace(
            'at = "mail"\nfirst = 2\nreply = "450"', 'at = "mail"\nfirst = 2\nreply = "451"'
        )
    ).rules
    asyncio.run(rules.reload(after, seed=1))
    assert run(rules, Stage.RCPT) is None  # third match of an unchanged rule: its count was kept
    assert run(rules, Stage.MAIL) is not None  # changed: starts over


def test_debug_log_says_why(caplog: pytest.LogCaptureFixture) -> None:
    rules = ruleset(
        '[[rule]]\nname = "a"\nat = "rcpt"\nrecipient = "*@y"\nreply = "450"\n'
        '[[rule]]\nname = "b"\nat = "rcpt"\nevery = 2\nreply = "451"\n'
    )
    with caplog.at_level(logging.DEBUG, logger="blackhole.rules"):
        run(rules, Stage.RCPT, replace(RCPT, session="w1-7"))
    # The session id leads, so that -d output can be followed per session.
    assert [r.getMessage() for r in caplog.records] == [
        "[w1-7] rule a at rcpt: recipient does not hold",
        "[w1-7] rule b at rcpt: match 1 of '' not selected",
    ]


def test_reset_starts_counts_greylist_and_spent_over() -> None:
    rules = ruleset('[[rule]]\nname = "t"\nat = "rcpt"\ntimes = 1\nreply = "450"\n')
    assert run(rules, Stage.RCPT) is not None
    assert run(rules, Stage.RCPT) is None
    asyncio.run(rules.reset())
    assert rules.hits == {}
    assert asyncio.run(rules.spent()) == frozenset()
    assert run(rules, Stage.RCPT) is not None


def test_reload_refuses_a_file_rule_named_like_an_api_rule() -> None:
    rules = ruleset('[[rule]]\nname = "file"\nat = "rcpt"\nreply = "451"\n')
    rules.add(parse_object({"name": "api", "at": "rcpt", "reply": "452"}, now=0.0))
    clash = parse_text('[[rule]]\nname = "api"\nat = "mail"\nreply = "450"\n').rules
    with pytest.raises(RulesError) as info:
        asyncio.run(rules.reload(clash, seed=1))
    assert info.value.problems == ['rule "api": name: already used by a rule added through the API']
    assert [r.name for r in rules.rules] == ["api", "file"]
