"""The floor: the least an SMTP sink written in Python on uvloop can cost.

Not a server anyone should use: it answers smtp-source's conversation from a
script (220 on connect, 354 to DATA, 221 to QUIT, 250 to any other line and
to the end of a message) and checks nothing. What it keeps is what any
Python server on uvloop must pay: the accept and the transport uvloop makes
for each connection, a protocol object, one Python call per read, one write
per batch of replies. ``bench/worker_cost.py --floor`` measures it under the
same loads as Blackhole's worker and smtp-sink, so that the part of a
message's CPU no feature and no code of Blackhole's can remove is a figure,
not a guess (docs/performance.md, "The floor of Python on uvloop").

``python bench/floor.py PORT_FILE`` binds an ephemeral loopback port and
writes it to PORT_FILE (``worker_cost.py``); ``python bench/floor.py --listen
HOST:PORT`` binds that address (``run.py``'s server ``floor``). It serves
until SIGTERM; SIGUSR1 prints its CPU seconds (total, then user) on stdout.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import sys
from pathlib import Path
from typing import Any, cast

import uvloop

GREETING = b"220 floor ESMTP\r\n"
GO_AHEAD = b"354 go ahead\r\n"
OK = b"250 ok\r\n"
BYE = b"221 bye\r\n"
END = b"\r\n.\r\n"


class Floor(asyncio.Protocol):
    """One session, answered from the script; pipelined lines are answered together."""

    __slots__ = ("buf", "data", "transport")

    def __init__(self) -> None:
        self.buf = b""
        self.data = False  # between 354 and the end of the message
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(GREETING)

    def data_received(self, chunk: bytes) -> None:
        buf = self.buf + chunk if self.buf else chunk
        out = []
        start = 0
        while True:
            if self.data:
                end = buf.find(END, start)
                if end < 0:
                    start = max(start, len(buf) - 4)  # a split END is found next time
                    break
                self.data = False
                start = end + len(END)
                out.append(OK)
                continue
            eol = buf.find(b"\n", start)
            if eol < 0:
                break
            verb = buf[start : start + 4].upper()
            start = eol + 1
            if verb == b"DATA":
                # The message's end is looked for from DATA's own CRLF: an empty
                # message ends right after it.
                start = eol - 1
                self.data = True
                out.append(GO_AHEAD)
            elif verb == b"QUIT":
                out.append(BYE)
                break
            else:
                out.append(OK)
        self.buf = buf[start:]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
            if out[-1] is BYE:
                self.transport.close()


def _report() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"cpu {usage.ru_utime + usage.ru_stime:.6f} {usage.ru_utime:.6f}", flush=True)


async def serve(host: str, port: int, port_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Floor, host, port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _report)
    if port_file is not None:
        # uvloop's sockets are a list where typeshed says tuple: compiled by
        # mypyc (bench/floor_build.py), the declared type would be checked.
        port_file.write_text(str(cast(Any, server).sockets[0].getsockname()[1]))
    await stop.wait()
    server.close()


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--listen":
        host, _, port = argv[1].rpartition(":")
        uvloop.run(serve(host, int(port), None))
    elif len(argv) == 1:
        uvloop.run(serve("127.0.0.1", 0, Path(argv[0])))
    else:
        raise SystemExit("usage: floor.py PORT_FILE | floor.py --listen HOST:PORT")


if __name__ == "__main__":
    main(sys.argv[1:])
