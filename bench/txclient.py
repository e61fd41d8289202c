"""Whole SMTP transactions, a new connection each, timed reply by reply: the latency client.

Run by ``latency.py`` as a process of its own. Two ways to drive a server:

* ``closed N``: N connections at a time, each starting its next transaction
  as soon as the last ends: the most transactions a second this client and
  the server reach together.
* ``open RATE``: transaction i starts at i / RATE seconds, whatever happened
  to the ones before (an open loop: a slow reply does not slow the offered
  load, so it cannot hide itself). Its total time counts from when it was due
  to start, so time spent waiting for this client to get to it counts too.

Each transaction: connect, greeting, EHLO, MAIL, RCPT, DATA, 1 KB of content
and the final dot, QUIT (RFC 5321 section 3.3). Besides each reply, the time
is split into "start" (how late the client began it: its own lag) and
"connect" (the TCP handshake, answered by the kernel for the server). Bounded by COUNT
transactions and SECONDS of wall time, whichever comes first.

    python bench/txclient.py HOST PORT closed|open N_OR_RATE COUNT SECONDS OUT

writes one JSON object to the file OUT (hundreds of KB: a pipe once lost
part of it): done, errors, the first error, elapsed seconds, and the
milliseconds of every transaction ("total") and of every reply.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

REPLY_TIMEOUT_S = 10.0
BODY = (
    b"From: bench@localhost\r\nTo: sink@localhost\r\nSubject: latency\r\n\r\n"
    + (b"x" * 76 + b"\r\n") * 12
)
STEPS: tuple[tuple[str, bytes, bytes], ...] = (
    ("EHLO", b"EHLO bench.example\r\n", b"250"),
    ("MAIL", b"MAIL FROM:<bench@localhost>\r\n", b"250"),
    ("RCPT", b"RCPT TO:<sink@localhost>\r\n", b"250"),
    ("DATA", b"DATA\r\n", b"354"),
    ("end of data", BODY + b".\r\n", b"250"),
    ("QUIT", b"QUIT\r\n", b"221"),
)
NAMES = ("total", "start", "connect", "greeting", *(name for name, _, _ in STEPS))


async def reply(reader: asyncio.StreamReader, code: bytes) -> None:
    """Read one whole reply (its last line has a space after the code)."""
    while True:
        line = await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT_S)
        if not line.startswith(code):
            raise ConnectionError(f"expected {code.decode()}, got {line[:60]!r}")
        if line[3:4] != b"-":
            return


async def transaction(host: str, port: int, due: float, times: dict[str, list[float]]) -> None:
    clock = time.perf_counter
    t0 = clock()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), REPLY_TIMEOUT_S)
    connected = clock()
    try:
        await reply(reader, b"220")
        # "start": how late this client began the transaction (its own lag);
        # "connect": the TCP handshake, which the kernel answers for the server.
        mine = {"start": t0 - due, "connect": connected - t0, "greeting": clock() - connected}
        for name, command, code in STEPS:
            t = clock()
            writer.write(command)
            await reply(reader, code)
            mine[name] = clock() - t
        mine["total"] = clock() - due
    finally:
        writer.close()
    for name, seconds in mine.items():
        times[name].append(seconds * 1000)


class Run:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.times: dict[str, list[float]] = {name: [] for name in NAMES}
        self.errors = 0
        self.first_error = ""

    async def one(self, due: float) -> None:
        try:
            await transaction(self.host, self.port, due, self.times)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.errors += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"

    async def closed(self, sessions: int, count: int, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        left = [count]

        async def worker() -> None:
            while left[0] > 0 and time.perf_counter() < deadline:
                left[0] -= 1
                await self.one(time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(sessions)))

    async def open(self, rate: float, count: int, seconds: float) -> None:
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            due = start + i / rate
            if due - start > seconds:
                break
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self.one(due)))
        await asyncio.gather(*tasks)


def main(argv: list[str]) -> int:
    host, port, how, amount, count, seconds, out = argv
    run = Run(host, int(port))
    try:
        import uvloop  # noqa: PLC0415 - the client's own overhead, kept small when it is there
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    t0 = time.perf_counter()
    if how == "closed":
        runner(run.closed(int(amount), int(count), float(seconds)))
    else:
        runner(run.open(float(amount), int(count), float(seconds)))
    elapsed = time.perf_counter() - t0
    answer = {
        "done": len(run.times["total"]),
        "errors": run.errors,
        "first_error": run.first_error,
        "elapsed": elapsed,
        "ms": run.times,
    }
    Path(out).write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
