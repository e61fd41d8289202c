"""Replies as values, and the catalogue every reply of the server comes from.

A ``Reply`` is serialised once, when it is made: the catalogue's constants are
built at import time, so answering a command costs a dictionary lookup, not a
string format. Enhanced status codes (RFC 2034, RFC 3463) go on every reply
where the RFCs define one; the greeting, the EHLO lines, 354 and 334 carry none
(RFC 2034 section 3 excludes the greeting and EHLO; 354 and 334 are
intermediate replies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from blackhole.protocol.limits import MAX_REPLY_LINE
from blackhole.protocol.memo import remember


class Reply:
    """An SMTP reply: a code, an optional enhanced status code, one or more lines."""

    __slots__ = ("code", "enhanced", "lines", "wire")

    def __init__(
        self,
        code: int,
        enhanced: str | None,
        text: str | Sequence[str],
        *,
        _wire: bytes | None = None,
    ) -> None:
        if not 200 <= code <= 599:
            raise ValueError(f"reply code out of range: {code}")
        self.code = code
        self.enhanced = enhanced
        self.lines: tuple[str, ...] = (text,) if isinstance(text, str) else tuple(text)
        if not self.lines:
            raise ValueError("a reply needs at least one line")
        # ``_wire``: queued() alone, which builds the bytes it knows are right.
        self.wire = serialise(code, enhanced, self.lines) if _wire is None else _wire

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reply) and self.wire == other.wire

    def __hash__(self) -> int:
        return hash(self.wire)

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.enhanced!r}, {self.text!r})"

    def __reduce__(self) -> tuple[type[Reply], tuple[int, str | None, tuple[str, ...]]]:
        # Pickled as its arguments (rules carry replies to other processes):
        # compiled by mypyc, a Reply has no state that pickle could restore.
        return Reply, (self.code, self.enhanced, self.lines)


def serialise(code: int, enhanced: str | None, lines: Sequence[str]) -> bytes:
    """RFC 5321 section 4.2.1: ``code-text`` on every line but the last, ``code text``.

    With an enhanced code, it starts the text of every line (RFC 2034 section 4).
    Text never contains CR or LF: a line break inside would let the text forge
    a reply, so it is refused here, in the one place replies are made.
    """
    if len(lines) == 1:
        line = lines[0]
        if "\r" in line or "\n" in line:
            raise ValueError("reply text must not contain CR or LF")
        # One string built, not a prefix first (a queued reply is made per message).
        if enhanced:
            return f"{code} {enhanced} {line}\r\n".encode()
        return f"{code} {line}\r\n".encode()
    prefix = f"{enhanced} " if enhanced else ""
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if "\r" in line or "\n" in line:
            raise ValueError("reply text must not contain CR or LF")
        out.append(f"{code}{' ' if i == last else '-'}{prefix}{line}\r\n")
    return "".join(out).encode("utf-8")


# The catalogue's names are Final: the compiled build reads a Final name of
# another module directly, where any other costs a lookup in the module's
# dictionary at every reply.
# --- 2xx ---------------------------------------------------------------------
R221_BYE: Final = Reply(221, "2.0.0", "Goodbye")
R235_AUTH_OK: Final = Reply(235, "2.7.0", "Authentication successful")
R250_OK: Final = Reply(250, "2.0.0", "OK")
R250_MAIL_OK: Final = Reply(250, "2.1.0", "OK")
R250_RCPT_OK: Final = Reply(250, "2.1.5", "OK")
R250_ETRN: Final = Reply(250, "2.0.0", "Queueing started")
R252_VRFY: Final = Reply(252, "2.0.0", "Will attempt delivery")
R220_STARTTLS: Final = Reply(220, "2.0.0", "Ready to start TLS")
# --- 3xx ---------------------------------------------------------------------
R354_DATA: Final = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
R334_EMPTY: Final = Reply(334, None, "")
R334_USERNAME: Final = Reply(334, None, "VXNlcm5hbWU6")  # base64("Username:")
R334_PASSWORD: Final = Reply(334, None, "UGFzc3dvcmQ6")  # base64("Password:")
# --- 4xx ---------------------------------------------------------------------
R421_TIMEOUT: Final = Reply(421, "4.4.2", "Idle timeout, closing connection")
R421_SHUTDOWN: Final = Reply(421, "4.3.2", "Service shutting down, closing connection")
R421_TOO_MANY_UNKNOWN: Final = Reply(
    421, "4.7.0", "Too many unrecognised commands, closing connection"
)
R421_TOO_MANY_JUNK: Final = Reply(421, "4.7.0", "Too many junk commands, closing connection")
# RULES.md: what a rule's ``close`` says when it gives no reply of its own.
R421_CLOSING: Final = Reply(421, "4.3.2", "Service not available, closing channel")
R451_INTERNAL: Final = Reply(451, "4.3.0", "Internal error, try again later")
R452_TOO_MANY_RCPT: Final = Reply(452, "4.5.3", "Too many recipients")
# --- 5xx ---------------------------------------------------------------------
R500_LINE_TOO_LONG: Final = Reply(500, "5.5.2", "Line too long")
# RFC 4954 section 6: a SASL response longer than the server takes.
R500_AUTH_LINE_TOO_LONG: Final = Reply(500, "5.5.6", "Authentication exchange line is too long")
R500_BAD_ENCODING: Final = Reply(500, "5.5.2", "Syntax error, command is not valid UTF-8")
R500_BAD_BYTES: Final = Reply(500, "5.5.2", "Syntax error, command contains forbidden bytes")
R500_USE_LHLO: Final = Reply(500, "5.5.1", "This is an LMTP server: use LHLO (RFC 2033)")
R501_EHLO_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: EHLO hostname")
R501_LHLO_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: LHLO hostname")
R501_HELO_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: HELO hostname")
R501_MAIL_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
R501_RCPT_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
R501_SENDER_SYNTAX: Final = Reply(501, "5.1.7", "Bad sender address syntax")
R501_RCPT_ADDR_SYNTAX: Final = Reply(501, "5.1.3", "Bad recipient address syntax")
R501_VRFY_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: VRFY <address>")
R501_NO_ARGS: Final = Reply(501, "5.5.4", "Syntax error, no parameters allowed")
R501_AUTH_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
R501_AUTH_CANCELLED: Final = Reply(501, "5.0.0", "Authentication cancelled")
R501_AUTH_BASE64: Final = Reply(501, "5.5.2", "Cannot decode base64 response")
R501_BDAT_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
R501_STARTTLS_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: STARTTLS")
R502_UNKNOWN: Final = Reply(502, "5.5.2", "Command not recognised")
R502_STARTTLS_UNAVAILABLE: Final = Reply(502, "5.5.1", "STARTTLS not available")
R503_BAD_SEQUENCE: Final = Reply(503, "5.5.1", "Bad sequence of commands")
R503_NEED_EHLO: Final = Reply(503, "5.5.1", "Bad sequence of commands, send EHLO or HELO first")
R503_NEED_MAIL: Final = Reply(503, "5.5.1", "Bad sequence of commands, send MAIL first")
R503_NEED_RCPT: Final = Reply(503, "5.5.1", "Bad sequence of commands, send RCPT first")
R503_ALREADY_AUTH: Final = Reply(503, "5.5.1", "Already authenticated")
R503_TLS_ACTIVE: Final = Reply(503, "5.5.1", "TLS already active")
R503_BINARYMIME_DATA: Final = Reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT, not DATA")
R503_BDAT_THEN_DATA: Final = Reply(503, "5.5.1", "DATA is not allowed after BDAT in a transaction")
R503_BDAT_FAILED: Final = Reply(503, "5.5.1", "Bad sequence of commands, an earlier chunk failed")
R504_AUTH_MECHANISM: Final = Reply(504, "5.5.4", "Unrecognised authentication mechanism")
# A valid command with an argument it does not know: RFC 3463 X.5.4, not X.5.1.
R504_HELP_UNKNOWN: Final = Reply(504, "5.5.4", "No help for that topic")
R530_AUTH_REQUIRED: Final = Reply(530, "5.7.0", "Authentication required")
R535_AUTH_FAILED: Final = Reply(535, "5.7.8", "Authentication credentials invalid")
R538_ENCRYPTION_REQUIRED: Final = Reply(538, "5.7.11", "Encryption required for authentication")
R550_EXPN_DENIED: Final = Reply(550, "5.7.1", "Not authorised")
R552_TOO_BIG: Final = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
R553_NEED_SMTPUTF8: Final = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
# SPEC.md: unknown *or malformed* MAIL/RCPT parameters get 555 5.5.4 (RFC 5321
# 4.2.3 would allow 501 for a malformed one; clients take both as permanent).
R555_UNKNOWN_PARAM: Final = Reply(555, "5.5.4", "Unsupported parameter")
R555_PARAM_SYNTAX: Final = Reply(555, "5.5.4", "Syntax error in parameters")
R555_DUPLICATE_PARAM: Final = Reply(555, "5.5.4", "Duplicate parameter")

# The classic bounce answers, with the enhanced code (RFC 3463) that fits each.
BOUNCES: tuple[Reply, ...] = (
    Reply(450, "4.2.0", "Requested mail action not taken: mailbox unavailable"),
    Reply(451, "4.3.0", "Requested action aborted: local error in processing"),
    Reply(452, "4.3.1", "Requested action not taken: insufficient system storage"),
    Reply(458, "4.3.0", "Unable to queue message"),
    Reply(521, "5.3.2", "Machine does not accept mail"),
    Reply(550, "5.1.1", "Requested action not taken: mailbox unavailable"),
    Reply(551, "5.1.6", "User not local"),
    Reply(552, "5.2.2", "Requested mail action aborted: exceeded storage allocation"),
    Reply(553, "5.1.3", "Requested action not taken: mailbox name not allowed"),
    Reply(571, "5.7.1", "Blocked"),
)


def echo(before: str, client: str, after: str = "", enhanced: str | None = None) -> str:
    """Reply text that quotes the client (a HELO name, a VRFY argument).

    RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; a command line
    may be as long, so what the client said is cut (at a whole UTF-8
    character) to leave room for the code, the enhanced code, ``before``,
    ``after`` and CRLF.
    """
    room = MAX_REPLY_LINE - len("250 \r\n") - len((before + after).encode())
    if enhanced:
        room -= len(enhanced) + 1
    data = client.encode()
    if len(data) > room:
        client = data[: max(room, 0)].decode("utf-8", "ignore")
    return before + client + after


_QUEUED: Final = "OK: queued as "
_QUEUED_WIRE: Final = b"250 2.0.0 " + _QUEUED.encode()


def queued(queue_id: str) -> Reply:
    """The accepted message's 250, with its queue id: made for every message."""
    text = _QUEUED + queue_id
    if not queue_id.isalnum():
        return Reply(250, "2.0.0", text)  # serialise() checks it
    # Concatenated, not formatted by serialise(): this reply is the only one
    # made per message, and that cost 1,600 instructions of it. An id of
    # letters and digits holds no CR or LF for serialise() to refuse.
    return Reply(250, "2.0.0", text, _wire=_QUEUED_WIRE + queue_id.encode() + b"\r\n")


