"""The session's side of TLS: SMTPS before the greeting, STARTTLS after it.

RFC 8314 section 3.3: on an SMTPS listener TLS comes first and the greeting
after; RFC 3207: STARTTLS upgrades a plaintext session, which then starts
over. The handshake itself is ``server.upgrade``'s; it calls back
``tls_ready`` or ``tls_failed``.
"""

from __future__ import annotations

import asyncio
import logging

from blackhole.protocol.core import SMTPConnection
from blackhole.server import upgrade
from blackhole.server.answers import Answers

log = logging.getLogger("blackhole.session")


class Securing(Answers):
    """Starting TLS, and what follows its handshake."""

    __slots__ = ()

    def _start_tls(self, greet: bool, core: SMTPConnection | None = None) -> None:
        context = self.ctx.ssl_context
        assert context is not None  # STARTTLS is only offered with a context
        limit = self.ctx.tls_handshake_timeout
        self.obs.handshake_started()
        upgrade.start(self.loop, self, context, limit, greet=greet, core=core)

    def _hand_over_early_bytes(self) -> None:
        early, self._early = self._early, None
        transport = self.transport
        if not early or transport is None or self.closing:
            return
        if not upgrade.hand_over_early_bytes(transport, self, bytes(early)):
            self.tls_failed("the TLS layer did not take the connection")

    def tls_ready(
        self, transport: asyncio.Transport, greet: bool, core: SMTPConnection | None
    ) -> None:
        self.transport = transport
        self.last = self.server.clock()
        ssl_object = transport.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else None
        cipher = ssl_object.cipher()[0] if ssl_object is not None else None
        self.obs.handshake_done(True, version, cipher)
        if greet:
            self._begin()
            return
        assert core is not None
        core.tls_started()
        self.core = core
        self.server.stats.starttls += 1
        if self.server.rules is not None:
            self.follow_rules()  # they may have changed during the handshake
        if self.server.stopping:
            self.shutdown()

    def tls_failed(self, reason: str) -> None:
        # Plaintext on an SMTPS port, a client gone mid-handshake, a scanner:
        # counted and logged at debug, never a traceback, never a flood.
        self.handshake_failed(reason)
        self._abort()

    def handshake_failed(self, reason: str) -> None:
        """Count a failed handshake; the session ends in ``error``."""
        self.server.stats.tls_failures += 1
        if self.obs.tls is None:
            self.obs.handshake_done(False, None, None)
            self._ended_by("error")
        log.debug("[%s] TLS handshake failed: %s", self.session_id, reason)
