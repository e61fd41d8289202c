"""The SMTP session as a sans-IO state machine.

``SMTPConnection`` is fed bytes and produces reply bytes and events. It never
blocks, sleeps, reads a clock or touches a socket; everything it needs from the
outside (the mail name, limits, a CRAM-MD5 challenge maker) comes in through
``SessionSettings``. Feeding the same bytes in any chunking, one byte at a time
included, gives the same replies: lines are cut from one input buffer, and the
DATA reader keeps back what a terminator split across reads needs.

Input modes (``_mode``) say how the next bytes are read; the command state
(``state``, see ``states.py``) says which commands are allowed.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable

from blackhole.protocol import info, sasl
from blackhole.protocol import replies as R
from blackhole.protocol.events import Close, Event, MessageReceived, StartTLS
from blackhole.protocol.grammar import MailParams, parse_mail, parse_rcpt
from blackhole.protocol.limits import MAX_AUTH_LINE, MAX_COMMAND_LINE, MAX_UNKNOWN_COMMANDS
from blackhole.protocol.reader import DATA_PREFIX, ChunkReader, DataReader, HeaderScanner
from blackhole.protocol.replies import Reply
from blackhole.protocol.settings import SessionSettings
from blackhole.protocol.states import COMMANDS, TABLE, State, bad_sequence, ehlo_reply

# SessionSettings lived here first; the server still imports it from here.
__all__ = ["SMTPConnection", "SessionSettings"]

# Control characters other than HT are not allowed in a command line
# (RFC 5321 section 4.1.1: commands are printable US-ASCII, or UTF-8 with
# SMTPUTF8); NUL in particular has broken C servers and must not pass.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BDAT_ARGS = re.compile(r"([0-9]{1,20})(?: +(LAST))? *", re.IGNORECASE)


class _Mode(enum.IntEnum):
    COMMAND = 0
    SASL = 1
    DATA = 2
    BDAT = 3
    # Modes at or above WAITING do not process input.
    WAITING = 4  # a message is complete; the adapter owes the final reply
    TLS = 5  # STARTTLS answered; everything until the handshake is discarded
    CLOSED = 6


class SMTPConnection:
    """One SMTP session, from greeting to close."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.state = State.CONNECTED
        self.tls = settings.tls_active
        self.authenticated = False
        self.messages = 0
        self.discarded_after_starttls = 0
        self._mode = _Mode.COMMAND
        self._in = bytearray()
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._unknown = 0
        self._overlong = False  # inside a command line that is too long
        self._draining = False  # shutting down: close once the transaction ends
        self._sasl: sasl.Exchange | None = None
        self._reader: DataReader | None = None
        self._chunks: ChunkReader | None = None
        self._bdat_refusal: Reply | None = None
        self._reset_transaction()

    # --- the adapter's API --------------------------------------------------

    def start(self) -> None:
        """Queue the greeting (RFC 5321 section 4.3.1: 220 first)."""
        self._out.append(R.greeting(self.settings.mailname).wire)

    def receive_data(self, data: bytes) -> None:
        mode = self._mode
        if mode >= _Mode.WAITING:
            if mode is _Mode.WAITING:
                self._in += data  # pipelined after the message: kept for later
            elif mode is _Mode.TLS:
                self.discarded_after_starttls += len(data)
            return
        if (
            mode is _Mode.COMMAND
            and not self._in
            and not self._overlong
            and len(data) <= MAX_AUTH_LINE
            and data.find(b"\n") == len(data) - 1
        ):
            # The common case without pipelining: exactly one whole command
            # line. Same result as the general path below, minus the copies
            # into and out of the input buffer.
            self._line(data[:-2] if data.endswith(b"\r\n") else data[:-1])
            if self._draining:
                self._drain_if_idle()
            return
        self._in += data
        self._process()

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def send(self, reply: Reply) -> None:
        """Answer the message reported by ``MessageReceived``, then read on."""
        if self._mode is not _Mode.WAITING:
            raise RuntimeError("send() is only for the final reply to a message")
        self._out.append(reply.wire)
        self._end_transaction()
        self._mode = _Mode.COMMAND
        if self._draining:
            self._close(R.R421_SHUTDOWN, "shutdown")
            return
        if self._in:
            self._process()

    def tls_started(self) -> None:
        """The STARTTLS handshake succeeded (RFC 3207 section 4.2: start over)."""
        self.tls = True
        self.state = State.CONNECTED
        self.authenticated = False
        self._reset_transaction()
        self._in.clear()
        self._mode = _Mode.COMMAND

    def timeout(self) -> None:
        """The client was idle too long (RFC 5321 4.5.3.2: 421 then close)."""
        if self._mode is not _Mode.CLOSED:
            self._close(R.R421_TIMEOUT, "timeout")

    def shutdown(self) -> None:
        """Server stopping: idle sessions get 421 now, others after their transaction."""
        if self._mode is _Mode.CLOSED:
            return
        if self.in_transaction:
            self._draining = True
        else:
            self._close(R.R421_SHUTDOWN, "shutdown")

    @property
    def in_transaction(self) -> bool:
        return self.state in (State.MAIL, State.RCPT, State.BDAT) or self._mode in (
            _Mode.DATA,
            _Mode.BDAT,
            _Mode.WAITING,
        )

    @property
    def reading_content(self) -> bool:
        """True inside a message's content (DATA, or a BDAT chunk)."""
        return self._mode is _Mode.DATA or self._mode is _Mode.BDAT

    @property
    def waiting(self) -> bool:
        """True while the final reply to a message is owed (input is held)."""
        return self._mode is _Mode.WAITING

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    # --- input ----------------------------------------------------------------

    def _process(self) -> None:
        buf = self._in
        while buf:
            mode = self._mode
            if mode is _Mode.DATA:
                reader = self._reader
                assert reader is not None
                if not reader.consume(buf):
                    return
                self._data_done(reader)
            elif mode is _Mode.BDAT:
                chunks = self._chunks
                assert chunks is not None
                if not chunks.consume(buf):
                    return
                self._bdat_chunk_done(chunks)
            elif mode <= _Mode.SASL:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > MAX_AUTH_LINE:
                        # Far too long for any command: drop it now, answer at its end.
                        self._overlong = True
                        buf.clear()
                    return
                if self._overlong or nl > MAX_AUTH_LINE:
                    # Over the hard cap whether it came in one read or many:
                    # one 500 at its end, never parsed (it could be an AUTH
                    # line or a SASL response), and any exchange is over.
                    del buf[: nl + 1]
                    self._overlong = False
                    self._abort_sasl()
                    self._reply(R.R500_LINE_TOO_LONG)
                    continue
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                self._line(line)
            else:
                return
            if self._draining and self._drain_if_idle():
                return

    def _drain_if_idle(self) -> bool:
        """Shutting down: close once no transaction is open; True if closed."""
        if self.in_transaction or self._mode >= _Mode.WAITING:
            return False
        self._close(R.R421_SHUTDOWN, "shutdown")
        return True

    def _line(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._abort_sasl()
            self._reply(R.R500_BAD_ENCODING)
            return
        # isprintable() is a C fast path that is true for almost every
        # command; only when it is false (a TAB, or worse) does the regex run.
        if not text.isprintable() and _CONTROL.search(text):
            self._abort_sasl()
            self._reply(R.R500_BAD_BYTES)
            return
        if self._mode is _Mode.SASL:
            self._sasl_step(text)
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        if len(raw) + 2 > MAX_COMMAND_LINE and verb != "AUTH":
            self._reply(R.R500_LINE_TOO_LONG)
            return
        handler = _DISPATCH.get((self.state, verb))
        if handler is not None:
            handler(self, arg)
        elif verb in COMMANDS:
            self._reply(bad_sequence(self.state, verb))
        else:
            self._unknown_command()

    def _unknown_command(self) -> None:
        self._unknown += 1
        if self._unknown >= MAX_UNKNOWN_COMMANDS:
            self._close(R.R421_TOO_MANY_UNKNOWN, "too many unknown commands")
        else:
            self._reply(R.R502_UNKNOWN)

    # --- helpers --------------------------------------------------------------

    def _reply(self, reply: Reply) -> None:
        self._out.append(reply.wire)

    def _close(self, reply: Reply, reason: str) -> None:
        self._out.append(reply.wire)
        self._mode = _Mode.CLOSED
        self._in.clear()
        self._events.append(Close(reason))

    def _reset_transaction(self) -> None:
        self.recipients = 0
        self.smtputf8 = False
        self.binarymime = False
        self._reader = None
        self._chunks = None

    def _end_transaction(self) -> None:
        self._reset_transaction()
        if self.state is not State.CONNECTED:
            self.state = State.GREETED

    # --- commands (names referenced from states.COMMANDS) ------------------------

    def do_ehlo(self, arg: str) -> None:
        if not arg.strip():
            self._reply(R.R501_EHLO_SYNTAX)
            return
        self._end_transaction()
        self.state = State.GREETED
        s = self.settings
        self._reply(
            ehlo_reply(
                f"{s.mailname} Hello {arg.strip()}",
                s.max_message_size,
                tls=s.tls_available and not self.tls,  # RFC 3207 4.2: not once TLS is on
                auth=self.tls or not s.auth_tls_only,
            )
        )

    def do_helo(self, arg: str) -> None:
        if not arg.strip():
            self._reply(R.R501_HELO_SYNTAX)
            return
        self._end_transaction()
        self.state = State.GREETED
        self._reply(Reply(250, None, f"{self.settings.mailname} Hello {arg.strip()}"))

    def do_mail(self, arg: str) -> None:
        if arg[:5].upper() != "FROM:":
            self._reply(R.R501_MAIL_SYNTAX)
            return
        if self.settings.auth_required and not self.authenticated:
            self._reply(R.R530_AUTH_REQUIRED)
            return
        parsed = parse_mail(arg[5:], self.settings.max_message_size)
        if isinstance(parsed, Reply):
            self._reply(parsed)
            return
        self._start_transaction(parsed)
        self._reply(R.R250_MAIL_OK)

    def _start_transaction(self, params: MailParams) -> None:
        self._reset_transaction()
        self.smtputf8 = params.smtputf8
        self.binarymime = params.binarymime
        self.state = State.MAIL

    def do_rcpt(self, arg: str) -> None:
        if arg[:3].upper() != "TO:":
            self._reply(R.R501_RCPT_SYNTAX)
            return
        if self.recipients >= self.settings.max_recipients:
            self._reply(R.R452_TOO_MANY_RCPT)  # RFC 5321 4.5.3.1.10
            return
        parsed = parse_rcpt(arg[3:], self.smtputf8)
        if isinstance(parsed, Reply):
            self._reply(parsed)
            return
        self.recipients += 1
        self.state = State.RCPT
        self._reply(R.R250_RCPT_OK)

    def do_data(self, arg: str) -> None:
        if arg.strip():
            self._reply(R.R501_NO_ARGS)
            return
        if self.binarymime:
            self._reply(R.R503_BINARYMIME_DATA)  # RFC 3030 section 3
            return
        self._reply(R.R354_DATA)
        self._reader = DataReader(self.settings.max_message_size, self.settings.dynamic_switch)
        self._mode = _Mode.DATA
        self._in[0:0] = DATA_PREFIX

    def _data_done(self, reader: DataReader) -> None:
        if reader.oversize:
            self._refuse_message(R.R552_TOO_BIG)
        elif reader.long_line:
            self._refuse_message(R.R500_LINE_TOO_LONG)
        else:
            self._message_complete(reader.size, reader.headers)

    def _refuse_message(self, reply: Reply) -> None:
        self._reply(reply)
        self._end_transaction()
        self._mode = _Mode.COMMAND

    def _message_complete(self, size: int, headers: HeaderScanner | None) -> None:
        mode, delay = headers.switches() if headers is not None else (None, None)
        self.messages += 1
        self._events.append(MessageReceived(size, self.recipients, mode, delay))
        self._mode = _Mode.WAITING

    def do_bdat(self, arg: str) -> None:
        m = _BDAT_ARGS.fullmatch(arg)
        if m is None:
            # The chunk size is unknown, so its bytes cannot be skipped: they
            # will be read as commands and fail as such.
            self._reply(R.R501_BDAT_SYNTAX)
            return
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = ChunkReader(self.settings.dynamic_switch)
        # RFC 3030 section 2: a refused BDAT still has its chunk read and dropped.
        if self.state in (State.RCPT, State.BDAT):
            self._bdat_refusal = None
            self.state = State.BDAT
        else:
            self._bdat_refusal = bad_sequence(self.state, "BDAT")
        chunks.start(int(m.group(1)), m.group(2) is not None, self._bdat_refusal is None)
        self._mode = _Mode.BDAT
        if not chunks.left:
            self._bdat_chunk_done(chunks)

    def _bdat_chunk_done(self, chunks: ChunkReader) -> None:
        self._mode = _Mode.COMMAND
        if self._bdat_refusal is not None:
            self._reply(self._bdat_refusal)
        elif chunks.size > self.settings.max_message_size:
            # RFC 3030 section 2: an error on any chunk fails the transaction.
            self._refuse_message(R.R552_TOO_BIG)
        elif chunks.last:
            self._message_complete(chunks.size, chunks.headers)
        else:
            self._reply(R.bdat_chunk(chunks.size))

    def do_rset(self, arg: str) -> None:
        if arg.strip():
            # RFC 5321 4.1.1.5: rset = "RSET" CRLF, no argument; the
            # transaction is left as it was, as Postfix does.
            self._reply(R.R501_NO_ARGS)
            return
        self._end_transaction()
        self._reply(R.R250_OK)

    def do_noop(self, arg: str) -> None:
        self._reply(R.R250_OK)

    def do_quit(self, arg: str) -> None:
        self._close(R.R221_BYE, "quit")

    def do_help(self, arg: str) -> None:
        self._reply(info.help_reply(arg))

    def do_vrfy(self, arg: str) -> None:
        self._reply(info.vrfy_reply(arg))

    def do_expn(self, arg: str) -> None:
        self._reply(info.expn_reply(arg, self.settings.mailname))

    def do_etrn(self, arg: str) -> None:
        self._reply(info.etrn_reply(arg))

    def do_auth(self, arg: str) -> None:
        if self.authenticated:
            self._reply(R.R503_ALREADY_AUTH)  # RFC 4954 section 4
            return
        if self.settings.auth_tls_only and not self.tls:
            self._reply(R.R538_ENCRYPTION_REQUIRED)
            return
        self._sasl, reply = sasl.begin(arg, self.settings.challenge)
        self._sasl_reply(reply)

    def _sasl_step(self, text: str) -> None:
        assert self._sasl is not None
        self._sasl_reply(self._sasl.step(text.strip()))

    def _sasl_reply(self, reply: Reply) -> None:
        self._reply(reply)
        if reply.code == 334:
            self._mode = _Mode.SASL
            return
        self._sasl = None
        self._mode = _Mode.COMMAND
        if reply.code == 235:
            self.authenticated = True

    def _abort_sasl(self) -> None:
        # A line that is not even text ends an AUTH exchange (it gets a 500).
        self._sasl = None
        if self._mode is _Mode.SASL:
            self._mode = _Mode.COMMAND

    def do_starttls(self, arg: str) -> None:
        if arg.strip():
            self._reply(Reply(501, "5.5.4", "Syntax: STARTTLS"))
        elif self.tls:
            self._reply(R.R503_TLS_ACTIVE)
        elif not self.settings.tls_available:
            self._reply(R.R502_STARTTLS_UNAVAILABLE)
        else:
            self._reply(R.R220_STARTTLS)
            # RFC 3207 section 6 / CVE-2011-0411: anything the client pipelined
            # behind STARTTLS arrived in plaintext and must never be executed.
            self.discarded_after_starttls += len(self._in)
            self._in.clear()
            self._mode = _Mode.TLS
            self._events.append(StartTLS())


# TABLE with the handler names resolved to functions, once, at import.
_DISPATCH: dict[tuple[State, str], Callable[[SMTPConnection, str], None]] = {
    key: getattr(SMTPConnection, name) for key, name in TABLE.items()
}
