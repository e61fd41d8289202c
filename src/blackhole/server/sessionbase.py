"""What every part of a session's adapter shares: its attributes, declared once.

``SMTPProtocol`` (``server.connection``) is one class built from a chain of
parts, each in a module of its own and each owning one thing: how a session
ends (``server.endings``), input flow control (``server.flow``), answering a
message (``server.answers``) and the TLS glue (``server.securing``). The
attributes they share are declared here and set in ``SMTPProtocol.__init__``;
the one method they all call back, ``_pump``, is ``SMTPProtocol``'s.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blackhole.protocol.core import SMTPConnection
    from blackhole.server.context import ListenerContext
    from blackhole.server.observing import SessionObservation
    from blackhole.server.proxied import HeaderWait
    from blackhole.server.state import ServerState
    from blackhole.server.steering import Steering


class SessionBase(asyncio.Protocol):
    """The session's attributes, set in ``SMTPProtocol.__init__``."""

    __slots__ = (
        "_backlog",
        "_delay",
        "_early",
        "_ended",
        "_half_closed",
        "_header",
        "_unsent",
        "_write_paused",
        "client",
        "closing",
        "core",
        "ctx",
        "debug",
        "idle_slot",
        "last",
        "loop",
        "obs",
        "server",
        "session_id",
        "steer",
        "transport",
    )

    ctx: ListenerContext
    server: ServerState
    loop: asyncio.AbstractEventLoop
    session_id: str
    core: SMTPConnection | None
    transport: asyncio.Transport | None
    _delay: asyncio.TimerHandle | None
    last: float  # loop time of the last sign of life (server.idle)
    idle_slot: float | None  # server.idle's: where the idle timer is filed, if armed
    _unsent: int  # the write buffer's size at the last idle check
    closing: bool  # no more input is wanted; output may still drain
    _ended: bool  # _finish() has run
    _write_paused: bool
    _backlog: bytes  # input read but not yet given to the core
    _half_closed: bool  # the client's EOF came behind commands owed answers
    _early: bytearray | None  # SMTPS only: bytes read before start_tls() took over
    steer: Steering | None  # set when the worker has rules
    client: tuple[str, int] | None
    _header: HeaderWait | None  # proxy=yes: until the header is in
    obs: SessionObservation
    debug: bool  # "blackhole.session" logs at debug level (ServerState's, read once)

    def _pump(self, core: SMTPConnection) -> None:
        """Act on the core's events, then write its output (``SMTPProtocol``'s)."""
        raise NotImplementedError

    def _begin(self) -> None:
        """Start the SMTP session: the core, the greeting (``SMTPProtocol``'s)."""
        raise NotImplementedError

    def follow_rules(self) -> None:
        """The rules in force changed (``SMTPProtocol``'s; server.app)."""
        raise NotImplementedError

    def busy(self) -> bool:
        """Not idle although the deadline passed (``SMTPProtocol``'s; server.idle)."""
        raise NotImplementedError

    def expire(self) -> None:
        """A whole timeout without a sign of life (``SMTPProtocol``'s; server.idle)."""
        raise NotImplementedError
