"""The pure decisions: which answer a message gets, and how late (SPEC "Choosing the answer")."""

from __future__ import annotations

import random
import re

import pytest

from blackhole.policy.decide import Defaults, Policy
from blackhole.policy.modes import MAX_DELAY, Delay, Mode
from blackhole.policy.switches import parse_delay, parse_mode
from blackhole.protocol.replies import BOUNCES, Reply
from tests.classic import CLASSIC_BOUNCES

_QUEUED = re.compile(r"OK: queued as (\S+)")


def policy(seed: int = 1) -> Policy:
    return Policy(random.Random(seed))


def kind(reply: Reply) -> str:
    return "accept" if reply.code == 250 else "bounce"


# --- precedence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "header", "config", "expected"),
    [
        (Mode.BOUNCE, "accept", Mode.ACCEPT, "bounce"),  # listener flag beats all
        (Mode.ACCEPT, "bounce", Mode.BOUNCE, "accept"),
        (None, "bounce", Mode.ACCEPT, "bounce"),  # then the header
        (None, "accept", Mode.BOUNCE, "accept"),
        (None, None, Mode.BOUNCE, "bounce"),  # then the config
        (None, None, Mode.ACCEPT, "accept"),
    ],
)
def test_mode_precedence(
    listener: Mode | None, header: str | None, config: Mode, expected: str
) -> None:
    defaults = Defaults(mode=config, delay=None, listener_mode=listener)
    p = policy()
    for _ in range(20):
        reply, _delay = p.decide(defaults, header, None)
        assert kind(reply) == expected


@pytest.mark.parametrize(
    ("listener", "header", "config", "expected"),
    [
        (Delay.fixed(3), "7", Delay.fixed(9), 3.0),
        (None, "7", Delay.fixed(9), 7.0),
        (None, None, Delay.fixed(9), 9.0),
        (None, None, None, 0.0),
        (Delay.fixed(0), "7", None, 0.0),  # an explicit 0 on the listener still wins
    ],
)
def test_delay_precedence(
    listener: Delay | None, header: str | None, config: Delay | None, expected: float
) -> None:
    defaults = Defaults(mode=Mode.ACCEPT, delay=config, listener_delay=listener)
    assert policy().decide(defaults, None, header)[1] == expected


def test_mode_and_delay_are_chosen_independently() -> None:
    # A listener that sets only mode= still lets the header choose the delay.
    defaults = Defaults(mode=Mode.ACCEPT, delay=None, listener_mode=Mode.BOUNCE)
    reply, delay = policy().decide(defaults, "accept", "4")
    assert (kind(reply), delay) == ("bounce", 4.0)


@pytest.mark.parametrize("value", ["", "  ", "bogus", "accepted", "bounce,accept", "BOUNCE!", "b"])
def test_invalid_mode_header_ignored(value: str) -> None:
    assert parse_mode(value) is None
    defaults = Defaults(mode=Mode.BOUNCE, delay=None)
    assert kind(policy().decide(defaults, value, None)[0]) == "bounce"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("accept", Mode.ACCEPT), (" Bounce ", Mode.BOUNCE), ("RANDOM", Mode.RANDOM), (None, None)],
)
def test_mode_header_values(value: str | None, expected: Mode | None) -> None:
    assert parse_mode(value) is expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "soon",
        "-1",
        "5-",
        "-",
        ",",
        "10, 5",  # low above high
        "1, 2, 3",
        "nan",
        "inf",
        "-inf",
        "1e3",
        "1_0",  # float() would take these; a header should not
        "\u0663",  # ARABIC-INDIC DIGIT THREE, float() takes it too
        "0x10",
        "+5",
        "5 5",
    ],
)
def test_invalid_delay_header_ignored(value: str) -> None:
    assert parse_delay(value) is None
    defaults = Defaults(mode=Mode.ACCEPT, delay=Delay.fixed(1))
    assert policy().decide(defaults, None, value)[1] == 1.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", Delay(0, 0)),
        ("5", Delay(5, 5)),
        (" 2.5 ", Delay(2.5, 2.5)),
        ("1, 5", Delay(1, 5)),
        ("1,5", Delay(1, 5)),
        ("1-5", Delay(1, 5)),
        ("3, 3", Delay(3, 3)),
        (".5", Delay(0.5, 0.5)),  # the config file's grammar (policy/modes.py)
        (" 1 - 5 ", Delay(1, 5)),
        ("61", Delay(60, 60)),  # capped, the classic limit
        ("3600", Delay(60, 60)),
        ("10, 500", Delay(10, 60)),
        ("100, 200", Delay(60, 60)),
        ("99999999999999999999999", Delay(60, 60)),
        (None, None),
    ],
)
def test_delay_header_values(value: str | None, expected: Delay | None) -> None:
    assert parse_delay(value) == expected


