"""How a session ends: 421 at a stop, a close after the output drains, an abort.

Every ending comes to ``_finish`` once: the session leaves the worker's set,
its timers stop and its observation is closed (counted, and its event log
line written). ``_ended_by`` records how, for counts and the event log.
"""

from __future__ import annotations

import logging
from typing import Final

from blackhole.protocol import replies as R
from blackhole.server.sessionbase import SessionBase

log: Final = logging.getLogger("blackhole.session")


class Endings(SessionBase):
    """The ways a session ends."""

    __slots__ = ()

    def shutdown(self) -> None:
        """Server stopping: 421 now if idle, else after the current transaction.

        Before its greeting (a PROXY header or an SMTPS handshake to come) or
        in a STARTTLS handshake, a session cannot read a 421 yet: it is told
        once it can (``server.stopping``, read by ``_begin`` and
        ``tls_ready``), if that is soon (``cut_early``).
        """
        core = self.core
        if core is None:
            return
        self._ended_by("shutdown")
        self.obs.meter.start()
        core.shutdown()
        self._pump(core)

    def cut_early(self) -> None:
        """The stop waited long enough for a PROXY header or a handshake.

        Proxies and TLS clients send theirs within milliseconds; a client
        that sends nothing would hold the stop for the whole grace period,
        and could not read a 421 anyway.
        """
        if self.core is None:
            self.cut()

    def cut(self) -> None:
        """The stop is done waiting: say 421 4.3.2 (even mid-DATA), then close.

        RFC 5321 section 3.8: a server that must shut down may send 421 at
        any time and close; the client then knows to retry, rather than
        seeing a bare EOF.
        """
        transport = self.transport
        if transport is None or self.closing or self.core is None:
            self._ended_by("shutdown")
            self._abort()
            return
        self._ended_by("shutdown")
        # Through the core, not written past it: the 421 is a reply like any
        # other, counted, and the transaction it cuts short ends with it.
        core = self.core
        self.obs.meter.start()
        core.shutdown_now()
        self._pump(core)

    def _close(self) -> None:
        """Close after what was written drains; the idle timer bounds the wait."""
        self.closing = True
        self.last = self.server.clock()  # the flush gets a whole timeout
        if self.idle_slot is None:  # closing from expire(); otherwise armed already
            self.server.idle.arm(self, self.ctx.timeout)
        if self._delay is not None:
            self._delay.cancel()
            self._delay = None
        if self.transport is not None:
            if self.steer is None:
                self.transport.close()  # flushes what was written first
            else:
                self.steer.close_after(self.transport.close)  # a tarpit's bytes first

    def _abort(self) -> None:
        """Drop the connection now, and the session with it.

        The SSL layer does not report a connection lost mid-handshake (nor,
        sometimes, an abort of one) to this protocol: waiting for
        connection_lost() left the session in ``server.sessions`` and a stop
        waited out the whole grace period for it.
        """
        if self.transport is not None:
            self.transport.abort()
        self._finish()

    def _finish(self) -> None:
        """Forget the session: every ending comes here, and only once counts."""
        if self._ended:
            return
        self._ended = True
        self.closing = True
        self.server.idle.cancel(self)
        if self._header is not None:
            self._header.cancel()
            self._header = None
        if self._delay is not None:
            self._delay.cancel()
            self._delay = None
        self.server.sessions.discard(self)
        core, self.core = self.core, None
        if core is not None:
            core.unanswered()
            cut_short = core.content_read
            if cut_short is not None:  # rare: no meter attribute read per session
                self.obs.data_cut(cut_short)
        # The transport points back at this protocol: let go of it, so that
        # reference counting frees the session now (no cycle left for the GC).
        self.transport = None
        obs = self.obs
        obs.close()
        # Rules: the steering and the core (through its screen) point back at
        # the session and at each other; let go of both, for the same reason.
        if self.steer is not None:
            self.steer = None
            obs.core = None
            if core is not None:
                core.screen = None

    def _ended_by(self, how: str) -> None:
        """How the session ends, for counts and the event log (first one wins)."""
        if self.obs.end == "client_closed":
            self.obs.end = how

    def _internal_error(self) -> None:
        log.exception("[%s] internal error; the session is closed", self.session_id)
        self.server.stats.errors += 1
        self._ended_by("error")
        if self.transport is not None and not self.closing:
            self.transport.write(R.R451_INTERNAL.wire)
            self._close()
