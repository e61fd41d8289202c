"""Carrying out what concerns the socket in a rule's verdict: RST, tarpits, TLS faults.

The core applies what concerns SMTP (the reply, the state change); these are
the adapter's share (protocol/hooks.py): an abort that really sends RST, a
writer that paces every reply at so many bytes per second, and the two ways
a STARTTLS can go wrong after its 220.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable

# RFC 8446 section 6 (and RFC 5246 7.2): an alert record, content type 21,
# legacy version 3.1, two bytes: level fatal (2), handshake_failure (40).
HANDSHAKE_FAILURE_ALERT = bytes((21, 3, 1, 0, 2, 2, 40))
# A tarpit writes about this often: small enough pieces that the client sees
# the reply trickle in, few enough timers that a slow rate costs little.
_TICK = 0.1


def reset(transport: asyncio.Transport) -> None:
    """Abort with RST: SO_LINGER on with a zero timeout makes close() send RST.

    A plain abort() closes with FIN whenever nothing unread is left in the
    socket's receive buffer, which a client cannot tell from ``drop``.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # An OSError: the socket is already gone, nothing left to reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Pacer:
    """Writes replies at ``rate`` bytes per second, in pieces paced by timers."""

    __slots__ = ("_handle", "_loop", "_queue", "_then", "_touch", "_transport", "interval", "step")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: Callable[[], asyncio.Transport | None],
        rate: int,
        touch: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._touch = touch  # a sign of life for the idle timer
        self.step = max(1, round(rate * _TICK))
        self.interval = self.step / rate
        self._queue = bytearray()
        self._handle: asyncio.TimerHandle | None = None
        self._then: Callable[[], None] | None = None

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def write(self, data: bytes) -> None:
        self._queue += data
        if self._handle is None:
            self._tick()

    def then(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything queued is written (now if nothing is)."""
        if self._queue:
            self._then = callback
        else:
            callback()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._queue.clear()
        self._then = None

    def _tick(self) -> None:
        self._handle = None
        transport = self._transport()
        if transport is None or transport.is_closing():
            self._queue.clear()
        else:
            piece = bytes(self._queue[: self.step])
            del self._queue[: self.step]
            transport.write(piece)
            self._touch()
        if self._queue:
            self._handle = self._loop.call_later(self.interval, self._tick)
        elif self._then is not None:
            then, self._then = self._then, None
            then()


class RefuseHandshake(asyncio.Protocol):
    """``tls = "fail"``: after the 220, answer the ClientHello with a fatal alert.

    The client sees its handshake fail (``sslv3 alert handshake failure``),
    as with a server whose TLS setup is broken; a client that sends nothing
    is dropped at ``limit`` seconds.
    """

    def __init__(self, transport: asyncio.Transport, limit: float) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(limit, transport.abort)

    def data_received(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(HANDSHAKE_FAILURE_ALERT)
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