# Memoised (protocol.memo): the greeting per mail name, made once, not per
# connection; HELO's answer like EHLO's (states.ehlo_reply), as a client says
# the same name at every connection.
_GREETINGS: Final[dict[tuple[str, bool], Reply]] = {}
_HELLOS: Final[dict[tuple[str, str], bytes]] = {}


def greeting(mailname: str, lmtp: bool = False) -> Reply:
    key = (mailname, lmtp)
    known = _GREETINGS.get(key)
    if known is None:
        made = Reply(220, None, f"{mailname} {'LMTP' if lmtp else 'ESMTP'}")
        known = remember(_GREETINGS, key, made, 64)
    return known


def hello(mailname: str, client: str) -> bytes:
    """HELO's 250 (RFC 5321 4.1.1.1): the server's name, then the client's."""
    key = (mailname, client)
    known = _HELLOS.get(key)
    if known is None:
        made = Reply(250, None, echo(f"{mailname} Hello ", client)).wire
        known = remember(_HELLOS, key, made, 256)
    return known


def bdat_chunk(size: int) -> Reply:
    return Reply(250, "2.0.0", f"{size} octets received")


def vrfy_pass(address: str) -> Reply:
    return Reply(250, "2.0.0", echo("<", address, "> OK", "2.0.0"))


def vrfy_fail(address: str) -> Reply:
    return Reply(550, "5.7.1", echo("<", address, "> unknown", "5.7.1"))


def challenge(b64: str) -> Reply:
    return Reply(334, None, b64)
