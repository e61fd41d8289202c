"""The first look at a stage event (rules.gates): exact, never a rule lost.

A gate may only ever turn away an event on which no rule of its stage could
act: the property below tries random globs and values against the engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blackhole.config.model import Config
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import StageReached
from blackhole.protocol.hooks import BIT, Stage, bits
from blackhole.protocol.settings import SessionSettings
from blackhole.rules import values
from blackhole.rules.engine import RuleSet
from blackhole.rules.gates import REMEMBERED
from blackhole.rules.match import Facts
from blackhole.rules.parse import parse_text
from blackhole.rules.store import MemoryStore
from blackhole.server.connection import SMTPProtocol
from blackhole.server.rulestate import WorkerRules
from tests.adapter_fakes import FakeTransport, Harness

# The stage, the matcher that gates it, and where its value goes in the facts.
STAGES = {
    "helo": (Stage.HELO, "helo"),
    "mail": (Stage.MAIL, "sender"),
    "rcpt": (Stage.RCPT, "recipient"),
}


def ruleset(text: str) -> RuleSet:
    return RuleSet(parse_text(text).rules, seed=1, started=0.0, store=MemoryStore())


def rules_text(at: str, matcher: str, globs: list[str]) -> str:
    return "\n".join(
        f'[[rule]]\nname = "r{i}"\nat = "{at}"\n{matcher} = {json.dumps(glob)}\n'
        'reply = "550 5.7.1 no"\n'
        for i, glob in enumerate(globs)
    )


def acts(rules: RuleSet, stage: Stage, facts: Facts) -> bool:
    return asyncio.run(rules.evaluate(stage, facts, 0.0)) is not None


CHARS = "aAbB@.*?[]!-"


def valid(pattern: str) -> bool:
    try:
        values.globs(pattern)
    except ValueError:
        return False
    return True


glob = st.text(alphabet=CHARS, min_size=0, max_size=6).filter(valid)
value_text = st.text(alphabet="aAbB@.-x", max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    at=st.sampled_from(sorted(STAGES)),
    globs=st.lists(glob, min_size=1, max_size=4),
    samples=st.lists(value_text, min_size=1, max_size=5),
)
def test_a_gate_turns_away_only_values_no_rule_acts_on(
    at: str, globs: list[str], samples: list[str]
) -> None:
    stage, field = STAGES[at]
    rules = ruleset(rules_text(at, field, globs))
    gate = rules.gates[stage]
    assert gate.field == field
    for v in samples:
        facts = Facts(
            stage,
            helo=v if field == "helo" else None,
            sender=v if field == "sender" else None,
            recipient=v if field == "recipient" else None,
        )
        assert gate.admits(v) == acts(rules, stage, facts), (globs, v)
    # At end a recipient matcher holds when any recipient does.
    end = ruleset(rules_text("end", "recipient", globs))
    facts = Facts(Stage.END, recipients=tuple(samples))
    assert end.gates[Stage.END].admits_any(samples) == acts(end, Stage.END, facts)


def test_globs_are_case_insensitive_through_the_gate() -> None:
    rules = ruleset(rules_text("rcpt", "recipient", ["*@never.invalid", "Bob@X.example"]))
    gate = rules.gates[Stage.RCPT]
    assert gate.admits("bob@x.EXAMPLE")
    assert gate.admits("A@NEVER.invalid")
    assert not gate.admits("bob@y.example")
    assert not gate.admits(None)


def test_a_gate_remembers_its_answers_within_a_bound() -> None:
    rules = ruleset(rules_text("rcpt", "recipient", ["*@hit.example"]))
    gate = rules.gates[Stage.RCPT]
    for round_ in range(2):  # the second round answers from memory, the same
        assert gate.admits("a@HIT.example"), round_
        assert not gate.admits("a@miss.example"), round_
    assert gate.seen == {"a@HIT.example": True, "a@miss.example": False}
    for n in range(REMEMBERED + 10):  # distinct values: the memory starts afresh
        assert gate.admits(f"{n}@hit.example") and not gate.admits(f"{n}@miss.example")
        assert len(gate.seen) <= REMEMBERED


def test_no_gate_unless_every_rule_of_the_stage_sets_the_field() -> None:
    text = rules_text("rcpt", "recipient", ["*@a.example"]) + (
        '\n[[rule]]\nname = "any"\nat = "rcpt"\nclient = "192.0.2.0/24"\nreply = "450 4.2.0 x"\n'
    )
    assert Stage.RCPT not in ruleset(text).gates


def test_the_end_gate_falls_back_to_the_sender() -> None:
    text = rules_text("end", "sender", ["a@x", ""])
    gate = ruleset(text).gates[Stage.END]
    assert gate.field == "sender"
    assert gate.admits("") and gate.admits("A@X")  # "" is the null sender
    assert not gate.admits(None)


def test_an_api_rule_without_the_field_opens_the_gate() -> None:
    rules = ruleset(rules_text("mail", "sender", ["a@x"]))
    assert Stage.MAIL in rules.gates
    rules.add(parse_text('[[rule]]\nname = "all"\nat = "mail"\nreply = "450 4.2.0 x"\n').rules[0])
    assert Stage.MAIL not in rules.gates


class Core:
    """A core watching RCPT, with a screen that answers from a set."""

    def __init__(self, admitted: set[str]) -> None:
        self.asked: list[tuple[Stage, str | None]] = []
        self.core = SMTPConnection(SessionSettings(mailname="mx.test"))
        self.core.watch = bits({Stage.RCPT})

        def screen(stage: Stage, value: str | None) -> bool:
            self.asked.append((stage, value))
            return value in admitted

        self.core.screen = screen
        self.core.start()
        self.core.receive_data(b"EHLO c\r\nMAIL FROM:<a@x>\r\n")
        self.core.data_to_send()


def test_a_screened_stage_runs_the_command_as_if_unwatched() -> None:
    c = Core(admitted={"watched@x"})
    c.core.receive_data(b"RCPT TO:<other@x>\r\nRCPT TO:<watched@x>\r\nRCPT TO:<more@x>\r\n")
    event = c.core.next_event()
    assert isinstance(event, StageReached) and event.value == "watched@x"
    assert c.asked == [(Stage.RCPT, "other@x"), (Stage.RCPT, "watched@x")]
    c.core.resolve(None)
    assert c.core.next_event() is None
    assert c.core.data_to_send().count(b"250 ") == 3
    assert c.core.recipients == ["other@x", "watched@x", "more@x"]


def test_a_screened_stage_still_answers_the_commands_own_refusal() -> None:
    # The screen is asked only once the command itself has been checked.
    c = Core(admitted=set())
    c.core.receive_data(b"RCPT TO:<bad address>\r\n")
    assert c.core.next_event() is None
    assert c.asked == []
    assert c.core.data_to_send().startswith(b"501 ")


class Adapter:
    """A worker's session on a fake loop (tests/adapter_fakes.py) under ``rules``."""

    def __init__(self, rules: str) -> None:
        config = Config(timeout=30, rules=parse_text(rules))
        self.harness = Harness(config)
        self.harness.state.rules = WorkerRules(config)
        self.session, self.transport = self.harness.connect()
        self.transport.take()

    def say(self, line: bytes) -> bytes:
        self.session.data_received(line)
        return self.transport.take()


