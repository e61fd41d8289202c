"""The cost of one RemoteStore.decide: a round trip from a worker to the hub.

Starts a real hub (as the supervisor does) and one client process that makes
DECISIONS decisions one after another (the worst case: nothing to pipeline),
then prints the wall time per decision and the CPU time per decision in the
client and in the hub. Run by hand: ``.venv/bin/python bench/hub_roundtrip.py``.

``bench/hub_roundtrip.py DECISIONS STATE_URL PARALLEL`` puts the hub's state
in Redis (``state_url``; ``-`` keeps it in the hub) and keeps PARALLEL
decisions in flight, as a busy server's sessions do: the rate it prints is
then how many decisions per second one server can get from that Redis.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from blackhole.config.model import Config
from blackhole.hub.client import HubClient
from blackhole.observe.layout import Layout
from blackhole.rules.model import Selection
from blackhole.rules.store import Ask
from blackhole.server.app import new_event_loop
from blackhole.supervisor.hubkeeper import HubKeeper

DECISIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
STATE_URL = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
PARALLEL = int(sys.argv[3]) if len(sys.argv) > 3 else 1


def cpu_of(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: PTH123, SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(path: str, hub_pid: int) -> None:
    client = HubClient(path, 1)
    assert await client.start(10.0)
    ask = Ask("id", "bench", "key", Selection(every=2), time.time(), 0.0, 1)
    for _ in range(1000):  # warm up
        await client.store.decide(ask)
    hub_cpu, cpu, wall = cpu_of(hub_pid), time.process_time(), time.perf_counter()

    async def decide(count: int) -> None:
        for _ in range(count):
            await client.store.decide(ask)

    await asyncio.gather(*(decide(DECISIONS // PARALLEL) for _ in range(PARALLEL)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    hub_cpu = cpu_of(hub_pid) - hub_cpu
    await client.close()
    per = 1e6 / DECISIONS
    print(
        f"{DECISIONS} decisions: {wall * per:.1f} us wall each, "
        f"client CPU {cpu * per:.1f} us, hub CPU {hub_cpu * per:.1f} us; "
        f"{DECISIONS / wall:.0f} decisions/s with {PARALLEL} in flight"
    )


def main() -> None:
    keeper = HubKeeper()
    keeper.bind_store()
    keeper.configure(Config(state_url=STATE_URL), None, Layout(["bench"]))
    keeper.start_and_wait([])
    try:
        assert keeper.path is not None and keeper.process is not None
        # uvloop, as in a worker.
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(run(keeper.path, keeper.process.pid))
    finally:
        keeper.stop()


if __name__ == "__main__":
    main()
