"""Idle sessions: memory per open session, and how fast a new one is greeted meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import statistics
import time
from dataclasses import dataclass

from procstats import settle_cpu, tree_memory_kib
from servers import HOST, INTERRUPTS, Server, install_interrupt_handlers


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
    greeting_ms_median: float = 0.0
    greeting_ms_max: float = 0.0


async def _read_greeting(reader: asyncio.StreamReader, timeout: float) -> None:
    line = await asyncio.wait_for(reader.readline(), timeout)
    if not line.startswith(b"220"):
        raise ConnectionError(f"greeting was {line[:60]!r}")


async def _open_session(
    port: int, gate: asyncio.Semaphore, writers: list[asyncio.StreamWriter]
) -> None:
    async with gate:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 15)
        writers.append(writer)
        await _read_greeting(reader, 15)


async def _greeting_ms(port: int) -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    try:
        await _read_greeting(reader, 10)
    finally:
        writer.close()
    return (time.perf_counter() - t0) * 1000


async def _idle(server: Server, sessions: int, result: IdleRun) -> None:
    writers: list[asyncio.StreamWriter] = []
    loop = asyncio.get_running_loop()
    try:
        await _greeting_ms(server.port)  # one session first: lazily built state is baseline
        before = await loop.run_in_executor(None, _settled_memory, server.pid)
        gate = asyncio.Semaphore(256)
        t0 = time.perf_counter()
        opening = asyncio.gather(
            *(_open_session(server.port, gate, writers) for _ in range(sessions)),
            return_exceptions=True,
        )
        # On Ctrl-C the loop is torn down under us: mark the outcome as seen, quietly.
        opening.add_done_callback(lambda done: done.cancelled() or done.exception())
        outcomes = await asyncio.wait_for(opening, timeout=180)
        result.open_s = time.perf_counter() - t0
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        result.opened = sessions - len(failures)
        after = await loop.run_in_executor(None, _settled_memory, server.pid)
        samples = [await _greeting_ms(server.port) for _ in range(7)]
        result.greeting_ms_median = statistics.median(samples)
        result.greeting_ms_max = max(samples)
        if result.opened:
            result.rss_kib_per_session = (after["rss"] - before["rss"]) / result.opened
            result.pss_kib_per_session = (after["pss"] - before["pss"]) / result.opened
            result.uss_kib_per_session = (after["uss"] - before["uss"]) / result.opened
        if failures:
            result.error = f"{len(failures)} sessions failed, first: {failures[0]!r}"
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
