"""A fake event loop and transport for unit tests of the asyncio adapter.

The loop has a clock the test moves by hand, so timeouts and delays are
tested without waiting; the transport records what the session does to it
and never calls ``connection_lost`` on its own (like an SSL layer that does
not report a connection it aborted mid-handshake).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, cast

from blackhole.config.model import Config, Listener
from blackhole.policy.decide import Policy
from blackhole.server.connection import SMTPProtocol
from blackhole.server.context import build_context
from blackhole.server.idle import IdleWheel
from blackhole.server.state import ServerState


class FakeHandle:
    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Just the loop methods the adapter uses, on a manual clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[tuple[float, int, FakeHandle]] = []
        self._order = itertools.count()
        self.tasks: list[Coroutine[Any, Any, Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> FakeHandle:
        handle = FakeHandle(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._order), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeHandle:
        return self.call_at(self.now + delay, callback, *args)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> FakeHandle:
        return self.call_at(self.now, callback, *args)

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        # The TLS handshake task: never run here (no real transport to
        # upgrade), closed at the end so Python does not warn.
        self.tasks.append(coro)

    def advance(self, seconds: float) -> None:
        """Move the clock, running every timer that falls due, in order."""
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _order, handle = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not handle.cancelled:
                handle.callback(*handle.args)
        self.now = end

    def pending(self) -> int:
        """Timers still due. The idle wheel's one loop timer stands for the
        idle timers armed in it (server.idle): with none armed, it counts 0."""
        count = 0
        for _when, _order, handle in self._timers:
            if not handle.cancelled:
                owner = getattr(handle.callback, "__self__", None)
                count += len(owner) if isinstance(owner, IdleWheel) else 1
        return count

    def loop_timers(self) -> int:
        """Timers due in the loop itself, each counted once."""
        return sum(1 for _when, _order, handle in self._timers if not handle.cancelled)

    def close(self) -> None:
        for coro in self.tasks:
            coro.close()


class FakeTransport:
    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol
        self.written = bytearray()
        self.unsent = 0  # what get_write_buffer_size() reports
        self.reading = True
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def take(self) -> bytes:
        out = bytes(self.written)
        self.written.clear()
        return out

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class Harness:
    """One worker's state on a fake loop, and sessions connected to it."""

    def __init__(self, config: Config | None = None, *, tls: bool = False) -> None:
        self.loop = FakeLoop()
        self.config = config if config is not None else Config(timeout=30)
        self.state = ServerState(
            cast(asyncio.AbstractEventLoop, self.loop), Policy(random.Random(7))
        )
        listener = Listener("127.0.0.1", 0, tls=tls)
        # SMTPS needs a context; the handshake itself never runs here.
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) if tls else None
        self.context = build_context(self.config, listener, "test.local", ssl_context)

    def connect(self) -> tuple[SMTPProtocol, FakeTransport]:
        session = SMTPProtocol(self.context, self.state)
        transport = FakeTransport(session)
        session.connection_made(cast(asyncio.Transport, transport))
        return session, transport
