"""A stopping worker tells every session 421, even one it could not talk to yet.

RFC 5321 section 3.8: a server that must stop says 421 and closes, and the
client retries later; a bare EOF or a reset leaves it to guess. A real
worker on uvloop is stopped here at the awkward moments:

- a connection accepted in the very turn of the loop in which the stop
  starts. uvloop builds the protocol as it accepts but calls
  ``connection_made`` one turn later; a stop that counted its sessions in
  between missed the new one and let its process exit under it (the
  client saw the greeting, then EOF), which a worker replaced by a SIGHUP
  did to mail in flight;
- a session on a ``proxy=yes`` listener whose PROXY header comes after the
  stop, and one on an SMTPS listener whose handshake is done after it: the
  greeting can only come once they are in, and the 421 right behind it;
- a session in its STARTTLS handshake: the 421 comes over TLS once it is up.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
import uvloop

from blackhole.server import app
from blackhole.server.app import Worker
from blackhole.server.tls import build_server_context
from tests.certs import self_signed
from tests.inworker import address, started_worker
from tests.smtpclient import insecure_context

PROXY_HEADER = b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 25\r\n"


def _read_to_the_end(client: socket.socket) -> bytes:
    """All the server says until it closes (a session it missed would time out)."""
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    return data


def _read_reply(client: socket.socket) -> bytes:
    """One reply, all its lines (the client sends nothing before it is whole)."""
    data = b""
    while not data.endswith(b"\r\n") or data.rsplit(b"\r\n", 2)[-2][3:4] == b"-":
        chunk = client.recv(4096)
        assert chunk, data
        data += chunk
    return data


Counted = tuple[int, int]


async def _stop(worker: Worker) -> Counted:
    """Stop the worker; then, before anything else runs, the connections it
    served and the sessions it left. A worker process exits right there:
    a session the stop missed would be cut off by the exit."""
    await worker.stop(10.0)
    return worker.state.stats.connections, len(worker.state.sessions)


async def _stopping(worker: Worker) -> asyncio.Future[Counted]:
    """The worker's stop, begun: every session it counts has been told to go."""
    stopping = asyncio.ensure_future(_stop(worker))
    while not worker.state.stopping:
        await asyncio.sleep(0)
    return stopping


async def _connect_as_it_stops(worker: Worker) -> tuple[bytes, Counted]:
    # Queued first: the stop's first step runs before the loop's next accept
    # is handed to the protocol (connection_made is queued behind it).
    stopping = asyncio.ensure_future(_stop(worker))
    # A blocking connect: on loopback the kernel has the connection in the
    # listener's queue when this returns, before the loop runs again.
    client = socket.create_connection(address(worker), timeout=5)
    said = asyncio.ensure_future(asyncio.to_thread(_read_to_the_end, client))
    counted = await stopping
    return await said, counted


async def _stop_before_the_greeting(
    worker: Worker, kind: str, tls: ssl.SSLContext
) -> tuple[bytes, Counted]:
    """The stop comes while the session waits for its PROXY header or handshake."""
    client = socket.create_connection(address(worker), timeout=5)
    while not worker.state.sessions:
        await asyncio.sleep(0.01)
    stopping = await _stopping(worker)

    def greeted() -> bytes:
        if kind == "proxy":
            client.sendall(PROXY_HEADER)
            return _read_to_the_end(client)
        return _read_to_the_end(tls.wrap_socket(client, server_hostname="localhost"))

    said = await asyncio.to_thread(greeted)
    return said, await stopping


async def _stop_in_starttls(worker: Worker, tls: ssl.SSLContext) -> tuple[bytes, Counted]:
    client = socket.create_connection(address(worker), timeout=5)

    def ask_for_tls() -> None:
        for command in (b"", b"EHLO client.test\r\n", b"STARTTLS\r\n"):
            client.sendall(command)
            reply = _read_reply(client)
        assert reply.startswith(b"220 "), reply

    await asyncio.to_thread(ask_for_tls)  # the server waits for the ClientHello now
    stopping = await _stopping(worker)
    said = await asyncio.to_thread(
        lambda: _read_to_the_end(tls.wrap_socket(client, server_hostname="localhost"))
    )
    return said, await stopping


async def _scenario(kind: str, directory: Path) -> tuple[bytes, Counted]:
    cert, key = self_signed(directory)
    context = build_server_context(str(cert), str(key))
    tls_files = f"tls_cert = {cert}\ntls_key = {key}\ntimeout = 30\n"
    listen = {
        "plain": "listen = 127.0.0.1:0\n",
        "proxy": "listen = 127.0.0.1:0 proxy=yes\n",
        "smtps": "tls_listen = 127.0.0.1:0\n",
        "starttls": "listen = 127.0.0.1:0\n",
    }[kind]
    worker = await started_worker(listen + tls_files, context)
    if kind == "plain":
        return await _connect_as_it_stops(worker)
    if kind == "starttls":
        return await _stop_in_starttls(worker, insecure_context())
    return await _stop_before_the_greeting(worker, kind, insecure_context())


@pytest.mark.parametrize("kind", ["plain", "proxy", "smtps", "starttls"])
def test_a_session_the_stop_catches_early_is_told_421(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # However slow this machine, the stop waits for the test's client here
    # (silent clients: below).
    monkeypatch.setattr(app, "EARLY_WAIT", 60.0)
    said, (served, left) = uvloop.run(_scenario(kind, tmp_path))
    lines = said.split(b"\r\n")
    if kind != "starttls":
        greeting = lines.pop(0)
        assert greeting.startswith(b"220 "), said
    assert lines[0].startswith(b"421 4.3.2 "), said
    assert lines[1:] == [b""], said  # and then the end of the connection
    # The stop served the session before it returned: none left for the
    # worker's exit to cut off.
    assert (served, left) == (1, 0)


async def _stop_with_a_silent_client(kind: str, directory: Path) -> tuple[bytes, int]:
    cert, key = self_signed(directory)
    listen = "tls_listen = 127.0.0.1:0\n" if kind == "smtps" else "listen = 127.0.0.1:0 proxy=yes\n"
    text = f"{listen}tls_cert = {cert}\ntls_key = {key}\ntimeout = 180\n"
    text += "tls_handshake_timeout = 60\n"  # the longest allowed: longer than the wait below
    worker = await started_worker(text, build_server_context(str(cert), str(key)))
    client = socket.create_connection(address(worker), timeout=30)
    while not worker.state.sessions:
        await asyncio.sleep(0.01)
    # An hour's grace: a stop that waited for the client would time out here.
    await asyncio.wait_for(worker.stop(3600.0), 30)
    said = await asyncio.to_thread(client.recv, 4096)
    client.close()
    return said, len(worker.state.sessions)


@pytest.mark.parametrize("kind", ["proxy", "smtps"])
def test_a_client_that_sends_nothing_does_not_hold_the_stop(kind: str, tmp_path: Path) -> None:
    said, left = uvloop.run(_stop_with_a_silent_client(kind, tmp_path))
    assert said == b""  # dropped: it could not have read a 421 before its greeting
    assert left == 0
