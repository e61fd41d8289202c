"""A ``proxy=yes`` listener's first step: read the PROXY protocol header.

The header comes before anything else, the greeting and (on ``tls_listen``)
the TLS handshake alike; its source address becomes the session's client
address (``SMTPProtocol.client``), which the logs and the rules read. The
bytes after it belong to the client: HAProxy sends the header and the
ClientHello in one segment, so they are handed on, never dropped.

A connection without a valid header is closed without a reply (HAProxy's
doc/proxy-protocol.txt section 2.1: abort as soon as possible, so that the
sender notices), and the reason is logged; one that sends nothing gets
``tls_handshake_timeout`` seconds (or the idle ``timeout`` if shorter).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from blackhole.net import host_port
from blackhole.protocol.proxyheader import ProxyHeader, ProxyHeaderError, ProxyHeaderReader

log = logging.getLogger("blackhole.session")

Address = tuple[str, int]


class Proxied(Protocol):
    """What reading the header needs from its session."""

    @property
    def session_id(self) -> str: ...
    @property
    def client(self) -> Address | None: ...
    def proxied(self, client: Address | None, rest: bytes) -> None: ...
    def header_failed(self, end: str) -> None: ...


class HeaderWait:
    """The header's reader and its deadline, for one connection."""

    __slots__ = ("_reader", "_session", "_timer", "limit")

    def __init__(self, loop: asyncio.AbstractEventLoop, session: Proxied, limit: float) -> None:
        self._session = session
        self._reader = ProxyHeaderReader()
        self.limit = limit
        self._timer: asyncio.TimerHandle | None = loop.call_later(limit, self.expired)

    def received(self, data: bytes) -> None:
        try:
            header = self._reader.receive_data(data)
        except ProxyHeaderError as exc:
            self._fail(exc.reason, "dropped")
            return
        if header is not None:
            self.cancel()
            self._log(header)
            self._session.proxied(header.source, self._reader.rest)

    def expired(self) -> None:
        self._timer = None
        self._fail(f"no PROXY header within {self.limit:g} s", "timeout")

    def closed(self) -> None:
        """The peer hung up first: a port scan or a health check, not worth a line."""
        self.cancel()
        log.debug("[%s] closed before its PROXY header", self._session.session_id)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _log(self, header: ProxyHeader) -> None:
        if log.isEnabledFor(logging.DEBUG):
            session = self._session
            via = host_port(*session.client) if session.client else "?"
            shown = host_port(*header.source) if header.source else "none (the proxy's own)"
            log.debug(
                "[%s] PROXY v%d header: client %s via %s",
                session.session_id,
                header.version,
                shown,
                via,
            )

    def _fail(self, reason: str, end: str) -> None:
        self.cancel()
        session = self._session
        via = host_port(*session.client) if session.client else "?"
        # A real proxy never gets here: it is someone reaching the port
        # directly, or a proxy set up without send-proxy. Worth a line.
        log.info("[%s] no valid PROXY header from %s, closing: %s", session.session_id, via, reason)
        session.header_failed(end)  # the event log's session end
