"""A finished session is freed by reference counting, not left for the GC.

Every new connection builds a protocol, a core, a meter and an observation
(and, with rules, a steering). If they still point at each other when the
session ends, the cycle waits for the garbage collector, whose passes then
cost every connection a share of their time. A real worker on uvloop serves
real connections here, with the collector off: once the sessions are over,
none of their objects may be left.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from blackhole.server.observing import SessionObservation
from tests.inworker import address, started_worker

# The per-session objects that must not outlive their session.
SESSION_TYPES = ("SMTPProtocol", "SMTPConnection", "SessionObservation", "SessionMeter")
RULES = """\
[[rule]]
name = "never"
at = "rcpt"
recipient = "*@never.invalid"
reply = "451 4.3.0 never sent"
"""
CONVERSATION = (
    b"EHLO client.test\r\n",
    b"MAIL FROM:<a@client.test>\r\n",
    b"RCPT TO:<b@sink.test>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\nhello\r\n.\r\n",
    b"QUIT\r\n",
)


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _session(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # the greeting
    for line in CONVERSATION:
        writer.write(line)
        reply = await reader.readline()
        while reply[3:4] == b"-":  # the EHLO reply's other lines
            reply = await reader.readline()
    assert reply.startswith(b"221 ")
    await reader.read()  # the server closes
    writer.close()
    await writer.wait_closed()


def _alive() -> dict[str, int]:
    found = dict.fromkeys(SESSION_TYPES, 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in found:
            found[name] += 1
    return found


async def _serve_sessions(config_text: str, sessions: int) -> dict[str, int]:
    worker = await started_worker(config_text)
    try:
        for _ in range(sessions):
            await _session(address(worker)[1])
        while worker.state.sessions:  # connection_lost may come a little after the EOF
            await asyncio.sleep(0.01)
        return _alive()
    finally:
        await worker.stop(1.0)


@pytest.mark.parametrize("rules", [False, True], ids=["no rules", "rules"])
def test_finished_sessions_leave_nothing_for_the_collector(
    rules: bool, tmp_path: Path, collector_off: None
) -> None:
    text = "listen = 127.0.0.1:0\ntimeout = 30\n"
    if rules:
        path = tmp_path / "rules.toml"
        path.write_text(RULES)
        text += f"rules = {path}\n"
    assert SessionObservation.__name__ in SESSION_TYPES  # the names are the real ones
    # What earlier tests in this process still hold (a fixture, a module's
    # global) is theirs: only this test's sessions must be gone.
    before = _alive()
    alive = uvloop.run(_serve_sessions(text, 5))
    assert alive == before
