"""Run as a separate process by tests/test_hub_store.py (and bench/hub_roundtrip.py):
decide ASKS asks of one `first = N` rule through the hub at PATH, all at once,
and print how many acted and the CPU seconds this process spent, as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from blackhole.hub.client import HubClient
from blackhole.rules.model import Selection
from blackhole.rules.store import Ask


async def main(path: str, worker: int, asks: int, first: int) -> None:
    client = HubClient(path, worker)
    assert await client.start(10.0), "no API rules from the hub"
    selection = Selection(first=first)
    ask = Ask("rule-id", "first-n", "key", selection, time.time(), 0.0, 7)
    cpu = time.process_time()
    answers = await asyncio.gather(*(client.store.decide(ask) for _ in range(asks)))
    cpu = time.process_time() - cpu
    await client.close()
    print(json.dumps({"acts": sum(a.act for a in answers), "cpu": cpu}), flush=True)


if __name__ == "__main__":
    path, worker, asks, first = sys.argv[1], *map(int, sys.argv[2:5])
    asyncio.run(main(path, worker, asks, first))