RCPT_RULES = rules_text("rcpt", "recipient", ["*@never.invalid"])


def test_a_session_skips_a_value_no_rule_matches_and_acts_on_one_that_does() -> None:
    a = Adapter(RCPT_RULES)
    a.say(b"EHLO c\r\n")
    a.say(b"MAIL FROM:<a@x>\r\n")
    assert a.say(b"RCPT TO:<b@example.com>\r\n").startswith(b"250 ")
    assert a.say(b"RCPT TO:<B@Never.Invalid>\r\n").startswith(b"550 5.7.1 no")


def test_at_debug_level_every_rule_still_says_why_it_does_not_hold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The level is the one in force when the worker starts (its ServerState),
    # which -d or -q set for the worker's life.
    with caplog.at_level(logging.DEBUG, logger="blackhole.rules"):
        a = Adapter(RCPT_RULES)
        a.say(b"EHLO c\r\n")
        a.say(b"MAIL FROM:<a@x>\r\n")
        assert a.say(b"RCPT TO:<b@example.com>\r\n").startswith(b"250 ")
    assert "rule r0 at rcpt: recipient does not hold" in caplog.text


def test_a_session_started_below_debug_level_keeps_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = Adapter(RCPT_RULES)
    a.say(b"EHLO c\r\n")
    with caplog.at_level(logging.DEBUG, logger="blackhole.rules"):
        assert a.say(b"MAIL FROM:<a@x>\r\n").startswith(b"250 ")
        assert a.say(b"RCPT TO:<b@example.com>\r\n").startswith(b"250 ")
    assert "does not hold" not in caplog.text


