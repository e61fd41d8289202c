"""Idle sessions: memory per open session, and how fast a new one is greeted meanwhile.

The sessions are opened in steps (5,000, 10,000, then all of them): at each
step a separate process (``greetprobe.py``) opens new sessions one at a time
and times their greetings, while the server's CPU per probe session is read
from /proc. A server whose cost per new session grows with the sessions open
shows it as percentiles rising from step to step.

The held sessions come from several loopback source addresses, at most
``PER_SOURCE`` each, and the probe from one of its own. With every session
from 127.0.0.1 to one port, the kernel's search for a free ephemeral port in
connect() walked past the ports already taken: with 18,500 open it took
1.9 ms at the median and 12 ms at p99, which the old single-address
benchmark reported as the server's greeting latency (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from procstats import Meter, settle_cpu, tree_memory_kib
from servers import HOST, INTERRUPTS, Server, install_interrupt_handlers

# Descriptors kept for everything but the sessions (listeners, pipes, logs,
# the probe's own), in the client and in the server: with the hard limit of
# 20,000, 19,000 sessions.
FD_SPARE = 1_000
MAX_IDLE_SESSIONS = 1_000_000  # "as many as the limit allows": run.py lowers it to that
PER_SOURCE = 4_000  # held sessions per source address: far below one address's ports
PROBES = 500  # new sessions timed at each step
STEPS = (5_000, 10_000)  # and then every session asked for
PROBE_SOURCE = "127.0.2.1"
PROBE = Path(__file__).with_name("greetprobe.py")


def held_source(index: int) -> str | None:
    """The source address of held session ``index``: 127.0.1.1, .2, ... on loopback."""
    if not HOST.startswith("127."):
        return None
    return f"127.0.1.{index // PER_SOURCE + 1}"


@dataclass
class IdleStep:
    """New sessions timed with ``sessions`` held open."""

    sessions: int
    probes: int = 0
    greeting_ms_p50: float = 0.0
    greeting_ms_p90: float = 0.0
    greeting_ms_p99: float = 0.0
    greeting_ms_max: float = 0.0
    server_us_per_session: float = 0.0  # server CPU per probe session
    error: str = ""


@dataclass
class IdleRun:
    server: str
    sessions: int
    ok: bool
    error: str = ""
    opened: int = 0
    open_s: float = 0.0
    rss_kib_per_session: float = 0.0
    pss_kib_per_session: float = 0.0
    uss_kib_per_session: float = 0.0
    # At the last step (every session open): median and p99 of PROBES.
    greeting_ms_median: float = 0.0
    greeting_ms_p99: float = 0.0
    greeting_ms_max: float = 0.0
    steps: list[IdleStep] = field(default_factory=list)


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty list."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def _read_greeting(reader: asyncio.StreamReader, timeout: float) -> None:
    line = await asyncio.wait_for(reader.readline(), timeout)
    if not line.startswith(b"220"):
        raise ConnectionError(f"greeting was {line[:60]!r}")


async def _open_session(
    port: int, index: int, gate: asyncio.Semaphore, writers: list[asyncio.StreamWriter]
) -> None:
    source = held_source(index)
    local = (source, 0) if source else None
    async with gate:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, port, local_addr=local), 15
        )
        writers.append(writer)
        await _read_greeting(reader, 15)


def _probe(server: Server, sessions: int, count: int = PROBES) -> IdleStep:
    """``count`` new sessions timed by greetprobe.py, and the server's CPU for them."""
    step = IdleStep(sessions)
    source = PROBE_SOURCE if HOST.startswith("127.") else "-"
    argv = [sys.executable, str(PROBE), HOST, str(server.port), str(count), source]
    meter = Meter(server.pid)
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=60 + count, check=False)
        answer = json.loads(proc.stdout or b"{}")
    except (subprocess.TimeoutExpired, ValueError) as exc:
        step.error = f"greetprobe: {exc}"
        return step
    usage = meter.stop()
    samples: list[float] = answer.get("ms", [])
    step.error = answer.get("error", "")
    step.probes = len(samples)
    if samples:
        step.greeting_ms_p50 = percentile(samples, 0.5)
        step.greeting_ms_p90 = percentile(samples, 0.9)
        step.greeting_ms_p99 = percentile(samples, 0.99)
        step.greeting_ms_max = max(samples)
        step.server_us_per_session = usage.server_s / len(samples) * 1e6
    return step


