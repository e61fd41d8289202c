"""The console's progress line and end-of-run summary."""

from __future__ import annotations

from blackhole.observe.console import progress_line, summary_line
from blackhole.observe.counters import Counters
from blackhole.observe.layout import ACCEPTED, DROPPED, REJECTED, SESSION_ENDS, Layout, verb_index
from blackhole.observe.snapshot import Snapshot
from blackhole.observe.tally import Tally

LAYOUT = Layout(("a", "b"))


def snap(counters: Counters) -> Snapshot:
    return Snapshot(LAYOUT, tuple(counters.value(i) for i in range(LAYOUT.size)))


def test_progress_line_reports_the_interval() -> None:
    counters = Counters.private(LAYOUT)
    for _ in range(5):
        counters.connection(0)
        counters.message(0, ACCEPTED, 10)
        counters.reply(verb_index("DATA"), 250, 0.0)
    first = snap(counters)
    for _ in range(20):
        counters.message(1, ACCEPTED, 10)
        counters.reply(verb_index("DATA"), 250, 0.0)
    counters.message(1, REJECTED, 10)
    counters.reply(verb_index("RCPT"), 550, 0.0)
    counters.session_end(0, SESSION_ENDS.index("reset"))
    line = progress_line(first, snap(counters), 10.0)
    assert line == (
        "2.1 messages/s over 10s, 4 sessions open, replies 2xx=20 4xx=0 5xx=1, "
        "sessions dropped 0 reset 1"
    )


def test_progress_across_a_reset_or_a_restarted_rule_slot_counts_the_interval() -> None:
    """A reset (or a rule slot restarted for a new rule) lowers the figures;
    what the interval counted is still what came after the earlier snapshot."""
    tally = Tally.create(LAYOUT, capacity=1)
    try:
        counters = tally.counters(tally.acquire())
        for _ in range(50):
            counters.message(0, ACCEPTED, 10)
        counters.rule_hit(1)
        before = tally.snapshot()
        counters.message(0, ACCEPTED, 10)
        tally.reset()
        counters.message(0, ACCEPTED, 10)
        assert progress_line(before, tally.snapshot(), 1.0).startswith("2.0 messages/s over 1s")
        before = tally.snapshot()
        tally.forget(LAYOUT.rule_indices(1))
        counters.message(0, ACCEPTED, 10)
        assert progress_line(before, tally.snapshot(), 1.0).startswith("1.0 messages/s over 1s")
    finally:
        tally.close()


def test_progress_names_a_fraction_of_a_second() -> None:
    empty = Snapshot.empty(LAYOUT)
    assert progress_line(empty, empty, 0.3).startswith("0.0 messages/s over 0.3s,")
    assert progress_line(empty, empty, 9.98).startswith("0.0 messages/s over 10s,")


def test_summary_line() -> None:
    counters = Counters.private(LAYOUT)
    counters.connection(1)
    counters.message(1, ACCEPTED, 1000)
    counters.message(1, DROPPED, None)
    counters.reply(verb_index("DATA"), 250, 0.0)
    counters.reply(verb_index("MAIL"), 451, 0.0)
    counters.tls(1, ok=True, seconds=0.01)
    counters.tls(0, ok=False, seconds=0.0)
    assert summary_line(snap(counters)) == (
        "run summary: 1 sessions, 2 messages (1 accepted, 0 rejected, 0 deferred, 1 dropped), "
        "1000 bytes, replies 2xx=1 4xx=1 5xx=0, TLS handshakes ok=1 failed=1"
    )
