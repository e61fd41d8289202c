"""What each SMTP command does, and the session facts it reads and keeps.

Every command has two halves, named in ``states.COMMANDS``: ``check_<verb>``
reads the argument and returns either the facts the command acts on or the
``Reply`` that refuses it (no state is touched), and ``do_<verb>`` acts on
those facts and queues the answer. Between the two, the core may stop at the
command's rules stage and let a verdict decide which half runs; the next
state comes from the table, never from here. Handlers queue their replies
with ``self._out.append(reply.wire)``: this is the per-command hot path.
DATA and BDAT, which go on to read content, are ``intake.py``'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from blackhole.protocol import hooks as H
from blackhole.protocol import info, sasl
from blackhole.protocol import modes as M
from blackhole.protocol import replies as R
from blackhole.protocol import states as S
from blackhole.protocol.events import Close, Cut, Event, StageReached, StartTLS
from blackhole.protocol.grammar import MailParams, parse_mail, parse_rcpt
from blackhole.protocol.modes import Mode
from blackhole.protocol.reader import ChunkReader, DataReader, HeaderScanner
from blackhole.protocol.replies import Reply
from blackhole.protocol.settings import SessionSettings
from blackhole.protocol.states import State, ehlo_reply

_SUCCESS: Final = (200, 300)
_GO_AHEAD: Final = {"DATA": (300, 400), "STARTTLS": (220, 221)}  # see Commands._positive


class Commands:
    """The session's facts and the command handlers; ``SMTPConnection`` drives them.

    Immutable starting values are class attributes, which an instance shadows
    when it first assigns them: a load test opens thousands of sessions a
    second, and most of these never change in most of them.
    """

    settings: SessionSettings
    state: State
    tls: bool
    _mode: Mode
    _in: bytearray
    _out: list[bytes]
    _marks: list[int | str]  # which verb each queued reply answers (protocol.metering)
    events: deque[Event]  # for the adapter, oldest first (next_event pops one)
    _junk: int
    watch: int  # the stages watched, as hooks.bits() (SMTPConnection's)
    discarded_after_starttls: int

    # Session facts, for rules and the event log.
    authenticated = False
    auth_user: str | None = None  # the AUTH user (never a password)
    helo: str | None = None  # the HELO/EHLO argument
    message_number = 0  # MAIL commands accepted in this session
    # The transaction (reset by _reset_transaction).
    sender: str | None = None  # "" for the null reverse-path
    declared_size: int | None = None  # MAIL's SIZE= (RFC 1870), for the rules' size
    recipients: list[str]
    # The MAIL FROM address and recipients of the transaction last begun,
    # refused or not, kept after it ends (an RSET, a refused MAIL): the event
    # log names them for a transaction counted without data, whose count
    # comes once its last reply is sent (protocol.metering).
    last_sender: str | None = None
    last_recipients: Sequence[str] = ()
    smtputf8 = False
    binarymime = False
    _reader: DataReader | None = None
    _chunks: ChunkReader | None = None
    _final: Reply | None = None  # a content rule's answer to the message
    # The content stage in this message: the next threshold to report, the
    # byte count last reported (0: none yet), and whether its end was.
    _content_next = 0
    _content_at = 0
    _content_ended = False
    _sasl: sasl.Exchange | None = None
    _chunk_reply: Reply | None = None  # a BDAT chunk's answer chosen in advance
    _bdat_failed = False  # a chunk of this transaction was refused (RFC 3030 2)
    _override: Reply | None = None  # a rule's reply for the command being done

    # A watched stage waiting for resolve(): the mode to go back to, and what
    # to run for a positive verdict (None: as usual) or a refusal.
    _resume = M.COMMAND
    # The codes of a rule's reply that let the paused stage go on (low, high):
    # 2xx, but 3xx for the DATA command, whose go-ahead is 354 (RFC 5321 4.2.1,
    # 4.3.2; BDAT's is 250, RFC 3030 2), and only 220 for STARTTLS (RFC 3207
    # 4: a client starts TLS on nothing else). Any other reply takes the
    # failure path, so that client and server stay in step.
    _positive = _SUCCESS
    _apply: Callable[[Reply | None], None] | None = None
    _refuse: Callable[[Reply], None] | None = None

    def _pause(
        self,
        event: StageReached,
        resume: Mode,
        apply: Callable[[Reply | None], None],
        refuse: Callable[[Reply], None],
    ) -> None:
        """Report a watched stage and hold input until the adapter resolves it."""
        self._resume, self._apply, self._refuse = resume, apply, refuse
        self._positive = _GO_AHEAD.get(event.verb, _SUCCESS)
        self._mode = M.STAGE
        self.events.append(event)

    # --- helpers ----------------------------------------------------------------

    def _close(self, reply: Reply | None, reason: str) -> None:
        if reply is not None:
            self._out.append(reply.wire)
        self._mode = M.CLOSED
        self._in.clear()
        self.events.append(Close(reason))

    def _cut(self, how: str, reason: str) -> None:
        """End without a reply: drop, reset, or hang (RULES.md actions)."""
        self._mode = M.HUNG if how == "hang" else M.CLOSED
        self._in.clear()
        self.events.append(Cut(how, reason))

    def _prompted_by(self, verb: str) -> None:
        """The replies queued from now on answer ``verb`` (protocol.metering)."""
        marks = self._marks
        marks.append(len(self._out))  # two appends: no tuple made
        marks.append(verb)

    def _reset_transaction(self) -> None:
        self.sender = self.declared_size = None
        self.recipients = []
        self.smtputf8 = False
        self.binarymime = False
        self._reader = None
        self._chunks = None
        self._final = None
        self._content_next = self._content_at = 0
        self._content_ended = False
        self._bdat_failed = False

    def _end_transaction(self) -> None:
        """A message's final answer was given (or it was refused): no transaction."""
        self._reset_transaction()
        self.state = S.GREETED

    @property
    def offers_tls(self) -> bool:
        # RFC 3207 4.2: STARTTLS is not offered once TLS is on.
        return self.settings.tls_available and not self.tls

    @property
    def offers_auth(self) -> bool:
        return self.tls or not self.settings.auth_tls_only

    def _headers(self) -> HeaderScanner | None:
        # The one place that decides whether headers are read at all: for the
        # X-Blackhole-* switches (dynamic_switch) or for rules and recorded
        # messages (collect_headers). The policy trusts what the core reports.
        s = self.settings
        return HeaderScanner() if s.dynamic_switch or s.collect_headers else None

    # --- EHLO, HELO, RSET, NOOP, QUIT, HELP, VRFY, EXPN, ETRN -------------------

    def check_ehlo(self, arg: str) -> str | Reply:
        name = arg.strip()
        return name if name else R.R501_EHLO_SYNTAX

    def do_ehlo(self, name: str) -> None:
        self._reset_transaction()
        self.helo = name
        s = self.settings
        reply = ehlo_reply(
            s.mailname,
            name,
            s.max_message_size,
            tls=self.offers_tls,
            auth=self.offers_auth,
        )
        self._out.append(reply.wire)

    def check_lhlo(self, arg: str) -> str | Reply:
        name = arg.strip()
        return name if name else R.R501_LHLO_SYNTAX

    # RFC 2033 4.1: LHLO is EHLO in syntax and answer.
    def do_lhlo(self, name: str) -> None:
        # A method, not an alias: mypyc would make `do_lhlo = do_ehlo` an
        # instance attribute, which the dispatch table cannot look up.
        self.do_ehlo(name)

    def check_helo(self, arg: str) -> str | Reply:
        name = arg.strip()
        return name if name else R.R501_HELO_SYNTAX

    def do_helo(self, name: str) -> None:
        self._reset_transaction()
        self.helo = name
        self._out.append(R.hello(self.settings.mailname, name))

    def check_rset(self, arg: str) -> str | Reply:
        # RFC 5321 4.1.1.5: rset = "RSET" CRLF, no argument; the transaction
        # is left as it was, as Postfix does.
        return R.R501_NO_ARGS if arg.strip() else arg

    def do_rset(self, arg: str) -> None:
        self._reset_transaction()
        self._out.append(R.R250_OK.wire)

    def do_noop(self, arg: str) -> None:
        self._out.append(R.R250_OK.wire)

    def do_quit(self, arg: str) -> None:
        self._close(R.R221_BYE, "quit")

    def do_help(self, arg: str) -> None:
        reply = info.help_reply(
            arg, tls=self.offers_tls, auth=self.offers_auth, lmtp=self.settings.lmtp
        )
        self._out.append(reply.wire)

    def check_vrfy(self, arg: str) -> str:
        return info.strip_smtputf8(arg)

    def do_vrfy(self, arg: str) -> None:
        self._out.append(info.vrfy_reply(arg).wire)

    def check_expn(self, arg: str) -> str:
        return info.strip_smtputf8(arg)

    def do_expn(self, arg: str) -> None:
        self._out.append(info.expn_reply(arg, self.settings.mailname).wire)

    def do_etrn(self, arg: str) -> None:
        self._out.append(info.etrn_reply(arg).wire)

    # --- the transaction ----------------------------------------------------------

    def check_mail(self, arg: str) -> MailParams | Reply:
        # A new transaction is tried: the last one's facts are no longer it.
        self.last_sender, self.last_recipients = None, ()
        if arg[:5].upper() != "FROM:":
            return R.R501_MAIL_SYNTAX
        if self.settings.auth_required and not self.authenticated:
            return R.R530_AUTH_REQUIRED
        params = parse_mail(arg[5:], self.settings.max_message_size)
        if isinstance(params, MailParams):  # the address, even if a rule refuses it
            self.last_sender = params.address
        return params

    def do_mail(self, params: MailParams) -> None:
        self._reset_transaction()
        self.message_number += 1
        self.sender = params.address
        self.declared_size = params.size
        self.last_recipients = self.recipients  # grows with each RCPT accepted
        self.smtputf8 = params.smtputf8
        self.binarymime = params.binarymime
        self._out.append(R.R250_MAIL_OK.wire)

    def check_rcpt(self, arg: str) -> str | Reply:
        if arg[:3].upper() != "TO:":
            return R.R501_RCPT_SYNTAX
        if len(self.recipients) >= self.settings.max_recipients:
            return R.R452_TOO_MANY_RCPT  # RFC 5321 4.5.3.1.10
        return parse_rcpt(arg[3:], self.smtputf8)

    def do_rcpt(self, address: str) -> None:
        self.recipients.append(address)
        self._out.append(R.R250_RCPT_OK.wire)

    # --- AUTH and STARTTLS -----------------------------------------------------------

    def check_auth(self, arg: str) -> str | Reply:
        if self.authenticated:
            return R.R503_ALREADY_AUTH  # RFC 4954 section 4
        if self.settings.auth_tls_only and not self.tls:
            return R.R538_ENCRYPTION_REQUIRED
        return arg

    def do_auth(self, arg: str) -> None:
        self._auth_named(arg)
        self._sasl, reply = sasl.begin(arg, self.settings.challenge)
        self._sasl_reply(reply)

    def refuse_auth(self, arg: str, refusal: Reply) -> None:
        """AUTH refused before any exchange (out of sequence, authenticated
        already, TLS required, a rule): a failure of the mechanism it names."""
        self._auth_named(arg)
        self._out.append(refusal.wire)

    def _auth_named(self, arg: str) -> None:
        """AUTH's replies from here are counted under the mechanism ``arg``
        names, when the server has it; under "unknown" otherwise (the AUTH
        command's own mark, protocol.metering)."""
        mechanism = arg.strip().partition(" ")[0].upper()
        if mechanism in sasl.MECHANISMS:
            self._prompted_by(f"AUTH {mechanism}")

    def _sasl_step(self, text: str) -> None:
        assert self._sasl is not None
        self._sasl_reply(self._sasl.step(text.strip()))

    def _sasl_reply(self, reply: Reply) -> None:
        if reply.code == 334:
            self._out.append(reply.wire)
            self._mode = M.SASL
            return
        exchange = self._sasl
        if reply.code in (235, 535) and exchange is not None and self.watch & H.AUTH_BIT:
            # The auth stage is the exchange's verdict, once the user is known.
            def apply(rule: Reply | None) -> None:
                self._finish_auth(rule or reply, ok=rule is not None or reply.code == 235)

            def refuse(rule: Reply) -> None:
                self._finish_auth(rule, ok=False)

            event = StageReached(H.AUTH, "AUTH", exchange.user, message=self.message_number)
            self._pause(event, M.COMMAND, apply, refuse)
            return
        self._finish_auth(reply, ok=reply.code == 235)

    def _finish_auth(self, reply: Reply, *, ok: bool) -> None:
        self._out.append(reply.wire)
        exchange, self._sasl = self._sasl, None
        self._mode = M.COMMAND
        if ok:
            self.authenticated = True
            self.auth_user = exchange.user if exchange is not None else None

    def check_starttls(self, arg: str) -> str | Reply:
        if arg.strip():
            return R.R501_STARTTLS_SYNTAX
        if self.tls:
            return R.R503_TLS_ACTIVE
        if not self.settings.tls_available:
            return R.R502_STARTTLS_UNAVAILABLE
        return arg

    def do_starttls(self, arg: str) -> None:
        self._out.append(R.R220_STARTTLS.wire)
        # RFC 3207 section 6 / CVE-2011-0411: anything the client pipelined
        # behind STARTTLS arrived in plaintext and must never be executed.
        self.discarded_after_starttls += len(self._in)
        self._in.clear()
        self._mode = M.TLS
        self.events.append(StartTLS())
