"""What the benchmark measures: the smtp-source loads, the other phases, the reference."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    """One smtp-source load: message size, parallel sessions, connection reuse."""

    name: str
    title: str
    length: int
    sessions: int
    reuse: bool
    count: int
    quick_count: int


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("1k-reuse", "1 KB messages, connection reused", 1024, 20, True, 40_000, 2_000),
    Scenario("1k-new", "1 KB messages, new connection per message", 1024, 10, False, 10_000, 1_000),
    Scenario("100k-reuse", "100 KB messages, connection reused", 102_400, 10, True, 4_000, 300),
    Scenario(
        "500-sessions",
        "1 KB messages, 500 concurrent sessions, new connection per message",
        1024,
        500,
        False,
        15_000,
        1_500,
    ),
)
EXTRA_PHASES = ("tls", "tls-sessions", "latency", "idle")
REFERENCE = "smtp-sink"  # every load figure is also given as a ratio to this server's
# Classic reads a message line by line in Python (about 30 ms per 100 KB message
# here) and listens with asyncio's backlog of 100, so 500 sessions crawl at about
# 120 msg/s behind SYN retries: the full counts would take minutes per run.
# Its rates and CPU per message are measured on a tenth of the messages instead.
CLASSIC_SLOW = ("100k-reuse", "500-sessions")
