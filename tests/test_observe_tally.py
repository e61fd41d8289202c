"""Counts across real worker processes: exact, kept through SIGKILL, never backwards."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from blackhole.observe.counters import Counters
from blackhole.observe.layout import ACCEPTED, DROPPED, MAX_LISTENERS, Layout, verb_index
from blackhole.observe.ruleslots import RuleSlots
from blackhole.observe.snapshot import RuleFigures
from blackhole.observe.tally import SlotsExhaustedError, Tally, attach_counters
from blackhole.supervisor.counting import Counting

LISTENERS = ("127.0.0.1:2525", "smtps")

# A stand-in worker started as the supervisor starts them (spawn: a fresh
# interpreter given the region's descriptor): it counts one accepted message,
# then writes one byte to stdout, as a worker counts before the client reads
# its 250; with a limit it then waits on stdin, forever.
WORKER = textwrap.dedent(
    """
    import os, sys
    from blackhole.observe.layout import ACCEPTED, Layout
    from blackhole.observe.tally import attach_counters
    fd, slot, limit = (int(a) for a in sys.argv[1:4])
    counters = attach_counters(fd, Layout(sys.argv[4:]), slot)
    counters.connection(0)
    n = 0
    while limit < 0 or n < limit:
        counters.message(0, ACCEPTED, 100)
        os.write(1, b".")
        n += 1
    os.write(1, b"!")
    sys.stdin.read()
    """
)


@pytest.fixture
def tally() -> Iterator[Tally]:
    region = Tally.create(Layout(LISTENERS), capacity=4)
    yield region
    region.close()


def start_worker(tally: Tally, slot: int, limit: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tally.fd), str(slot), str(limit), *LISTENERS],
        pass_fds=(tally.fd,),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def read_until(process: subprocess.Popen[bytes], count: int) -> int:
    """Read acknowledgements until ``count`` arrived; the number read."""
    assert process.stdout is not None
    seen = 0
    while seen < count:
        chunk = os.read(process.stdout.fileno(), 65536)
        assert chunk, "the worker exited early"
        seen += chunk.count(b".")
    return seen


def kill(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL, reap, and count the acknowledgements still in the pipe."""
    process.send_signal(signal.SIGKILL)
    assert process.stdout is not None
    rest = process.stdout.read()
    assert process.wait() == -signal.SIGKILL
    return rest.count(b".")


def test_counts_of_a_killed_worker_survive_exactly(tally: Tally) -> None:
    slot = tally.acquire()
    worker = start_worker(tally, slot, limit=500)
    read_until(worker, 500)
    kill(worker)
    tally.release(slot)
    snap = tally.snapshot()
    assert snap.message_totals()["accepted"] == 500
    assert snap.message_bytes()["127.0.0.1:2525"] == 50_000
    assert snap.size_histogram().count == 500
    assert snap.connections()["127.0.0.1:2525"] == 1
    # A gauge is not folded: the dead worker holds no session any more.
    assert snap.sessions_open()["127.0.0.1:2525"] == 0
    assert tally.in_use() == []


def test_kill_mid_count_loses_nothing_and_nothing_goes_backwards(tally: Tally) -> None:
    acked = 0
    last = 0
    for _round in range(3):
        slot = tally.acquire()
        worker = start_worker(tally, slot, limit=-1)
        acked += read_until(worker, 2000)
        middle = tally.snapshot().message_totals()["accepted"]
        assert middle >= last
        acked += kill(worker)
        before_fold = tally.snapshot().message_totals()["accepted"]
        tally.release(slot)
        after_fold = tally.snapshot().message_totals()["accepted"]
        assert before_fold == after_fold >= middle
        # The kill may land between a count and its acknowledgement: the
        # server then counted one message the "client" never saw confirmed.
        assert acked <= after_fold <= acked + _round + 1
        last = after_fold


def test_two_live_workers_and_a_retired_one_are_summed(tally: Tally) -> None:
    slots = [tally.acquire() for _ in range(3)]
    workers = [start_worker(tally, s, limit=100 * (i + 1)) for i, s in enumerate(slots)]
    for i, worker in enumerate(workers):
        read_until(worker, 100 * (i + 1))
    kill(workers[0])
    tally.release(slots[0])
    snap = tally.snapshot()
    assert snap.message_totals()["accepted"] == 600
    assert snap.connections()["127.0.0.1:2525"] == 3
    assert snap.sessions_open()["127.0.0.1:2525"] == 2  # the two still alive
    for worker in workers[1:]:
        kill(worker)


def test_reset_restarts_counters_but_not_gauges(tally: Tally) -> None:
    counters = tally.counters(tally.acquire())
    counters.connection(1)
    counters.message(1, DROPPED, None)
    tally.reset()
    snap = tally.snapshot()
    assert snap.message_totals()["dropped"] == 0
    assert snap.connections()["smtps"] == 0
    assert snap.sessions_open()["smtps"] == 1
    counters.message(1, ACCEPTED, 10)
    assert tally.snapshot().message_totals() == {
        "accepted": 1,
        "rejected": 0,
        "deferred": 0,
        "dropped": 0,
    }


def test_reset_then_fold_does_not_count_twice(tally: Tally) -> None:
    slot = tally.acquire()
    counters = tally.counters(slot)
    for _ in range(5):
        counters.message(0, ACCEPTED, 1)
    tally.reset()
    counters.message(0, ACCEPTED, 1)
    tally.release(slot)
    assert tally.snapshot().message_totals()["accepted"] == 1


