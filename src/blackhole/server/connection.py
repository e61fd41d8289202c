"""The asyncio adapter: one ``asyncio.Protocol`` per connection.

Callbacks, not a coroutine per session: ``data_received`` feeds the sans-IO
core and writes whatever replies one batch of input produced in one write
(RFC 2920 section 3.1 asks servers to answer a pipelined batch together).
This module owns the transport's callbacks, the start of a session and the
pump that acts on the core's events; the parts ``SMTPProtocol`` is built from
own the rest (``server.sessionbase`` lists them). The TLS handshake is in
``server.upgrade`` and the idle timer in ``server.idle``; SMTP meaning lives
in ``protocol``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import Close, Cut, MessageReceived, StageReached, StartTLS
from blackhole.server import upgrade, verdicts
from blackhole.server.flow import SLICE
from blackhole.server.observing import SessionObservation
from blackhole.server.proxied import HeaderWait
from blackhole.server.securing import Securing
from blackhole.server.steering import Steering
from blackhole.server.unixsock import UNIX_CLIENT

if TYPE_CHECKING:
    from blackhole.server.context import ListenerContext
    from blackhole.server.rulestate import WorkerRules
    from blackhole.server.state import ServerState

# A Close event's reason -> the event log's session end (OBSERVE.md); any
# other reason (a rule's close, too many unknown commands) is "dropped".
_CLOSE_ENDS: Final = {"quit": "quit", "timeout": "timeout", "shutdown": "shutdown"}


class SMTPProtocol(Securing):
    """Glue between a transport and an ``SMTPConnection``."""

    __slots__ = ()  # the attributes are SessionBase's

    def __init__(self, ctx: ListenerContext, server: ServerState) -> None:
        self.ctx = ctx
        self.server = server
        self.loop = server.loop
        self.session_id = server.next_session_id()
        self.core = None
        self.transport = None
        self.idle_slot = None  # server.idle: not armed yet
        self._unsent = 0
        self._delay = None
        self.last = 0.0  # loop time of the last sign of life (server.idle)
        self.closing = False  # no more input is wanted; output may still drain
        self._ended = False  # _finish() has run
        self._write_paused = False
        self._backlog = b""  # input read but not yet given to the core
        self._half_closed = False
        # SMTPS only: bytes read before start_tls() took over the transport.
        self._early = None
        self.steer = None  # set when the worker has rules
        # The client's (address, port): the peer's, or on a proxy=yes
        # listener the one its PROXY header names. Everything that shows or
        # matches the client reads this, and only this.
        self.client = None
        self._header = None  # proxy=yes: until the header is in
        # The worker's, read once (ServerState): asking the logger is a
        # Python call, and a message's answer would ask it every time.
        self.debug = server.debug
        # Made only for an accepted connection: counted from here.
        self.obs = SessionObservation(server.observation, ctx.name, self.session_id)

    # --- transport callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        # (no cast(): a function call per connection).
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        server.sessions.add(self)
        server.stats.connections += 1
        ctx = self.ctx
        observation = server.observation
        if ctx.unix:
            self.obs.client = UNIX_CLIENT  # a UNIX socket's peer has no address
        elif (
            server.rules is not None
            or observation.event_log is not None
            or observation.record
            or ctx.proxy
        ):
            # Only rules, the event log, recorded messages and a PROXY
            # header's log lines read the client. Asking the transport costs
            # a system call and, on uvloop, a socket object made and
            # dropped: a session that nothing reads it of does not ask.
            self._ask_peer(transport)
        self.last = self.server.clock()
        server.idle.arm(self, ctx.timeout)
        if ctx.proxy:
            # The PROXY header comes before the greeting and the TLS handshake.
            limit = min(ctx.tls_handshake_timeout, ctx.timeout)
            self._header = HeaderWait(self.loop, self, limit)
            return
        self._open()

    def _ask_peer(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            # An IP socket's peer is (host, port[, flow, scope]); typed
            # locals are checks in the compiled build, not str() and int() calls.
            host: str = peer[0]
            port: int = peer[1]
            self.client = (host, port)
            self.obs.client = host

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
        # A read that ends a line is looked at first (an index, no call);
        # find(), not `b"\n" in data`: bytes.__contains__ first tries its
        # argument as an integer, and pays a TypeError raised and cleared.
        if data[-1] == 10 or data.find(b"\n") >= 0 or core.reading_content:
            # RFC 5321 section 4.5.3.2.7 times the wait for the next *command*,
            # and 4.5.3.2.5 each block of a message's content. Bytes of a
            # command line that never ends are neither: a slowloris trickling
            # one byte at a time must still reach the idle timeout.
            self.last = self.server.clock()
        if self._backlog:
            self._backlog += data  # reading is paused; this is only a safety net
            return
        self.obs.meter.start()
        try:
            if len(data) <= SLICE and not self._write_paused and self._delay is None:
                core.receive_data(data)
                self._pump(core)
            else:
                self._feed(core, data)
        except Exception:
            self._internal_error()

    def eof_received(self) -> bool:
        core = self.core
        # The client's EOF while an answer waits, behind commands it
        # pipelined: a half-close (``printf ... | nc``), the client still
        # reading. They are answered once the delay is over, then the
        # session closes (server.flow); True keeps our side open till then.
        # A FIN cannot say whether the client still reads: one that
        # pipelined and then left is answered all the same. TLS has no
        # half-close (its EOF ends the connection), and bytes held inside a
        # message's content are no commands.
        if (
            self._delay is not None
            and core is not None
            and not core.tls
            and not core.in_content
            and (self._backlog or core.has_input)
        ):
            self._half_closed = True
            return True
        # Otherwise the client hung up (in the middle of DATA, or during a
        # delay with nothing more sent): nothing is owed to it, and False
        # closes our side too.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header is not None:
            self._header.closed()
        elif self.core is None and upgrade.timed_out(exc):
            # The TLS handshake's time limit: the SSL layer (uvloop's and
            # asyncio's) aborts the connection and says so here, before
            # start_tls() raises.
            self._ended_by("timeout")
        self._finish()

    # --- the PROXY header (server.proxied calls back) ----------------------------------

    def proxied(self, client: tuple[str, int] | None, rest: bytes) -> None:
        self._header = None
        if client is not None:  # None: UNKNOWN or LOCAL, the peer is the client
            self.client = client
            self.obs.client = client[0]
        self._open(rest)

    def header_failed(self, end: str) -> None:
        self._header = None
        self._ended_by(end)
        self.server.stats.proxy_failures += 1
        self._abort()

    # --- the session --------------------------------------------------------------

    def _begin(self) -> None:
        ctx, rules = self.ctx, self.server.rules
        settings = ctx.settings
        if rules is not None and rules.headers_wanted and ctx.header_settings is not None:
            settings = ctx.header_settings
        core = SMTPConnection(settings)
        self.core = core
        core.meter = self.obs.meter
        self.obs.core = core
        if rules is not None:
            self._steer(rules, core)
        core.start()
        if core.events:  # the connect stage is watched: the rules come first
            self._pump(core)
        else:
            # The greeting alone: written without the pump's round.
            transport = self.transport
            assert transport is not None
            self._write(transport, core)
        if self.server.stopping:  # it waited for a PROXY header or a handshake
            self.shutdown()

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
                if self._backlog:
                    # Plaintext pipelined behind STARTTLS while a rule's
                    # delay held it back: dropped (RFC 3207 section 6).
                    core.discarded_after_starttls += len(self._backlog)
                    self._backlog = b""
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
                # hang (the core reads nothing more): then the session ends
                # as whoever gives up ends it, the client or the idle timer.
                if event.how != "hang":
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

    def _steer(self, rules: WorkerRules, core: SMTPConnection) -> None:
        if self.client is None and not self.obs.client and self.transport is not None:
            # There were no rules when the connection came (or, on SMTPS,
            # they came while the handshake ran): the rules read the client.
            self._ask_peer(self.transport)
        self.steer = Steering(self, rules, core)

    def follow_rules(self) -> None:
        """The rules in force changed (the control API, a reload): they decide
        from the session's next command on."""
        core, rules = self.core, self.server.rules
        if core is None or rules is None or self.closing:
            return  # not begun, or in a TLS handshake: tls_ready() asks again
        if self.steer is None:
            self._steer(rules, core)
        else:
            self.steer.follow(core)

    # --- idle timer (server.idle) ---------------------------------------------------

    def busy(self) -> bool:
        core = self.core
        # The client is waiting for our (delayed) answer, or still reading
        # replies we have not finished sending: it is not idle.
        return (
            not self.closing
            and core is not None
            and self.transport is not None
            and (core.waiting or self._replies_moving(self.transport))
        )

    def _replies_moving(self, transport: asyncio.WriteTransport) -> bool:
        """True if the write buffer changed since the last check.

        A client that pipelined many commands may take longer than the
        timeout to read the replies; it is busy, not idle. One that has
        stopped reading leaves the buffer as it was, and times out.
        """
        unsent = transport.get_write_buffer_size()
        moving = unsent > 0 and unsent != self._unsent
        self._unsent = unsent
        return moving

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
            self._ended_by("timeout")
            self.tls_failed(f"timed out after {self.ctx.timeout:g} s (idle timeout)")
        else:
            self.server.stats.timeouts += 1
            self.obs.meter.start()
            core.timeout()
            self._pump(core)


def open_session(contexts: list[ListenerContext], index: int, server: ServerState) -> SMTPProtocol:
    """A new session on listener ``index``, with the listener's context as it is now.

    The worker's protocol factory is this function bound by ``functools.partial``
    to a list the worker updates in place on reload: called from C, where a
    closure in the (interpreted) worker module ran a Python frame per connection.
    """
    return SMTPProtocol(contexts[index], server)
