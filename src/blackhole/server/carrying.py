"""Carrying out a rule's verdict in one session: delays, replies, endings, tarpits, TLS faults.

``Steering`` (server.steering) decides, at each watched stage and at the end
of each message; what it decided is done here: counted and logged as the
rule's action, held for its delay (a timer, never a sleep), then applied to
the core and the transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived
from blackhole.protocol.hooks import Stage, TLSFault, Verdict
from blackhole.protocol.replies import Reply
from blackhole.rules.engine import CLOSING
from blackhole.server.verdicts import Pacer, RefuseHandshake, reset

if TYPE_CHECKING:
    from blackhole.server.connection import SMTPProtocol

log = logging.getLogger("blackhole.rules")

# Applies a verdict; True while the session still waits for something else.
Done = Callable[[Verdict | None], bool]


def describe(verdict: Verdict) -> str:
    """The action, as the info log line says it."""
    parts = []
    if verdict.delay:
        parts.append(f"delay {verdict.delay:.3g}s")
    for flag in ("close", "drop", "reset", "hang"):
        if getattr(verdict, flag):
            parts.append(flag)
    if verdict.tarpit:
        parts.append(f"tarpit {verdict.tarpit} B/s")
    if verdict.tls is not None:
        parts.append(f"tls {verdict.tls}")
    if verdict.reply is not None:
        # One log line: a multi-line reply's lines joined.
        parts.append(f"reply {verdict.reply.code} {' / '.join(verdict.reply.lines)}")
    return ", ".join(parts) or "pass"


class Carrying:
    """The acting half of a session's rules (``Steering`` is the deciding half)."""

    __slots__ = ("pacer", "session", "tls_fault")

    def __init__(self, session: SMTPProtocol) -> None:
        self.session = session
        self.pacer: Pacer | None = None
        self.tls_fault: TLSFault | None = None

    def _act(
        self, core: SMTPConnection, stage: Stage, verdict: Verdict | None, done: Done, later: bool
    ) -> bool:
        session = self.session
        if verdict is not None:
            self.note(stage, verdict)
            if verdict.delay > 0:
                # A timer, not a sleep: other sessions run on meanwhile, and
                # the session's input is held (SMTPProtocol._delay).
                session.hold(verdict.delay, lambda: self.resume(core, done, verdict))
                return True
        if later:
            self.resume(core, done, verdict)
            return True
        return done(verdict)

    def note(self, stage: Stage, verdict: Verdict) -> None:
        """Count and log a rule's action; start its tarpit."""
        session = self.session
        session.obs.rule_acted(verdict.rule, verdict.delay)
        log.info(
            "[%s] rule %s at %s: %s", session.session_id, verdict.rule, stage, describe(verdict)
        )
        if verdict.tarpit:
            # From this reply on, every reply of the session is paced.
            self.pacer = Pacer(
                session.loop, lambda: session.transport, verdict.tarpit, session.touch
            )

    def resume(self, core: SMTPConnection, done: Done, verdict: Verdict | None) -> None:
        session = self.session
        if session.core is not core or session.closing:
            return
        try:
            if not done(verdict):
                session.carry_on(core)
        except Exception:
            session._internal_error()

    def end(
        self,
        core: SMTPConnection,
        event: MessageReceived,
        verdict: Verdict,
        answered: Sequence[Reply] = (),
    ) -> bool:
        """An ``end`` verdict: a reply replaces the mode's answer, or the session ends.

        ``answered``: on LMTP, the replies of the recipients before the one
        this verdict is for (``server.lmtpend``).
        """
        session = self.session
        transport = session.transport
        assert transport is not None
        if verdict.drop:
            session._close()  # FIN, no reply
        elif verdict.reset:
            reset(transport)
            session._finish()
        elif verdict.hang:
            # No answer ever, as a hang at a stage: the core reads nothing
            # more, and the session ends when the client hangs up (pipelined
            # commands or not: none will be answered) or at the idle timeout.
            core.hang(f"rule {verdict.rule}")
            return False
        elif verdict.close or (verdict.reply is not None and verdict.reply.code == 421):
            core.send(for_each(event, verdict.reply or CLOSING, answered))
            session._write(transport, core)
            session._close()
        else:
            assert verdict.reply is not None
            core.send(for_each(event, verdict.reply, answered))
            return False
        return True

    # --- hooks for the adapter ----------------------------------------------------------

    def close_after(self, close: Callable[[], None]) -> None:
        """Close once a tarpit has written everything (at once without one)."""
        if self.pacer is None:
            close()
        else:
            self.pacer.then(close)

    def break_tls(self, transport: asyncio.Transport) -> None:
        """After the 220 to STARTTLS: fail the handshake, or never start it."""
        session = self.session
        if self.tls_fault is TLSFault.FAIL:
            transport.set_protocol(RefuseHandshake(transport, session.ctx.tls_handshake_timeout))
            # The client's handshake is bound to fail: the session ends here.
            session.handshake_failed("refused by a rule (tls = fail)")
            session._finish()
        else:
            # Nothing is read and nothing answered: the idle timer ends it.
            session.core = None
            transport.pause_reading()


def for_each(
    event: MessageReceived, reply: Reply, answered: Sequence[Reply] = ()
) -> Reply | list[Reply]:
    """The final answer as the core takes it: on LMTP one per recipient (RFC 2033 4.2).

    On LMTP the recipients ``answered`` already keep their replies and every
    later one gets ``reply`` (a content rule's answer, or the 421 of a rule
    that closes the session: RFC 2033 4.2 has every recipient answered).
    """
    if not event.lmtp:
        return reply
    return [*answered, *[reply] * (len(event.recipients) - len(answered))]
