"""The two phases of a run, and the wait for a quiet machine before them.

Throughput: every load scenario and the TLS handshakes on servers started once,
alternating between them. Idle: a freshly started server each, one at a time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from handshakes import run_tls, tls_parameters
from idle import run_idle
from load import run_load, warm_up
from procstats import NOISY_PCT, system_busy_seconds
from results import Results
from scenarios import Scenario
from servers import Server, running


def wait_quiet(limit: float, window: float = 5.0, quiet_pct: float = NOISY_PCT) -> None:
    """Wait (at most ``limit`` s) for a ``window`` in which the machine is nearly idle."""
    deadline = time.monotonic() + limit
    while True:
        busy0, t0 = system_busy_seconds(), time.monotonic()
        time.sleep(window)
        busy = 100 * (system_busy_seconds() - busy0) / (time.monotonic() - t0)
        if busy <= quiet_pct:
            print(f"machine quiet: {busy:.0f}% of a core busy over {window:.0f} s", flush=True)
            return
        if time.monotonic() + window > deadline:
            print(f"machine still busy ({busy:.0f}% of a core): starting anyway", flush=True)
            return
        print(f"  waiting for a quieter machine: {busy:.0f}% of a core busy", flush=True)


def rotated(items: Sequence[Server], by: int) -> list[Server]:
    by %= max(len(items), 1)
    return [*items[by:], *items[:by]]


def throughput_phase(
    servers: list[Server],
    scenarios: Sequence[Scenario],
    options: argparse.Namespace,
    results: Results,
    with_tls: bool,
) -> None:
    """Every scenario, every repetition, servers alternating (rotated each repetition)."""
    smtp_servers = [s for s in servers if s.has_smtp]
    if scenarios:
        for server in smtp_servers:
            if any(server.takes_part(s.name) for s in scenarios):
                warm_up(server)
    for rep in range(options.repeat):
        for scenario in scenarios:
            for server in rotated(smtp_servers, rep):
                if not server.takes_part(scenario.name):
                    continue
                count = server.count(scenario, results.counts[scenario.name])
                run = run_load(server, scenario, count, rep)
                results.load_runs.append(run)
                text = f"{run.msgs_per_s:,.0f} msg/s, {run.cpu_us_per_msg:,.1f} µs CPU/msg"
                if run.hub_cpu_us_per_msg is not None:
                    text += f" (worker {run.worker_cpu_us_per_msg:,.1f}"
                    text += f", hub {run.hub_cpu_us_per_msg:,.1f})"
                text += f", {run.scrapes} scrapes" if run.scrapes else ""
                text += f", {run.listen_drops:,} listen drops" if run.listen_drops else ""
                results.note(scenario.name, server.name, rep, run.error, text)
    if not with_tls:
        return
    tls_servers = [s for s in servers if s.has_tls and s.takes_part("tls")]
    for server in tls_servers:
        results.tls_info[server.name] = tls_parameters(server)
    for rep in range(options.repeat):
        for server in rotated(tls_servers, rep):
            tls_run = run_tls(server, options.tls_seconds, options.tls_clients, rep)
            results.tls_runs.append(tls_run)
            text = (
                f"{tls_run.per_s:,.0f} handshakes/s, "
                f"{tls_run.cpu_us_per_handshake:,.0f} µs CPU/handshake"
            )
            results.note("tls", server.name, rep, tls_run.error, text)


def idle_phase(servers: list[Server], options: argparse.Namespace, results: Results) -> None:
    """A fresh server each (a used heap would hide growth), one worker, one at a time."""
    for server in servers:
        if server.workers != 1 or not server.has_smtp or not server.takes_part("idle"):
            continue
        with running([server], results.status) as alive:
            if not alive:
                continue
            run = run_idle(server, options.idle_sessions)
            results.idle[server.name] = run
            text = (
                f"{run.rss_kib_per_session:.2f} KiB RSS/session, "
                f"new greeting {run.greeting_ms_max:.1f} ms"
            )
            results.note("idle", server.name, 0, run.error, text)
