"""A connection accepted just before a worker stops is ended properly, never dropped.

uvloop (like asyncio) builds a connection's protocol when it accepts it, but
calls ``connection_made`` from the ready queue, one turn of the loop later. A
stop that counts the worker's sessions in between used to miss the new one:
its client got the greeting and then a bare EOF (``smtplib``: "Connection
unexpectedly closed"), which a worker being replaced after a SIGHUP did to
mail in flight. Here a real worker on uvloop is told to stop in exactly that
turn: its stop is queued, then a client connects, so the loop accepts the
connection and queues its ``connection_made`` behind the stop.
"""

from __future__ import annotations

import asyncio
import socket

import uvloop

from tests.inworker import address, started_worker


def _read_to_the_end(client: socket.socket) -> bytes:
    """All the server says until it closes (a session it missed would time out)."""
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    return data


async def _stop_as_a_connection_arrives() -> tuple[bytes, int]:
    worker = await started_worker("listen = 127.0.0.1:0\ntimeout = 30\n")
    stopping = asyncio.ensure_future(worker.stop(10.0))  # its first step is queued now
    # A blocking connect: on loopback the kernel has the connection in the
    # listener's queue when this returns, before the loop runs again.
    client = socket.create_connection(address(worker), timeout=5)
    await stopping
    left = len(worker.state.sessions)
    # The worker is stopped, but its loop (this test's) still runs: a session
    # it missed would still be served, and this read would time out.
    said = await asyncio.to_thread(_read_to_the_end, client)
    client.close()
    return said, left


def test_a_connection_accepted_as_the_worker_stops_is_greeted_and_told_421() -> None:
    said, left = uvloop.run(_stop_as_a_connection_arrives())
    # RFC 5321 section 3.8: a server that stops says 421 and closes, and the
    # client retries later; not a bare EOF, and not served past the stop.
    greeting, shutdown, end = said.split(b"\r\n")
    assert greeting.startswith(b"220 "), said
    assert shutdown.startswith(b"421 4.3.2 "), said
    assert end == b""
    assert left == 0