async def _open_up_to(
    server: Server, target: int, writers: list[asyncio.StreamWriter]
) -> list[BaseException]:
    gate = asyncio.Semaphore(256)
    opening = asyncio.gather(
        *(_open_session(server.port, i, gate, writers) for i in range(len(writers), target)),
        return_exceptions=True,
    )
    # On Ctrl-C the loop is torn down under us: mark the outcome as seen, quietly.
    opening.add_done_callback(lambda done: done.cancelled() or done.exception())
    outcomes = await asyncio.wait_for(opening, timeout=180)
    return [o for o in outcomes if isinstance(o, BaseException)]


async def _idle(server: Server, sessions: int, result: IdleRun) -> None:
    writers: list[asyncio.StreamWriter] = []
    loop = asyncio.get_running_loop()
    try:
        # One session first: lazily built state is baseline.
        await loop.run_in_executor(None, _probe, server, 0, 1)
        before = await loop.run_in_executor(None, _settled_memory, server.pid)
        failures: list[BaseException] = []
        t0 = time.perf_counter()
        for target in [*(s for s in STEPS if s < sessions), sessions]:
            failures += await _open_up_to(server, target, writers)
            if failures:
                break
            held = len(writers)
            result.steps.append(await loop.run_in_executor(None, _probe, server, held))
        result.open_s = time.perf_counter() - t0
        result.opened = len(writers) - len(failures)
        after = await loop.run_in_executor(None, _settled_memory, server.pid)
        if result.steps:
            last = result.steps[-1]
            result.greeting_ms_median = last.greeting_ms_p50
            result.greeting_ms_p99 = last.greeting_ms_p99
            result.greeting_ms_max = last.greeting_ms_max
        if result.opened:
            result.rss_kib_per_session = (after["rss"] - before["rss"]) / result.opened
            result.pss_kib_per_session = (after["pss"] - before["pss"]) / result.opened
            result.uss_kib_per_session = (after["uss"] - before["uss"]) / result.opened
        probe_errors = [s.error for s in result.steps if s.error]
        if failures:
            result.error = f"{len(failures)} sessions failed, first: {failures[0]!r}"
        elif probe_errors:
            result.error = f"new session failed: {probe_errors[0]}"
        elif server.exited():
            result.error = f"server died: {server.log_tail()}"
        result.ok = not result.error
    finally:
        for writer in writers:
            writer.close()
        await asyncio.wait_for(
            asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True), 60
        )


def _settled_memory(pid: int) -> dict[str, int]:
    settle_cpu(pid)
    return tree_memory_kib(pid)


async def _idle_interruptible(server: Server, sessions: int, result: IdleRun) -> bool:
    """Run the idle test; Ctrl-C or SIGTERM cancel it cleanly. True if interrupted."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def cancel() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    for sig in INTERRUPTS:
        loop.add_signal_handler(sig, cancel)
    try:
        await _idle(server, sessions, result)
    except asyncio.CancelledError:
        if not interrupted:
            raise
    finally:
        for sig in INTERRUPTS:
            loop.remove_signal_handler(sig)
    return interrupted


def run_idle(server: Server, sessions: int) -> IdleRun:
    result = IdleRun(server.name, sessions, ok=False)
    try:
        interrupted = asyncio.run(_idle_interruptible(server, sessions, result))
    except (OSError, TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.ok = False
        interrupted = False
    finally:
        install_interrupt_handlers()  # asyncio put the default ones back
    if interrupted:
        raise KeyboardInterrupt
    return result


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE for us and the servers we start; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, target_hard))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