def test_delays_are_capped_at_sixty_seconds() -> None:
    defaults = Defaults(mode=Mode.ACCEPT, delay=None)
    p = policy()
    for header in ("61", "1000", "59, 5000", "60.5"):
        assert p.decide(defaults, None, header)[1] <= MAX_DELAY
    with pytest.raises(ValueError, match="delay"):
        Delay(0, 61)
    with pytest.raises(ValueError, match="delay"):
        Delay(5, 4)
    with pytest.raises(ValueError, match="delay"):
        Delay(-1, 4)


def test_delay_ranges_stay_within_bounds() -> None:
    p = policy(7)
    delay = Delay(2, 4)
    draws = [p.seconds(delay) for _ in range(2000)]
    assert all(2 <= d <= 4 for d in draws)
    assert min(draws) < 2.2 and max(draws) > 3.8  # the range is used, not one end of it
    assert p.seconds(Delay.fixed(5)) == 5.0
    assert p.seconds(None) == 0.0


# --- randomness ------------------------------------------------------------------------


def test_seeded_random_makes_decisions_replayable() -> None:
    defaults = Defaults(mode=Mode.RANDOM, delay=Delay(0, 10))

    def run(seed: int) -> list[tuple[str, float]]:
        # Queue ids are unique per process whatever the seed (names, not
        # decisions): every other byte of every reply replays.
        p = policy(seed)
        replies = (p.decide(defaults, None, None) for _ in range(200))
        return [(_QUEUED.sub("queued as ID", r.wire.decode()), d) for r, d in replies]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_random_mode_gives_accept_and_every_bounce() -> None:
    p = policy(3)
    draws = [p.reply_for(Mode.RANDOM) for _ in range(3000)]
    codes = {r.code for r in draws}
    assert codes == {250, *CLASSIC_BOUNCES}
    # Uniform over the eleven answers: each within a generous margin of 1/11.
    for code in codes:
        share = sum(r.code == code for r in draws) / len(draws)
        assert 0.05 < share < 0.14, (code, share)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_random_accept_sets_the_share_of_accepts(share: float) -> None:
    defaults = Defaults(mode=Mode.RANDOM, delay=None, random_accept=share)
    p = policy(7)
    draws = [p.decide(defaults, None, None)[0] for _ in range(4000)]
    accepted = sum(r.code == 250 for r in draws) / len(draws)
    assert abs(accepted - share) < 0.03, accepted
    if share < 1.0:
        # The rest are bounces, every one of them.
        assert {r.code for r in draws} - {250} == set(CLASSIC_BOUNCES)


def test_random_accept_is_ignored_outside_random_mode() -> None:
    p = policy(9)
    bounce = Defaults(mode=Mode.BOUNCE, delay=None, random_accept=1.0)
    assert all(p.decide(bounce, None, None)[0].code != 250 for _ in range(200))
    # A message switched to random by its header gets the configured share too.
    accept_all = Defaults(mode=Mode.BOUNCE, delay=None, random_accept=1.0)
    assert all(p.decide(accept_all, "random", None)[0].code == 250 for _ in range(200))


def test_bounce_mode_gives_only_bounces_and_all_of_them() -> None:
    p = policy(5)
    draws = [p.reply_for(Mode.BOUNCE) for _ in range(1000)]
    assert {r.code for r in draws} == set(CLASSIC_BOUNCES)


def test_accept_mode_ids_are_unique() -> None:
    # The classic server reused one id per connection; every message gets its own.
    p = policy()
    ids = []
    for _ in range(5000):
        reply = p.reply_for(Mode.ACCEPT)
        assert reply.code == 250 and reply.enhanced == "2.0.0"
        m = _QUEUED.fullmatch(reply.text)
        assert m is not None, reply.text
        ids.append(m.group(1))
    assert len(set(ids)) == len(ids)
    # Two policies (two workers) seeded differently do not collide either.
    other = policy(2)
    theirs = {_QUEUED.fullmatch(other.reply_for(Mode.ACCEPT).text).group(1) for _ in range(100)}  # type: ignore[union-attr]
    assert not theirs & set(ids)


def test_bounces_carry_the_classic_texts_and_fitting_enhanced_codes() -> None:
    assert {b.code: b.text for b in BOUNCES} == CLASSIC_BOUNCES
    for bounce in BOUNCES:
        assert bounce.enhanced is not None
        # RFC 3463 section 2: the class digit of the enhanced code is the
        # first digit of the basic code (4.x.x with 4yz, 5.x.x with 5yz).
        assert re.fullmatch(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}", bounce.enhanced)
        assert bounce.enhanced[0] == str(bounce.code)[0]
        assert bounce.wire == (f"{bounce.code} {bounce.enhanced} {bounce.text}\r\n").encode()


@pytest.mark.parametrize("start", [0, 0xFFE, 0xABCDE, (1 << 24) - 3, 1 << 40])
def test_queue_ids_are_the_prefix_and_the_counter_in_at_least_six_hex_digits(start: int) -> None:
    decider = policy()
    first = decider.queue_id()
    prefix = first[: -len("000001")]
    assert first == f"{prefix}000001"
    decider._counter = start  # jump to the digits under test
    for n in range(start + 1, start + 6):
        assert decider.queue_id() == f"{prefix}{n:06X}"
