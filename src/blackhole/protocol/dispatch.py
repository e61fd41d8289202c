"""One command line: decoded, checked, and dispatched to its handler.

``Dispatch._line`` is the per-command hot path: it decodes a line cut by the
core, looks ``(state, verb)`` up once in the sequencing table (``states.py``,
with its method names resolved here, once, at import) and runs the row's
check and handler, stopping at a watched rules stage (``staging.py``) on the
way. Lines that are no command are answered and counted here: an unknown
verb toward SPEC's limit of ten unknown commands, a line answered 500 (too
long, not UTF-8, control bytes) as a junk command (the session survives it,
as it survives a NOOP, up to ``junk_command_limit`` without a message).
"""

from __future__ import annotations

from typing import Final

from blackhole.protocol import hooks as H
from blackhole.protocol import modes as M
from blackhole.protocol import replies as R
from blackhole.protocol import states as S
from blackhole.protocol.limits import MAX_COMMAND_LINE, MAX_UNKNOWN_COMMANDS
from blackhole.protocol.metering import UNPARSED
from blackhole.protocol.replies import Reply
from blackhole.protocol.staging import Entry, Staging
from blackhole.protocol.states import LMTP_TABLE, TABLE, State
from blackhole.protocol.states import Entry as Row

# Control characters other than HT are not allowed in a command line
# (RFC 5321 section 4.1.1: commands are printable US-ASCII, or UTF-8 with
# SMTPUTF8); NUL in particular has broken C servers and must not pass. In
# UTF-8 each of them is one byte that no other character's encoding holds
# (RFC 3629 section 3), so the line's bytes are checked: this table turns
# each of them into a space and leaves every other byte as it is, and a line
# is clean if translating it changes nothing. One C loop over the bytes, in
# the compiled build without a method call; str.isprintable() was a method
# call and a function call per character.
_CONTROL_TO_SPACE: Final = bytes(
    32 if (byte < 32 and byte != 9) or byte == 127 else byte for byte in range(256)
)


# Every verb of the tables, as itself: a verb sent in upper case, as clients
# send them, is found here rather than copied by upper() (RFC 5321 section
# 2.4: verbs are case-insensitive, so any other case is upper()ed).
_KNOWN_VERBS: Final = {verb: verb for _state, verb in (*TABLE, *LMTP_TABLE)}