# --- the client gate: a stage ruled out once per client address -------------------------

network = st.builds(
    lambda a, b, bits: f"10.{a}.{b}.0/{bits}",
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from([8, 16, 24, 30]),
)
address = st.builds(lambda a, b, c: f"10.{a}.{b}.{c}", *[st.integers(0, 3)] * 3) | st.sampled_from(
    ["::1", "2001:db8::1", "not an address"]
)


@settings(max_examples=200, deadline=None)
@given(
    at=st.sampled_from(["connect", "mail", "rcpt"]),
    nets=st.lists(network, min_size=1, max_size=3),
    clients=st.lists(address, min_size=1, max_size=4),
)
def test_a_stage_is_barred_for_a_client_only_when_no_rule_acts_on_it(
    at: str, nets: list[str], clients: list[str]
) -> None:
    rules = ruleset(rules_text(at, "client", nets))
    stage = Stage(at)
    for client in clients:
        facts = Facts(stage, client=client, sender="a@x", recipient="b@y")
        assert (stage in rules.barred(client)) != acts(rules, stage, facts), (nets, client)
    assert stage in rules.barred(None)  # a UNIX socket's client has no address


def test_no_stage_is_barred_unless_every_rule_of_it_sets_a_client() -> None:
    text = rules_text("rcpt", "client", ["192.0.2.0/24"]) + (
        '\n[[rule]]\nname = "any"\nat = "rcpt"\nreply = "450 4.2.0 x"\n'
    )
    assert ruleset(text).barred("198.51.100.1") == frozenset()


class PeerTransport(FakeTransport):
    """A fake transport whose peer is ``PEER``."""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return PEER if name == "peername" else default


PEER = ("198.51.100.7", 40000)


def peer_session(rules: str) -> tuple[SMTPProtocol, PeerTransport, WorkerRules]:
    config = Config(timeout=30, rules=parse_text(rules))
    harness = Harness(config)
    worker_rules = harness.state.rules = WorkerRules(config)
    session = SMTPProtocol(harness.context, harness.state)
    transport = PeerTransport(session)
    session.connection_made(cast(asyncio.Transport, transport))
    return session, transport, worker_rules


def test_a_session_whose_client_no_connect_rule_holds_is_greeted_at_once() -> None:
    session, transport, _ = peer_session(rules_text("connect", "client", ["192.0.2.0/24"]))
    assert session.core is not None and not session.core.watch & BIT[Stage.CONNECT]
    assert transport.take().startswith(b"220 ")


def test_a_connect_rule_holding_the_client_still_acts() -> None:
    _, transport, _ = peer_session(rules_text("connect", "client", ["198.51.100.0/24"]))
    assert transport.take().startswith(b"550 5.7.1 no")


def test_at_debug_level_a_connect_rule_that_does_not_hold_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="blackhole.rules"):
        _, transport, _ = peer_session(rules_text("connect", "client", ["192.0.2.0/24"]))
    assert transport.take().startswith(b"220 ")
    assert "rule r0 at connect: client does not hold" in caplog.text


def test_a_rule_added_during_a_session_is_not_barred_by_the_rules_before_it() -> None:
    # The session started when the only rcpt rule was for another client: a
    # rule for everyone added meanwhile acts on its next recipient all the same.
    session, transport, worker_rules = peer_session(rules_text("rcpt", "client", ["192.0.2.0/24"]))
    transport.take()
    for line in (b"EHLO c\r\n", b"MAIL FROM:<a@x>\r\n"):
        session.data_received(line)
    session.data_received(b"RCPT TO:<b@y>\r\n")
    assert transport.take().endswith(b"250 2.1.5 OK\r\n")
    rule = '[[rule]]\nname = "all"\nat = "rcpt"\nreply = "451 4.7.1 later"\n'
    worker_rules.ruleset.replace_api(parse_text(rule).rules)
    session.data_received(b"RCPT TO:<c@y>\r\n")
    assert transport.take() == b"451 4.7.1 later\r\n"
