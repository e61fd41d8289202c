"""The control API over real counts: /stats and /metrics agree with what was acknowledged,
message for message, with a worker SIGKILLed in the middle of the load."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blackhole.control.serve import ControlServer, start
from blackhole.observe.layout import Layout
from blackhole.observe.ruleslots import RuleSlots
from blackhole.observe.snapshot import Figures
from blackhole.observe.tally import Tally
from tests.test_observe_tally import LISTENERS, kill, read_until, start_worker


class TallyBackend:
    """Figures from a real Tally; the rest is not under test here."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.slots = RuleSlots(tally)

    def health(self) -> tuple[bool, list[str]]:
        return True, []

    def figures(self) -> Figures:
        snapshot = self.tally.snapshot()
        return Figures(snapshot, self.slots.figures(snapshot), 1, 1.0)

    def rules(self) -> list[dict[str, Any]]:
        return []

    async def add_rule(self, fields: dict[str, Any], ttl: float | None) -> dict[str, Any]:
        raise NotImplementedError

    async def remove_rule(self, name: str) -> None:
        raise NotImplementedError

    async def remove_all_rules(self) -> None:
        raise NotImplementedError

    async def reset(self) -> None:
        self.tally.reset()

    def messages(self, limit: int | None) -> list[dict[str, Any]]:
        return []


@pytest.fixture
def served() -> Iterator[tuple[Tally, int]]:
    tally = Tally.create(Layout(LISTENERS), capacity=4)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    coroutine = start(TallyBackend(tally), "127.0.0.1", 0, None)
    server: ControlServer = asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)
    try:
        yield tally, server.port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        tally.close()


def get(port: int, path: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own URL
        body: bytes = response.read()
        return body


def accepted_in_metrics(port: int) -> float:
    text = get(port, "/metrics").decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "blackhole_messages"
        for sample in family.samples
        if sample.labels["outcome"] == "accepted"
    )


def test_stats_and_metrics_agree_with_the_acknowledgements_across_a_sigkill(
    served: tuple[Tally, int],
) -> None:
    tally, port = served
    survivor_slot, victim_slot = tally.acquire(), tally.acquire()
    survivor = start_worker(tally, survivor_slot, limit=1000)
    victim = start_worker(tally, victim_slot, limit=-1)
    acked = read_until(survivor, 1000)
    acked += read_until(victim, 3000)
    acked += kill(victim)  # mid-load: it was counting as fast as it could
    tally.release(victim_slot)
    replacement = start_worker(tally, tally.acquire(), limit=500)
    acked += read_until(replacement, 500)

    stats = json.loads(get(port, "/stats"))
    # A SIGKILL between a count and its acknowledgement leaves the server one
    # ahead of the client for that one message, never behind.
    assert acked <= stats["messages"]["accepted"] <= acked + 1
    assert accepted_in_metrics(port) == stats["messages"]["accepted"]
    assert stats["connections"] == 3
    assert stats["sessions_open"] == 2  # survivor and replacement

    get(port, "/reset", method="POST")
    assert json.loads(get(port, "/stats"))["messages"]["accepted"] == 0
    assert accepted_in_metrics(port) == 0
    assert json.loads(get(port, "/stats"))["sessions_open"] == 2
    for process in (survivor, replacement):
        kill(process)