class Dispatch(Staging):
    """The command-line half of ``SMTPConnection``."""

    _unknown = 0  # unknown commands, answered 502 (toward MAX_UNKNOWN_COMMANDS)
    _junk = 0  # junk commands since the last message (junk_command_limit)

    def _line(self, raw: bytes, staged: bool = False) -> None:
        """One command line (or SASL response); ``staged``: past the command stage."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._unparsed(raw, R.R500_BAD_ENCODING)
            return
        if raw.translate(_CONTROL_TO_SPACE) != raw:
            self._unparsed(raw, R.R500_BAD_BYTES)
            return
        if self._mode is M.SASL:
            self._sasl_step(text)
            return
        verb, _, arg = text.partition(" ")
        known = _KNOWN_VERBS.get(verb)
        verb = known if known is not None else verb.upper()
        if not staged:
            # _prompted_by, inline: hot path. Two appends, not += of a
            # tuple: a compiled append is a C call, the tuple is an object.
            marks = self._marks
            marks.append(len(self._out))
            marks.append(verb)
        if len(raw) + 2 > MAX_COMMAND_LINE and verb != "AUTH":
            if self.settings.forbids(verb):  # a long URL: still no reply
                self._cut("drop", "forbidden command")
            else:
                self._unusable(R.R500_LINE_TOO_LONG)
            return
        if self._bdat_failed and verb != "BDAT":
            # RFC 3030 section 2: a refused chunk failed the transaction, and
            # the client sends no more chunks (those it had pipelined are
            # refused in skip_bdat). Any other command comes after it: a MAIL
            # starts the next message without an RSET first.
            self._end_transaction()
        if self.watch & H.COMMAND_BIT and not staged:
            self._command_stage(raw, verb, text)
            return
        # The dispatch, inline: this is the per-command hot path.
        # By state, then by verb: no (state, verb) tuple made and hashed.
        entry = self._dispatch[self.state].get(verb)
        if entry is None:
            self._unknown_command(verb)
            return
        check, commit, next_state, _stage, bit, junk, refusal, refuser = entry
        if refusal is not None:
            if refuser is None:
                self._out.append(refusal.wire)
            else:
                refuser(self, arg, refusal)
            return
        if junk and self._junk_over():
            return
        facts = arg if check is None else check(self, arg)
        # type() is a pointer comparison in the compiled build (where
        # __class__ is an attribute lookup) and a specialised call in CPython.
        if type(facts) is Reply:
            if refuser is None:
                self._out.append(facts.wire)
            else:
                refuser(self, arg, facts)  # BDAT: its chunk is still read
            return
        if self.watch & bit:
            self._command_reached(verb, entry, facts)
            return
        self.state = next_state
        commit(self, facts)

    def _unparsed(self, raw: bytes, reply: Reply) -> None:
        """A line that is no command (not UTF-8, control bytes): 500; but one
        that starts like an HTTP request or header is cut without a reply, as
        a well-formed one is.

        Inside an AUTH exchange the line is a SASL response, not a command:
        RFC 4954 section 4 answers one that cannot be decoded 501 5.5.2, and
        the reply is AUTH's, its result counted as a failure.
        """
        if self._mode is M.SASL:
            self._finish_auth(R.R501_AUTH_BASE64, ok=False)
            return
        self._prompted_by(UNPARSED)
        verb = raw.partition(b" ")[0].decode("latin-1").upper()
        if self.settings.forbids(verb):
            self._cut("drop", "forbidden command")
            return
        self._unusable(reply)

    def _junk_over(self) -> bool:
        """Count a junk command; True if it was one too many (the session is closed).

        Postfix's smtpd_junk_command_limit (default 100): NOOP, VRFY, ETRN
        and RSET are "junk"; past the limit each one raises the error count
        (which ends the session at smtpd_hard_error_limit), and the count is
        reset after mail is delivered. A sink has no error count to climb,
        so one over the limit ends the session at once; EXPN and HELP count
        too, being as free to repeat, and so do lines answered 500.
        Otherwise a client could hold a session (and a slot) for ever.
        """
        self._junk += 1
        limit = self.settings.junk_command_limit
        if limit and self._junk > limit:
            self._close(R.R421_TOO_MANY_JUNK, "too many junk commands")
            return True
        return False

    def _unusable(self, reply: Reply) -> None:
        """A line answered 500 (too long, not UTF-8, control bytes): SPEC.md has
        the session survive it; it counts as a junk command."""
        if not self._junk_over():
            self._out.append(reply.wire)

    def _unknown_command(self, verb: str) -> None:
        if self.settings.forbids(verb):
            # Postfix's smtpd_forbidden_commands ("CONNECT GET POST", and any
            # line that looks like a message header): an HTTP request or a
            # proxy CONNECT is no mail client. Postfix answers 221 and hangs
            # up; nothing at all is sent here, so a browser tricked into
            # posting to this port gets no SMTP text it could act on.
            self._cut("drop", "forbidden command")
            return
        self._error(R.R503_BAD_SEQUENCE if self.state is S.REFUSED else R.R502_UNKNOWN)

    def _error(self, reply: Reply) -> None:
        """An unknown command (502, or 503 once refused): the tenth closes the
        session instead (SPEC.md; the classic server's limit)."""
        self._unknown += 1
        if self._unknown >= MAX_UNKNOWN_COMMANDS:
            self._close(R.R421_TOO_MANY_UNKNOWN, "too many unknown commands")
        else:
            self._out.append(reply.wire)


def _resolve(key: tuple[State, str], table: dict[tuple[State, str], Row] = TABLE) -> Entry:
    entry = table[key]
    cls = Dispatch
    return (
        getattr(cls, entry.check, None),
        getattr(cls, entry.commit),
        entry.next,
        entry.stage,
        H.BIT[entry.stage] if entry.stage is not None else 0,
        entry.junk,
        entry.refusal,
        getattr(cls, entry.refuse) if entry.refuse else None,
    )


def _by_state(table: dict[tuple[State, str], Row]) -> tuple[dict[str, Entry], ...]:
    """``table`` with the method names resolved, as one dict of verbs per state."""
    return tuple(
        {verb: _resolve((at, verb), table) for at, verb in table if at is state} for state in State
    )


# TABLE (LMTP_TABLE for LMTP sessions) resolved once, at import.
DISPATCH: Final = _by_state(TABLE)
LMTP_DISPATCH: Final = _by_state(LMTP_TABLE)
