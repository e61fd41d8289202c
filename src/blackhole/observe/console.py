"""The console lines of OBSERVE.md "Console", as pure functions of snapshots.

Wiring: the supervisor keeps the snapshot of the previous tick and, every
``stats_interval`` seconds (a timer in its wait loop; 0 turns it off), logs
``progress_line(previous, current, elapsed)``; when it stops, after the last
worker is gone and folded, it logs ``summary_line(tally.snapshot())``. Both
take the ``Tally`` figures, which are exact across workers, so the console
and ``/stats`` never disagree.
"""

from __future__ import annotations

from blackhole.observe.snapshot import Snapshot


def _classes(snapshot: Snapshot) -> str:
    counts = snapshot.replies_by_class()
    return " ".join(f"{name}={counts[name]}" for name in ("2xx", "4xx", "5xx"))


def _seconds(elapsed: float) -> str:
    """``10``, ``2.5``, ``0.3``: tenths, as ``stats_interval`` may be a fraction."""
    return f"{elapsed:.1f}".removesuffix(".0")


def progress_line(previous: Snapshot, current: Snapshot, elapsed: float) -> str:
    """Messages per second over the interval, open sessions, replies, cut sessions."""
    interval = current.since(previous)
    messages = sum(interval.message_totals().values())
    rate = messages / elapsed if elapsed > 0 else 0.0
    ends = interval.session_ends()
    return (
        f"{rate:.1f} messages/s over {_seconds(elapsed)}s, "
        f"{sum(current.sessions_open().values())} sessions open, "
        f"replies {_classes(interval)}, "
        f"sessions dropped {ends['dropped']} reset {ends['reset']}"
    )


def summary_line(snapshot: Snapshot) -> str:
    """The whole run in one line: sessions, messages, bytes, replies, TLS."""
    outcomes = snapshot.message_totals()
    tls = snapshot.tls_totals()
    detail = ", ".join(f"{value} {name}" for name, value in outcomes.items())
    return (
        f"run summary: {sum(snapshot.connections().values())} sessions, "
        f"{sum(outcomes.values())} messages ({detail}), "
        f"{sum(snapshot.message_bytes().values())} bytes, "
        f"replies {_classes(snapshot)}, "
        f"TLS handshakes ok={tls['ok']} failed={tls['failed']}"
    )
