"""The asyncio adapter: one ``asyncio.Protocol`` per connection.

Callbacks, not a coroutine per session: ``data_received`` feeds the sans-IO
core and writes whatever replies one batch of input produced in one write
(RFC 2920 section 3.1 asks servers to answer a pipelined batch together).
This module owns the glue, flow control and the ways a session ends; the
TLS handshake is in ``server.upgrade`` and the idle timer in ``server.idle``.
SMTP meaning lives in ``protocol``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from blackhole.protocol import replies as R
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import Close, Cut, MessageReceived, StageReached, StartTLS
from blackhole.protocol.replies import Reply
from blackhole.server import upgrade, verdicts
from blackhole.server.idle import IdleTimer
from blackhole.server.proxied import HeaderWait
from blackhole.server.steering import Steering
from blackhole.server.unixsock import UNIX_CLIENT

if TYPE_CHECKING:
    from blackhole.server.context import ListenerContext
    from blackhole.server.observing import SessionObservation
    from blackhole.server.state import ServerState

log = logging.getLogger("blackhole.session")

# Flow control. Input goes to the core at most this many bytes at a time, and
# not at all while the transport's write buffer is over its high-water mark
# (pause_writing) or an answer is delayed: the rest of the read is held back
# and reading stops. A client that pipelines commands and never reads the
# replies once made the server buffer them without end (20 MB of "EXPN all"
# became 1 GB of replies). The wordiest command, "EXPN all", makes 64 times its
# size in reply, so one slice adds at most about 512 KiB past the mark.
_SLICE = 8192
# A Close event's reason -> the event log's session end (OBSERVE.md); any
# other reason (a rule's close, too many unknown commands) is "dropped".
_CLOSE_ENDS = {"quit": "quit", "timeout": "timeout", "shutdown": "shutdown"}


class SMTPProtocol(asyncio.Protocol):
    """Glue between a transport and an ``SMTPConnection``."""

    __slots__ = (
        "_backlog",
        "_delay",
        "_early",
        "_ended",
        "_header",
        "_timer",
        "_write_paused",
        "client",
        "closing",
        "core",
        "ctx",
        "last",
        "loop",
        "obs",
        "server",
        "session_id",
        "steer",
        "transport",
    )

    def __init__(self, ctx: ListenerContext, server: ServerState) -> None:
        self.ctx = ctx
        self.server = server
        self.loop = server.loop
        self.session_id = server.next_session_id()
        self.core: SMTPConnection | None = None
        self.transport: asyncio.Transport | None = None
        self._timer = IdleTimer(self.loop, self, ctx.timeout)
        self._delay: asyncio.TimerHandle | None = None
        self.last = 0.0  # loop time of the last sign of life (server.idle)
        self.closing = False  # no more input is wanted; output may still drain
        self._ended = False  # _finish() has run
        self._write_paused = False
        self._backlog = b""  # input read but not yet given to the core
        # SMTPS only: bytes read before start_tls() took over the transport.
        self._early: bytearray | None = None
        self.steer: Steering | None = None  # set when the worker has rules
        # The client's (address, port): the peer's, or on a proxy=yes
        # listener the one its PROXY header names. Everything that shows or
        # matches the client reads this, and only this.
        self.client: tuple[str, int] | None = None
        self._header: HeaderWait | None = None  # proxy=yes: until the header is in
        # Made only for an accepted connection: counted from here.
        self.obs: SessionObservation = server.observation.session(ctx.name, self.session_id)

    # --- transport callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        # (no cast(): a function call per connection).
        self.transport = transport  # type: ignore[assignment]
        self.server.sessions.add(self)
        self.server.stats.connections += 1
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        if self.client is not None:
            self.obs.client = self.client[0]
        elif self.ctx.listener.path is not None:
            self.obs.client = UNIX_CLIENT  # a UNIX socket's peer has no address
        self.last = self.loop.time()
        self._timer.arm()
        if self.ctx.listener.proxy:
            # The PROXY header comes before the greeting and the TLS handshake.
            limit = min(self.ctx.tls_handshake_timeout, self.ctx.timeout)
            self._header = HeaderWait(self.loop, self, limit)
            return
        self._open()

    def _open(self, early: bytes = b"") -> None:
        if self.ctx.implicit_tls:
            # SMTPS: TLS first, greeting after (RFC 8314 section 3.3).
            self._early = bytearray(early)
            self._start_tls(greet=True)
            # Runs right after the task's first step, in which start_tls()
            # puts its SSL protocol on the transport (it is synchronous up to
            # its first await, in asyncio and in uvloop alike).
            self.loop.call_soon(self._hand_over_early_bytes)
            return
        self._begin()
        if early:
            self.data_received(early)  # commands sent right behind the PROXY header

    def data_received(self, data: bytes) -> None:
        core = self.core
        if core is None:
            if self._header is not None:
                self._header.received(data)
                return
            early = self._early
            if early is not None and self.transport is not None:
                # SMTPS: the loop reads as soon as connection_made() returns
                # (uvloop ignores a pause_reading() made inside it), so the
                # ClientHello can arrive before the handshake task has run.
                # Dropping it left the handshake waiting for bytes already
                # gone: clients timed out at random. Keep it and stop reading.
                early += data
                self.transport.pause_reading()
            # Otherwise: between STARTTLS and the end of its handshake, where
            # pipelined plaintext is dropped on purpose (RFC 3207 section 6).
            return
        if b"\n" in data or core.reading_content:
            # RFC 5321 section 4.5.3.2.7 times the wait for the next *command*,
            # and 4.5.3.2.5 each block of a message's content. Bytes of a
            # command line that never ends are neither: a slowloris trickling
            # one byte at a time must still reach the idle timeout.
            self.last = self.loop.time()
        if self._backlog:
            self._backlog += data  # reading is paused; this is only a safety net
            return
        self.obs.meter.started = time.perf_counter()
        try:
            if len(data) <= _SLICE and not self._write_paused and self._delay is None:
                core.receive_data(data)
                self._pump(core)
            else:
                self._feed(core, data)
        except Exception:
            self._internal_error()

    def pause_writing(self) -> None:
        # The client is not reading its replies as fast as it sends commands.
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.last = self.loop.time()  # the client is reading: not idle
        try:
            self._continue()
        except Exception:
            self._internal_error()

    def eof_received(self) -> bool:
        # The client hung up (maybe in the middle of DATA or a delay): nothing
        # is owed to it, and returning False closes our side too.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header is not None:
            self._header.closed()
        self._finish()

    # --- the PROXY header (server.proxied calls back) ----------------------------------

    def proxied(self, client: tuple[str, int] | None, rest: bytes) -> None:
        self._header = None
        if client is not None:  # None: UNKNOWN or LOCAL, the peer is the client
            self.client = client
            self.obs.client = client[0]
        self._open(rest)

    def header_failed(self) -> None:
        self._header = None
        self.server.stats.proxy_failures += 1
        self._abort()

    # --- the session --------------------------------------------------------------

    def _begin(self) -> None:
        core = SMTPConnection(self.ctx.settings)
        self.core = core
        core.meter = self.obs.meter
        self.obs.core = core
        if self.server.rules is not None:
            self.steer = Steering(self, self.server.rules, core)
        core.start()
        self._pump(core)

    def _pump(self, core: SMTPConnection) -> None:
        """Act on the core's events until it is quiet, then write what it produced.

        RFC 2920 section 3.1: the replies to a pipelined batch go out together.
        A message answered at once does not split the batch: its reply joins
        the core's output after the replies before it and before those after
        it. Output is written early only before something that has to wait
        for it (a delayed answer, the TLS handshake, closing).
        """
        transport = self.transport
        assert transport is not None
        events = core.events  # the core's queue, read in place: no call per batch
        while events:
            event = events.popleft()
            if isinstance(event, MessageReceived):
                if self._message(core, event):
                    break  # delayed: _deliver resumes the pump
            elif isinstance(event, StageReached):
                assert self.steer is not None  # only rules make the core watch stages
                if self.steer.reached(core, event):
                    break  # decided later: the steering resumes the pump
            elif isinstance(event, StartTLS):
                self._write(transport, core)  # the 220, in plaintext
                if self.steer is not None and self.steer.tls_fault is not None:
                    self.steer.break_tls(transport)
                    return
                self.core = None  # nothing is read until the handshake is done
                transport.pause_reading()
                self._start_tls(greet=False, core=core)
                return
            elif isinstance(event, Close):
                self._ended_by(_CLOSE_ENDS.get(event.reason, "dropped"))
                self._write(transport, core)
                self._close()
                return
            elif isinstance(event, Cut):
                # No reply: drop (FIN after what was queued), reset (RST), or
                # hang (the core reads nothing more; the idle timer ends it).
                self._ended_by("reset" if event.how == "reset" else "dropped")
                self._write(transport, core)
                if event.how == "reset":
                    verdicts.reset(transport)
                elif event.how == "drop":
                    self._close()
                return
        self._write(transport, core)

    def _write(self, transport: asyncio.Transport, core: SMTPConnection) -> None:
        out = core.data_to_send()
        if out:
            steer = self.steer
            if steer is None or steer.pacer is None:
                transport.write(out)
            else:
                steer.pacer.write(out)  # a tarpit's pace

    def _message(self, core: SMTPConnection, event: MessageReceived) -> bool:
        """Answer a complete message; True if the answer is delayed."""
        self.server.stats.messages += 1
        self.obs.message_read(event)
        if self.steer is not None:
            return self.steer.message(core, event)  # end rules, then address conventions
        return self.answer(core, event)

    def answer(self, core: SMTPConnection, event: MessageReceived) -> bool:
        """The mode's answer to a message; True if it is delayed."""
        reply: Reply | list[Reply]
        if event.lmtp:
            # RFC 2033 4.2: one reply per recipient, each decided on its own;
            # they go out together, after the longest delay any of them drew.
            decided = [self._decide(event, recipient) for recipient in event.recipients]
            reply, delay = [r for r, _ in decided], max(seconds for _, seconds in decided)
        else:
            reply, delay = self._decide(event, None)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "[%s] message of %d bytes to %d recipient(s): %s in %.3gs",
                self.session_id,
                event.size,
                len(event.recipients),
                reply.code if isinstance(reply, Reply) else " ".join(str(r.code) for r in reply),
                delay,
            )
        if delay > 0:
            self.obs.delayed(delay)
            # Hold input (the client may pipeline the next transaction) and
            # answer later; other sessions are not blocked by this.
            assert self.transport is not None
            self.transport.pause_reading()
            self._delay = self.loop.call_later(delay, self._deliver, reply)
            return True
        core.send(reply)
        return False

    def _decide(self, event: MessageReceived, recipient: str | None) -> tuple[Reply, float]:
        """(reply, delay) for a message (SMTP), or for one recipient of it (LMTP)."""
        return self.server.policy.decide(self.ctx.defaults, event.mode, event.delay)

    def _deliver(self, reply: Reply | list[Reply]) -> None:
        self._delay = None
        core = self.core
        if core is None or self.transport is None or self.closing:
            return
        self.last = self.loop.time()
        self.obs.meter.started = time.perf_counter()  # delay excluded
        try:
            core.send(reply)
            self._pump(core)
            self._continue()
        except Exception:
            self._internal_error()

    # --- held answers (server.steering) ---------------------------------------------

    def hold(self, delay: float, then: Callable[[], None]) -> None:
        """Run ``then`` in ``delay`` seconds; input is held meanwhile."""
        assert self.transport is not None
        self.transport.pause_reading()
        self._delay = self.loop.call_later(delay, self._held, then)

    def _held(self, then: Callable[[], None]) -> None:
        self._delay = None
        self.last = self.loop.time()
        self.obs.meter.started = time.perf_counter()  # the injected delay excluded
        then()

    def carry_on(self, core: SMTPConnection) -> None:
        """A held answer was given: write it and read on."""
        self._pump(core)
        self._continue()

    def touch(self) -> None:
        self.last = self.loop.time()  # a tarpit's bytes are a sign of life

    # --- flow control -------------------------------------------------------------

    def _feed(self, core: SMTPConnection, data: bytes) -> None:
        """Give ``data`` to the core a slice at a time; hold the rest back when
        the client is behind on reading replies or an answer is delayed."""
        for start in range(0, len(data), _SLICE):
            if self.core is core and (self._write_paused or self._delay is not None):
                self._backlog = data[start:]
                assert self.transport is not None
                self.transport.pause_reading()
                return
            # After STARTTLS (self.core is None) the core still gets the rest:
            # it counts and drops plaintext sent behind the command.
            core.receive_data(data[start : start + _SLICE])
            self._pump(core)

    def _continue(self) -> None:
        """Feed held-back input and read again, once nothing holds input back."""
        core = self.core
        transport = self.transport
        if core is None or transport is None or self.closing:
            return  # closed, or in a TLS handshake (start_tls resumes reading)
        if self._write_paused or self._delay is not None:
            return
        backlog, self._backlog = self._backlog, b""
        if backlog:
            self._feed(core, backlog)
        held = self._backlog or self._write_paused or self._delay is not None
        if self.core is core and not self.closing and not held:
            transport.resume_reading()

    # --- TLS (server.upgrade calls back tls_ready / tls_failed) ---------------------

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
        self.last = self.loop.time()
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

    def tls_failed(self, reason: str) -> None:
        # Plaintext on an SMTPS port, a client gone mid-handshake, a scanner:
        # counted and logged at debug, never a traceback, never a flood.
        self.server.stats.tls_failures += 1
        if self.obs.tls is None:
            self.obs.handshake_done(False, None, None)
            self._ended_by("error")
        log.debug("[%s] TLS handshake failed: %s", self.session_id, reason)
        self._abort()

    # --- idle timer (server.idle) ---------------------------------------------------

    def busy(self, timer: IdleTimer) -> bool:
        core = self.core
        # The client is waiting for our (delayed) answer, or still reading
        # replies we have not finished sending: it is not idle.
        return (
            not self.closing
            and core is not None
            and self.transport is not None
            and (core.waiting or timer.replies_moving(self.transport))
        )

    def expire(self) -> None:
        core = self.core
        if self.closing or self.transport is None:
            # Closed, but the last replies have not drained: a client that
            # stopped reading would hold the connection and its buffer for
            # ever. A whole timeout without progress, and they are dropped.
            self._abort()
        elif self._header is not None:
            self._header.expired()
        elif core is None:
            # In a TLS handshake: no plaintext 421 can be sent.
            self.tls_failed(f"timed out after {self._timer.limit:g} s (idle timeout)")
        else:
            self.server.stats.timeouts += 1
            self.obs.meter.started = time.perf_counter()
            core.timeout()
            self._pump(core)

    # --- endings --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Server stopping: 421 now if idle, else after the current transaction."""
        core = self.core
        if core is None:
            self._abort()  # in a TLS handshake, or already closing
            return
        self._ended_by("shutdown")
        self.obs.meter.started = time.perf_counter()
        core.shutdown()
        self._pump(core)

    def cut(self) -> None:
        """The grace period is over: say 421 4.3.2 (even mid-DATA), then close.

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
        transport.write(R.R421_SHUTDOWN.wire)
        self._close()

    def _close(self) -> None:
        """Close after what was written drains; the idle timer bounds the wait."""
        self.closing = True
        self.last = self.loop.time()  # the flush gets a whole timeout
        self._timer.arm()  # closing from expire(): the timer is not armed
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
        self._timer.cancel()
        if self._header is not None:
            self._header.cancel()
            self._header = None
        if self._delay is not None:
            self._delay.cancel()
            self._delay = None
        self.server.sessions.discard(self)
        self.core = None
        self.obs.close()

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
