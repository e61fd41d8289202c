"""The SMTP loads: Postfix smtp-source against one server, with its CPU cost."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from procstats import Meter, listen_drops
from scenarios import SCENARIOS, Scenario
from scraper import Scraper
from servers import HOST, Server, find_tool


@dataclass
class LoadRun:
    server: str
    scenario: str
    repetition: int
    count: int
    ok: bool
    error: str = ""
    delivered: int = 0
    wall_s: float = 0.0
    msgs_per_s: float = 0.0
    server_cpu_s: float = 0.0
    cpu_us_per_msg: float = 0.0
    server_cpu_pct: float = 0.0
    generator_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0  # the rest of the machine: noise if well above zero
    listen_drops: int = 0  # SYNs dropped at a full accept queue (whole namespace)
    # Blackhole only: the server's CPU per message split by process (workers, hub).
    user_cpu_us_per_msg: float | None = None  # the user-space part of cpu_us_per_msg
    worker_cpu_us_per_msg: float | None = None
    hub_cpu_us_per_msg: float | None = None
    scrapes: int = 0  # GET /metrics answered during the run (scrape variants)


def smtp_source_argv(scenario: Scenario, count: int, port: int) -> list[str]:
    tool = find_tool("smtp-source")
    if tool is None:
        raise SystemExit("smtp-source not found: apt-get install postfix (see bench/README.md)")
    return [
        tool,
        "-c",  # print the running count: we check every message got through
        *(["-d"] if scenario.reuse else []),
        "-s", str(scenario.sessions),
        "-m", str(count),
        "-l", str(scenario.length),
        "-M", "localhost",  # no host name lookups in the generator
        "-f", "bench@localhost",
        "-t", "sink@localhost",
        f"{HOST}:{port}",
    ]  # fmt: skip


def last_count(output: bytes) -> int:
    numbers = re.findall(rb"\d+", output)
    return int(numbers[-1]) if numbers else 0


def run_load(server: Server, scenario: Scenario, count: int, repetition: int) -> LoadRun:
    argv = smtp_source_argv(scenario, count, server.port)
    # Far above the slowest server (10 ms per message plus 1 ms per KB); the run
    # stops by itself, this only bounds a hung one.
    timeout = 20 + count * (0.01 + scenario.length / 1024 * 0.001)
    result = LoadRun(server.name, scenario.name, repetition, count, ok=False)
    if server.exited():
        result.error = f"server died: {server.log_tail()}"
        return result
    meter = Meter(server.pid)
    drops0 = listen_drops()
    try:
        with Scraper(HOST, server.control_port if server.scrapes else 0) as scraper:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        result.error = f"timed out after {timeout:.0f} s"
        return result
    usage = meter.stop()
    result.scrapes = scraper.scrapes
    result.listen_drops = listen_drops() - drops0
    result.wall_s = usage.wall_s
    result.server_cpu_s = usage.server_s
    result.delivered = last_count(proc.stdout)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip().splitlines()
        result.error = f"smtp-source exit {proc.returncode}: {' | '.join(stderr[-2:])}"
    elif result.delivered != count:
        result.error = f"only {result.delivered} of {count} messages delivered"
    elif scraper.failures:
        result.error = f"{scraper.failures} GET /metrics failed: {scraper.error}"
    result.ok = not result.error
    result.msgs_per_s = result.delivered / result.wall_s if result.wall_s else 0.0
    if result.delivered:
        result.cpu_us_per_msg = result.server_cpu_s / result.delivered * 1e6
        result.user_cpu_us_per_msg = usage.server_user_s / result.delivered * 1e6
        if server.kind == "blackhole":
            per_msg = 1e6 / result.delivered
            result.worker_cpu_us_per_msg = usage.roles.get("worker", 0.0) * per_msg
            result.hub_cpu_us_per_msg = usage.roles.get("hub", 0.0) * per_msg
    result.server_cpu_pct, result.generator_cpu_pct, result.other_cpu_pct = usage.shares()
    return result


def warm_up(server: Server) -> None:
    """A short unmeasured run: imports, caches and every worker get going first."""
    run_load(server, SCENARIOS[0], 200, repetition=-1)
