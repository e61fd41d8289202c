"""Command sequencing as one table: ``(state, verb) -> handler``.

The rules, in the order RFC 5321 section 4.1.4 and its extensions give them:

- CONNECTED: after the greeting. EHLO/HELO are needed before MAIL, AUTH,
  STARTTLS and ETRN (RFC 5321 4.1.4; RFC 3207 4; RFC 4954 4; RFC 1985 5).
- GREETED: after EHLO/HELO, no transaction. MAIL starts one; AUTH and
  STARTTLS are only allowed here, never inside a transaction (RFC 4954 4,
  RFC 3207 4: 503 otherwise). After STARTTLS the session goes back to
  CONNECTED (RFC 3207 4.2: forget what the client said before TLS).
- MAIL: after MAIL. RCPT is next; a second MAIL is 503 (RFC 5321 4.1.1.2).
- RCPT: at least one recipient. DATA or BDAT may follow; more RCPT too.
- BDAT: at least one BDAT chunk without LAST. Only BDAT (and RSET, NOOP...)
  may follow; DATA is 503 (RFC 3030 section 3, mixing is not allowed).
- EHLO/HELO and RSET from any state clear the transaction (RFC 5321 4.1.4).
- NOOP, HELP, VRFY, EXPN, QUIT and RSET are allowed in every state.
- BDAT is listed in every state on purpose: its chunk must be read and thrown
  away even when the command is refused (RFC 3030 section 2), so the handler
  itself answers 503 when the sequence is wrong.

Anything not in the table gets ``503 5.5.1`` from ``bad_sequence``, the one
place that says no. Verbs not in ``HELP`` at all are unknown commands (502).
"""

from __future__ import annotations

import enum
from functools import lru_cache

from blackhole.protocol import replies as R
from blackhole.protocol.replies import Reply


class State(enum.IntEnum):
    # IntEnum, not Enum: every command looks up (state, verb) in TABLE, and
    # Enum.__hash__ is a Python function while int's is C.
    CONNECTED = 0
    GREETED = 1
    MAIL = 2
    RCPT = 3
    BDAT = 4


ALL = frozenset(State)
_S = State

# verb -> (handler method name, states it is allowed in, HELP syntax)
COMMANDS: dict[str, tuple[str, frozenset[State], str]] = {
    "EHLO": ("do_ehlo", ALL, "EHLO hostname"),
    "HELO": ("do_helo", ALL, "HELO hostname"),
    "MAIL": ("do_mail", frozenset({_S.GREETED}), "MAIL FROM:<address> [parameters]"),
    "RCPT": ("do_rcpt", frozenset({_S.MAIL, _S.RCPT}), "RCPT TO:<address> [parameters]"),
    "DATA": ("do_data", frozenset({_S.RCPT}), "DATA"),
    "BDAT": ("do_bdat", ALL, "BDAT chunk-size [LAST]"),
    "RSET": ("do_rset", ALL, "RSET"),
    "NOOP": ("do_noop", ALL, "NOOP"),
    "QUIT": ("do_quit", ALL, "QUIT"),
    "HELP": ("do_help", ALL, "HELP [command]"),
    "VRFY": ("do_vrfy", ALL, "VRFY <address>"),
    "EXPN": ("do_expn", ALL, "EXPN <list1 | list2 | list3 | all>"),
    "ETRN": ("do_etrn", frozenset({_S.GREETED}), "ETRN node"),
    "AUTH": (
        "do_auth",
        frozenset({_S.GREETED}),
        "AUTH PLAIN | LOGIN | CRAM-MD5 [initial-response]",
    ),
    "STARTTLS": ("do_starttls", frozenset({_S.GREETED}), "STARTTLS"),
}

TABLE: dict[tuple[State, str], str] = {
    (state, verb): handler for verb, (handler, states, _) in COMMANDS.items() for state in states
}

# EHLO keywords in the order they are offered. ``None``: always; "tls": only
# until TLS is on; "auth": only where AUTH is offered (see core).
EXTENSIONS: tuple[tuple[str, str | None], ...] = (
    ("PIPELINING", None),  # RFC 2920
    ("SIZE {max_size}", None),  # RFC 1870
    ("8BITMIME", None),  # RFC 6152
    ("SMTPUTF8", None),  # RFC 6531
    ("ENHANCEDSTATUSCODES", None),  # RFC 2034
    ("DSN", None),  # RFC 3461
    ("CHUNKING", None),  # RFC 3030
    ("BINARYMIME", None),  # RFC 3030
    ("STARTTLS", "tls"),  # RFC 3207
    ("AUTH PLAIN LOGIN CRAM-MD5", "auth"),  # RFC 4954
    ("HELP", None),
    ("VRFY", None),
    ("ETRN", None),  # RFC 1985
    ("EXPN", None),
)

HELP_SUMMARY = "Supported commands: " + " ".join(sorted(COMMANDS))


# Memoised: every connection of a load test sends the same EHLO; the reply is
# immutable and depends only on these arguments (bounded, like the MAIL cache).
@lru_cache(maxsize=256)
def ehlo_reply(greeting: str, max_size: int, *, tls: bool, auth: bool) -> Reply:
    """The EHLO answer (RFC 5321 4.1.1.1): the greeting line, then the keywords offered."""
    offer = {None: True, "tls": tls, "auth": auth}
    lines = [greeting] + [k.format(max_size=max_size) for k, need in EXTENSIONS if offer[need]]
    return Reply(250, None, lines)


def bad_sequence(state: State, verb: str) -> Reply:
    """The 503 for a verb that is known but not allowed in ``state``."""
    if state is State.CONNECTED:
        return R.R503_NEED_EHLO
    if state is State.GREETED and verb in ("RCPT", "DATA", "BDAT"):
        return R.R503_NEED_MAIL
    if state is State.MAIL and verb in ("DATA", "BDAT"):
        return R.R503_NEED_RCPT
    if state is State.BDAT and verb == "DATA":
        return R.R503_BDAT_THEN_DATA
    return R.R503_BAD_SEQUENCE
