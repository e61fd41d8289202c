"""The TLS handshake of a session: SMTPS at connect, or after STARTTLS.

The handshake is the adapter's rather than the listening server's
(``create_server(ssl=...)``) so that a failed one is seen, counted, logged
with its reason and closed quietly, and so that both SMTPS (RFC 8314 section
3.3) and STARTTLS (RFC 3207) go through the one public API,
``loop.start_tls``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Protocol, cast

from blackhole.server.alerts import AlertingContext, socket_sink

if TYPE_CHECKING:
    from blackhole.protocol.core import SMTPConnection

# OpenSSL's reasons when the first bytes are not a TLS record: a plaintext
# SMTP client (or a web browser) on a TLS port.
_PLAINTEXT = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})


class Upgradable(Protocol):
    """What a handshake needs from its session."""

    @property
    def transport(self) -> asyncio.Transport | None: ...
    @property
    def closing(self) -> bool: ...
    def tls_ready(
        self, transport: asyncio.Transport, greet: bool, core: SMTPConnection | None
    ) -> None: ...
    def tls_failed(self, reason: str) -> None: ...


def timed_out(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the handshake ran out of its time."""
    return isinstance(exc, TimeoutError) or (
        # asyncio and uvloop report their ssl_handshake_timeout this way.
        isinstance(exc, ConnectionAbortedError) and "longer than" in str(exc)
    )


def failure_reason(exc: BaseException | None, limit: float) -> str:
    """Why a handshake failed, in words a log reader can act on."""
    if timed_out(exc):
        return f"timed out after {limit:g} s"
    if isinstance(exc, ssl.SSLError):
        # Set by OpenSSL's errors; absent from an SSLError made in Python.
        code = getattr(exc, "reason", None) or type(exc).__name__
        words = code.lower().replace("_", " ")
        return f"{words} (plaintext on a TLS port?)" if code in _PLAINTEXT else words
    if exc is None or isinstance(exc, (ConnectionError, EOFError)):
        return "the client closed the connection"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def start(
    loop: asyncio.AbstractEventLoop,
    session: Upgradable,
    context: ssl.SSLContext,
    limit: float,
    *,
    greet: bool,
    core: SMTPConnection | None = None,
) -> None:
    """Start the handshake on the session's transport (reading is paused)."""
    loop.create_task(_handshake(loop, session, context, limit, greet=greet, core=core))


async def _handshake(
    loop: asyncio.AbstractEventLoop,
    session: Upgradable,
    context: ssl.SSLContext,
    limit: float,
    *,
    greet: bool,
    core: SMTPConnection | None,
) -> None:
    transport = session.transport
    if transport is None or session.closing or transport.is_closing():
        # The client went away before this task ran (a reset right after
        # STARTTLS, or right after connecting to an SMTPS port). start_tls()
        # on a closed transport never hears of it and waits out the whole
        # handshake timeout, holding its buffers (~30 KiB) for a
        # connection that is gone: a burst of such clients grew memory by
        # hundreds of MB.
        session.tls_failed(failure_reason(None, limit))
        return
    if isinstance(context, AlertingContext):
        # Runs right before the SSL protocol's connection_made(), which
        # start_tls() schedules below, in this same step (server.alerts).
        loop.call_soon(context.expect_handshake, socket_sink(transport))
    try:
        new = await loop.start_tls(
            transport,
            cast(asyncio.BaseProtocol, session),
            context,
            server_side=True,
            ssl_handshake_timeout=limit,
        )
    except (OSError, ssl.SSLError, EOFError) as exc:  # TimeoutError is an OSError
        session.tls_failed(failure_reason(exc, limit))
        return
    if new is None or session.closing or new.is_closing():
        session.tls_failed(failure_reason(None, limit))
        return
    session.tls_ready(new, greet, core)


def hand_over_early_bytes(transport: asyncio.Transport, session: object, early: bytes) -> bool:
    """Give the SMTPS bytes read before start_tls() to its SSL protocol.

    The SSL protocol is on the transport but its connection_made() has not
    run yet; both asyncio's and uvloop's keep bytes given to them then in
    their incoming buffer for the handshake. Reading stays paused until
    start_tls() resumes it, so the order of the bytes is kept. Returns False
    when start_tls() did not take the transport: TLS must never be read as
    SMTP.
    """
    proto = transport.get_protocol()
    if proto is session:
        return False
    # BufferedProtocol API (uvloop's SSLProtocol has it without being a
    # subclass of asyncio.BufferedProtocol).
    get_buffer = getattr(proto, "get_buffer", None)
    if get_buffer is None:
        cast(asyncio.Protocol, proto).data_received(early)
        return True
    view = memoryview(early)
    while view:
        buf = get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        proto.buffer_updated(n)  # type: ignore[attr-defined]
        view = view[n:]
    return True