def test_slots_are_bounded_and_reused(tally: Tally) -> None:
    slots = [tally.acquire() for _ in range(4)]
    with pytest.raises(SlotsExhaustedError):
        tally.acquire()
    tally.counters(slots[2]).command(verb_index("MAIL"))
    tally.release(slots[2])
    again = tally.acquire()
    assert again == slots[2]
    assert tally.counters(again).value(tally.layout.commands + verb_index("MAIL")) == 0
    assert tally.snapshot().commands()["MAIL"] == 1


def test_attach_refuses_another_layout(tally: Tally) -> None:
    # Every layout has one size (listener labels only bind slots of a fixed
    # table): a region of another size was made by another build.
    size = tally.layout.size + 1
    os.pwrite(tally.fd, size.to_bytes(8, sys.byteorder), 8)  # header word 1: the size
    with pytest.raises(ValueError, match="another layout"):
        attach_counters(tally.fd, Layout(("only-one",)), 0)


def test_listeners_a_reload_adds_get_slots_of_their_own(tally: Tally) -> None:
    slot = tally.acquire()
    tally.counters(slot).connection(1)
    layout = tally.layout.with_listeners(["smtps", "added", "127.0.0.1:2525"])
    assert layout.listeners == (*LISTENERS, "added")
    assert layout.size == tally.layout.size
    tally.relabel(layout)
    tally.counters(slot).connection(layout.listener_index("added"))  # a worker after the reload
    assert tally.snapshot().connections() == {"127.0.0.1:2525": 0, "smtps": 1, "added": 1}


def test_listener_labels_beyond_the_table_are_unbound() -> None:
    names = [f"l{n}" for n in range(MAX_LISTENERS + 2)]
    layout = Layout(names[:1]).with_listeners(names)
    assert layout.listeners == tuple(names[:MAX_LISTENERS])
    assert layout.unbound(names) == names[MAX_LISTENERS:]
    with pytest.raises(KeyError):
        layout.listener_index(names[-1])


def test_replies_histograms_and_unknown_verbs() -> None:
    counters = Counters.private(Layout(LISTENERS))
    counters.command(verb_index("xyzzy"))
    counters.reply(verb_index("EHLO"), 250, 0.0001)
    counters.reply(verb_index("EHLO"), 250, 3.0)
    counters.tls(1, ok=True, seconds=0.02)
    counters.tls(1, ok=False, seconds=0.0)
    from blackhole.observe.snapshot import Snapshot

    snap = Snapshot(counters.layout, tuple(counters.value(i) for i in range(counters.layout.size)))
    assert snap.commands()["unknown"] == 1
    assert snap.replies() == {("EHLO", 250): 2}
    assert snap.replies_by_class()["2xx"] == 2
    ehlo = snap.reply_histograms()["EHLO"]
    assert ehlo.cumulative[0] == 1  # le=0.0001 holds a value equal to the bound
    assert ehlo.count == 2
    assert ehlo.sum == pytest.approx(3.0001)
    assert snap.tls_totals() == {"ok": 1, "failed": 1}
    assert snap.tls_histogram().count == 1


def test_rule_slots_start_from_zero_when_reused(tally: Tally) -> None:
    rules = RuleSlots(tally, limit=1)
    counters = tally.counters(tally.acquire())
    first = rules.bind("greylist")
    counters.rule_hit(first)
    counters.rule_action(first)
    counters.delay(first, 1.5)
    assert rules.figures(tally.snapshot())["greylist"].delay_seconds == 1.5
    with pytest.raises(ValueError, match="at most"):
        rules.bind("another")
    rules.unbind("greylist")
    second = rules.bind("another")
    assert second == first
    figures = rules.figures(tally.snapshot())
    assert "greylist" not in figures
    assert figures["another"].hits == 0
    assert figures["mode"].delay_seconds == 0


def test_rule_slots_bound_by_a_previous_keeper_keep_their_counts(tally: Tally) -> None:
    """A restarted hub takes over the bindings the old one reported: no figure
    goes backwards (OBSERVE.md "Counting, exactly"); a slot it frees still
    starts from zero for the next rule."""
    old = RuleSlots(tally, limit=3)
    counters = tally.counters(tally.acquire())
    for name in ("file", "api"):
        slot = old.bind(name)
        counters.rule_hit(slot)
        counters.delay(slot, 0.5)
    new = RuleSlots(tally, limit=3, bound=old.names().items())
    assert new.names() == old.names()
    new.unbind("api")  # API rules do not survive the hub
    assert new.figures(tally.snapshot())["file"] == RuleFigures(1, 0, 0.5)
    assert new.bind("next") == old.names()["api"]
    assert new.figures(tally.snapshot())["next"] == RuleFigures(0, 0, 0.0)
    assert new.bind("last") not in old.names().values()


def test_a_reload_over_the_listener_table_says_which_listeners_share_a_label(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counting = Counting(["first"], workers=1)
    try:
        names = [f"l{n}" for n in range(MAX_LISTENERS + 1)]
        with caplog.at_level(logging.WARNING, "blackhole.supervisor"):
            layout = counting.listeners(names)
        assert counting.names == layout.listeners == ("first", *names[: MAX_LISTENERS - 1])
        assert counting.tally.layout is layout
        over = f"l{MAX_LISTENERS - 1}, l{MAX_LISTENERS}"
        assert f"listeners {over}: no counter slot left" in caplog.text
        assert "counted as listener first" in caplog.text
    finally:
        counting.close()
