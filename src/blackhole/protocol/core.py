"""The SMTP session as a sans-IO state machine.

``SMTPConnection`` is fed bytes and produces reply bytes and events. It never
blocks, sleeps, reads a clock or touches a socket; everything it needs from the
outside (the mail name, limits, a CRAM-MD5 challenge maker) comes in through
``SessionSettings``. Feeding the same bytes in any chunking, one byte at a time
included, gives the same replies: lines are cut from one input buffer, and the
DATA reader keeps back what a terminator split across reads needs.

Input modes (``modes.Mode``) say how the next bytes are read; the command
state (``state``, see ``states.py``) says which commands are allowed, and the
table there says everything else about sequencing.

Rules hook in through ``watch``: when a command reaches a stage in it, the
core queues ``StageReached`` and holds its input until ``resolve()``
(``staging.py``).

The session is built in layers, each a module owning one thing:
``commands.py`` (the session's facts and what each command does),
``intake.py`` (a message's content, DATA and BDAT, and its end),
``staging.py`` (rules stages and their verdicts), ``dispatch.py`` (one
command line, from bytes to its handler) and this module (the adapter's API
and the input loop that cuts the input by mode).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from blackhole.protocol import hooks as H
from blackhole.protocol import modes as M
from blackhole.protocol import replies as R
from blackhole.protocol import states as S
from blackhole.protocol.dispatch import DISPATCH, LMTP_DISPATCH, Dispatch
from blackhole.protocol.events import Event, StageReached
from blackhole.protocol.hooks import Stage, Verdict
from blackhole.protocol.limits import MAX_AUTH_LINE
from blackhole.protocol.metering import CONNECT, END, NULL_METER, SERVER, UNPARSED, ReplyMeter
from blackhole.protocol.replies import Reply
from blackhole.protocol.settings import SessionSettings


class SMTPConnection(Dispatch):
    """One SMTP session, from greeting to close."""

    # The stages the adapter wants to hear about, as hooks.bits() of them; it
    # may set this at any time (before start() for connect).
    watch = 0
    # Report the content stage as the content reaches each of these byte
    # counts (ascending), and at its end if none was reached.
    content_thresholds: tuple[int, ...] = ()
    discarded_after_starttls = 0
    _overlong = False  # inside a command line that is too long
    _draining = False  # shutting down: close once the transaction ends
    # Told of every batch of replies before it is written (protocol.metering).
    meter: ReplyMeter = NULL_METER
    # Asked at a watched command stage before it is reported: False lets the
    # command run as if the stage were not watched (no rule can act on it).
    screen: Callable[[Stage, str | None], bool] | None = None

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.state = S.CONNECTED
        self.tls = settings.tls_active
        self._mode = M.COMMAND
        self._in = bytearray()
        self._out: list[bytes] = []
        self.events = deque()
        self.recipients = []
        self._dispatch = LMTP_DISPATCH if settings.lmtp else DISPATCH
        self._marks: list[int | str] = [0, CONNECT]

    # --- the adapter's API --------------------------------------------------

    def start(self) -> None:
        """Queue the greeting (RFC 5321 section 4.3.1: 220 first)."""
        greeting = R.greeting(self.settings.mailname, self.settings.lmtp)
        # The greeting marked as prompted by the connection, the way a command
        # line marks its replies: a meter then takes it as one reply to one
        # prompt (its cheapest case). "connect" has no command to count.
        self._marks += (0, CONNECT)
        if self.watch & H.CONNECT_BIT:
            self._pause(StageReached(H.CONNECT), M.COMMAND, self._greet, self._refuse_session)
            return
        self._out.append(greeting.wire)

    def receive_data(self, data: bytes) -> None:
        mode = self._mode
        if mode >= M.STAGE:
            if mode <= M.WAITING:
                self._in += data  # pipelined behind a pause: kept for later
            elif mode is M.TLS:
                self.discarded_after_starttls += len(data)
            return
        if (
            mode is M.COMMAND
            and not self._in
            and not self._overlong
            and 0 < len(data) <= MAX_AUTH_LINE
            and data[-1] == 10  # "\n"
        ):
            # data[-2] == 13 ("\r"), not endswith(): an index, where a method
            # call parses its arguments like any Python call.
            line = data[:-2] if len(data) > 1 and data[-2] == 13 else data[:-1]
            # `10 in`: a byte as an integer is a memchr, where find() parses
            # its arguments and b"\n" in would raise and clear a TypeError.
            if 10 not in line:
                # The common case without pipelining: exactly one whole
                # command line. Same result as the general path below,
                # minus the copies into and out of the input buffer.
                self._line(line)
                if self._draining:
                    self._drain_if_idle()
                return
        self._in += data
        self._process()

    def unanswered(self) -> None:
        """The session ends here: the commands still waiting for their replies
        (a rule cut the connection, the client left) are counted as received."""
        marks = self._marks
        if len(marks) > 2:
            self.meter.unanswered(marks)
            del marks[2:]

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        marks = self._marks
        self.meter.replies(out, marks)
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        # Replies still to come belong to the verb in force now. A new list
        # of two: cheaper than deleting a slice of this one, in either build.
        self._marks = [0, marks[-1]]
        return data

    def next_event(self) -> Event | None:
        return self.events.popleft() if self.events else None

    def send(self, reply: Reply | Sequence[Reply]) -> None:
        """Answer the message reported by ``MessageReceived``, then read on.

        SMTP: one reply. LMTP: a sequence of one reply per recipient, in the
        order of ``MessageReceived.recipients`` (RFC 2033 section 4.2).
        """
        if self._mode is not M.WAITING:
            raise RuntimeError("send() is only for the final reply to a message")
        self._prompted_by(END)
        if isinstance(reply, Reply):
            if self.settings.lmtp:
                raise ValueError("an LMTP message needs one reply per recipient")
            self._out.append(reply.wire)
        else:
            if not self.settings.lmtp or len(reply) != len(self.recipients):
                raise ValueError(
                    f"{len(reply)} replies for {len(self.recipients)} recipient(s)"
                    f" in an {'LMTP' if self.settings.lmtp else 'SMTP'} session"
                )
            self._out.extend(r.wire for r in reply)
        self._end_transaction()
        self._mode = M.COMMAND
        self._carry_on()

    def resolve(self, verdict: Verdict | None) -> None:
        """Apply the rules' verdict on the stage reported by ``StageReached``.

        None, or a verdict with nothing for SMTP in it, lets the command run
        as usual; a positive reply (2xx; 3xx for DATA, whose own answer is
        354; 220 alone for STARTTLS) takes its success path with the rule's
        reply; any other reply its failure path. A 421 or ``close`` closes after the
        reply; ``drop``/``reset``/``hang`` end the session without one (a
        ``Cut`` event). Delays, tarpits and TLS faults are the adapter's.
        """
        if self._mode is M.CLOSED or self._mode is M.HUNG:
            return  # ended meanwhile (a timeout, a shutdown): nothing to apply
        if self._mode is not M.STAGE:
            raise RuntimeError("resolve() is only for a StageReached event")
        apply, refuse = self._apply, self._refuse
        assert apply is not None and refuse is not None
        self._apply = self._refuse = None
        self._mode = self._resume
        reply = verdict.reply if verdict is not None else None
        if verdict is None:
            apply(None)
        elif verdict.drop or verdict.reset or verdict.hang:
            how = "drop" if verdict.drop else "reset" if verdict.reset else "hang"
            self._cut(how, f"rule {verdict.rule}")
        elif verdict.close or (reply is not None and reply.code == 421):
            self._close(reply or R.R421_CLOSING, f"rule {verdict.rule}")
        elif reply is None or self._positive[0] <= reply.code < self._positive[1]:
            apply(reply)
        else:
            refuse(reply)
        self._carry_on()

    def _carry_on(self) -> None:
        """Back to reading: the input held meanwhile, or close if draining."""
        if self._mode >= M.STAGE:
            return
        if self._draining and self._drain_if_idle():
            return
        if self._in:
            self._process()

    def tls_started(self) -> None:
        """The STARTTLS handshake succeeded (RFC 3207 section 4.2: start over)."""
        self.tls = True
        self.authenticated = False
        self.auth_user = None
        self.helo = None
        self._reset_transaction()
        self.last_sender, self.last_recipients = None, ()
        self._in.clear()
        self._mode = M.COMMAND

    def timeout(self) -> None:
        """The client was idle too long (RFC 5321 4.5.3.2: 421 then close)."""
        self._server_close(R.R421_TIMEOUT, "timeout")

    def shutdown(self) -> None:
        """Server stopping: idle sessions get 421 now, others after their transaction."""
        if self._mode is not M.HUNG and (self.in_transaction or self._mode is M.STAGE):
            # No reply now: what the pending command or stage answers is
            # still that command's (protocol.metering).
            self._draining = True
        else:
            self._server_close(R.R421_SHUTDOWN, "shutdown")

    def shutdown_now(self) -> None:
        """The stop waited long enough: 421 now, even inside a transaction
        (RFC 5321 section 3.8), counted as every reply is."""
        self._server_close(R.R421_SHUTDOWN, "shutdown")

    def hang(self, reason: str) -> None:
        """A rule said hang where the adapter answers (a message's end): as at
        any stage, nothing is read or answered again (a ``Cut`` event)."""
        if self._mode is not M.WAITING:
            raise RuntimeError("hang() is only for the answer to a message")
        self._cut("hang", reason)

    def _server_close(self, reply: Reply, reason: str) -> None:
        """A 421 no command asked for, then close; a hung session never
        answers again, so it just closes."""
        if self._mode is M.CLOSED:
            return
        self._prompted_by(SERVER)
        self._close(None if self._mode is M.HUNG else reply, reason)

    @property
    def in_transaction(self) -> bool:
        return self.state in (S.MAIL, S.RCPT, S.BDAT) or self._mode in (
            M.DATA,
            M.BDAT,
            M.WAITING,
        )

    @property
    def has_input(self) -> bool:
        """Input is buffered that has not been acted on yet (pipelined)."""
        return bool(self._in)

    @property
    def reading_content(self) -> bool:
        """True inside a message's content (DATA, or a BDAT chunk)."""
        return self._mode is M.DATA or self._mode is M.BDAT

    @property
    def waiting(self) -> bool:
        """True while the adapter owes an answer: the final reply to a
        message, or a verdict on a stage (input is held meanwhile)."""
        return self._mode is M.WAITING or self._mode is M.STAGE

    # --- input ----------------------------------------------------------------

    def _process(self) -> None:
        buf = self._in
        while buf:
            mode = self._mode
            if mode is M.DATA:
                reader = self._reader
                assert reader is not None
                if not reader.consume(buf):
                    if self.content_thresholds:
                        self._check_threshold(reader.size, reader.headers, M.DATA)
                    return
                self._data_done(reader)
            elif mode is M.BDAT:
                chunks = self._chunks
                assert chunks is not None
                if not chunks.consume(buf):
                    if self.content_thresholds and chunks.counting:
                        self._check_threshold(chunks.size, chunks.headers, M.BDAT)
                    return
                self._chunk_complete(chunks)
            elif mode <= M.SASL:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_AUTH_LINE:
                        # Far too long for any command: drop it now, answer at its end.
                        self._overlong = True
                        buf.clear()
                    return
                if self._overlong or nl > MAX_AUTH_LINE:
                    # Over the hard cap whether it came in one read or many:
                    # one 500 at its end, never parsed.
                    del buf[: nl + 1]
                    self._overlong = False
                    if mode is M.SASL:
                        # RFC 4954 section 6: 5.5.6 for a SASL response, which
                        # ends the exchange: AUTH's reply, a failed AUTH.
                        self._finish_auth(R.R500_AUTH_LINE_TOO_LONG, ok=False)
                    else:
                        self._prompted_by(UNPARSED)
                        self._unusable(R.R500_LINE_TOO_LONG)
                    continue
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                if line and line[-1] == 13:  # "\r"
                    line = line[:-1]
                self._line(line)
            else:
                return
            if self._draining and self._drain_if_idle():
                return

    def _drain_if_idle(self) -> bool:
        """Shutting down: close once no transaction is open; True if closed."""
        if self.in_transaction or self._mode >= M.STAGE:
            return False
        self._server_close(R.R421_SHUTDOWN, "shutdown")
        return True
