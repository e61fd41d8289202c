"""Command sequencing as data: everything that affects the state machine is here.

One row per verb says which handler runs it, in which states it is allowed,
the state it leads to on success, the rules stage it reports, its EHLO keyword
(and when that is offered), its HELP text, and whether it is a junk command.
The core looks up ``(state, verb)`` once per command in ``DISPATCH`` and never
assigns a next state or says 503 anywhere else.

The rules, in the order RFC 5321 section 4.1.4 and its extensions give them:

- CONNECTED: after the greeting. EHLO/HELO are needed before MAIL, AUTH,
  STARTTLS and ETRN (RFC 5321 4.1.4; RFC 3207 4; RFC 4954 4; RFC 1985 5).
- GREETED: after EHLO/HELO, no transaction. MAIL starts one; AUTH and
  STARTTLS are only allowed here, never inside a transaction (RFC 4954 4,
  RFC 3207 4: 503 otherwise). STARTTLS leads back to CONNECTED (RFC 3207
  4.2: forget what the client said before TLS).
- MAIL: after MAIL. RCPT is next; a second MAIL is 503 (RFC 5321 4.1.1.2).
- RCPT: at least one recipient. DATA or BDAT may follow; more RCPT too.
- BDAT: at least one BDAT chunk without LAST. Only BDAT (and RSET, NOOP...)
  may follow; DATA is 503 (RFC 3030 section 3, mixing is not allowed).
- REFUSED: a ``connect`` rule gave a non-2xx greeting. RFC 5321 3.1 / 4.3.2
  (the 554 greeting): the client may only QUIT; everything else is 503.
- EHLO/HELO and RSET clear the transaction (RFC 5321 4.1.4); RSET is no
  greeting, so before one it leaves the session in CONNECTED.
- NOOP, HELP, VRFY, EXPN, QUIT and RSET are allowed in every state but REFUSED.
- The end of a message (its final reply) leads back to GREETED; that is not a
  command, so the core does it in its one ``_end_transaction``.

Anything not allowed gets its 503 from ``REFUSALS`` (the most helpful text
for that state and verb). A refused BDAT (by its state, its check or a rule)
still has its chunk read and thrown away (RFC 3030 section 2): its row names a
``refuse`` handler that does that.
Verbs in no row at all are unknown commands (502).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from blackhole.protocol import replies as R
from blackhole.protocol import sasl
from blackhole.protocol.hooks import Stage
from blackhole.protocol.memo import remember
from blackhole.protocol.replies import Reply


class State(enum.IntEnum):
    # IntEnum, not Enum: every command looks up (state, verb) in the core, and
    # Enum.__hash__ is a Python function while int's is C. Numbered from 0 in
    # order: dispatch.DISPATCH is a tuple indexed by the state.
    CONNECTED = 0
    GREETED = 1
    MAIL = 2
    RCPT = 3
    BDAT = 4
    REFUSED = 5


# The members again, as module constants (``states.GREETED``): on Python 3.11
# reading a member through its class goes through EnumType.__getattr__'s slow
# slot (see modes.py); the core's per-command paths read these.
CONNECTED: Final = State.CONNECTED
GREETED: Final = State.GREETED
MAIL: Final = State.MAIL
RCPT: Final = State.RCPT
BDAT: Final = State.BDAT
REFUSED: Final = State.REFUSED


class Offer(enum.IntEnum):
    """When a verb is offered (EHLO keyword, HELP summary)."""

    ALWAYS = 0
    STARTTLS = 1  # a certificate is configured and TLS is not on yet (RFC 3207 4.2)
    AUTH = 2  # TLS is on, or AUTH is allowed in clear


_S = State
SESSION = frozenset({_S.CONNECTED, _S.GREETED, _S.MAIL, _S.RCPT, _S.BDAT})
_GREETED = frozenset({_S.GREETED})


@dataclass(frozen=True, slots=True)
class Command:
    """One row of the table. ``next`` None: the state does not change."""

    handler: str  # do_<handler> (commands.py, intake.py), and check_<handler> if any
    allowed: frozenset[State]
    next: State | None
    stage: Stage | None
    help: str
    keywords: tuple[str, ...] = ()  # EHLO keywords, offered as ``offer`` says
    offer: Offer = Offer.ALWAYS
    junk: bool = False  # counts toward junk_command_limit (Postfix's list, plus EXPN/HELP)
    stage_in: frozenset[State] | None = None  # where the stage is reported, if not everywhere
    refuse: str | None = None  # run instead of sending the refusal (state, check or rule)
    stays_in: frozenset[State] = frozenset()  # states that ``next`` does not leave
    lmtp: bool | None = None  # only in LMTP (True) or only in SMTP (False) sessions


# The EHLO keyword of a command follows the command's row; these name no verb.
SERVICE_EXTENSIONS: tuple[str, ...] = (
    "PIPELINING",  # RFC 2920
    "SIZE {max_size}",  # RFC 1870
    "8BITMIME",  # RFC 6152
    "SMTPUTF8",  # RFC 6531
    "ENHANCEDSTATUSCODES",  # RFC 2034
    "DSN",  # RFC 3461
)

_MECHANISMS = tuple(sasl.MECHANISMS)

# In the order the EHLO keywords are offered.
COMMANDS: dict[str, Command] = {
    "EHLO": Command("ehlo", SESSION, _S.GREETED, Stage.HELO, "EHLO hostname", lmtp=False),
    "HELO": Command("helo", SESSION, _S.GREETED, Stage.HELO, "HELO hostname", lmtp=False),
    # RFC 2033 4.1: LMTP's greeting, EHLO by another name (same answer).
    "LHLO": Command("lhlo", SESSION, _S.GREETED, Stage.HELO, "LHLO hostname", lmtp=True),
    "MAIL": Command("mail", _GREETED, _S.MAIL, Stage.MAIL, "MAIL FROM:<address> [parameters]"),
    "RCPT": Command(
        "rcpt", frozenset({_S.MAIL, _S.RCPT}), _S.RCPT, Stage.RCPT, "RCPT TO:<address> [parameters]"
    ),
    "DATA": Command("data", frozenset({_S.RCPT}), None, Stage.DATA, "DATA"),
    "BDAT": Command(
        "bdat",
        frozenset({_S.RCPT, _S.BDAT}),
        _S.BDAT,
        Stage.DATA,
        "BDAT chunk-size [LAST]",
        ("CHUNKING", "BINARYMIME"),  # RFC 3030
        stage_in=frozenset({_S.RCPT}),  # RULES.md: the first BDAT of a message
        refuse="skip_bdat",
    ),
    "STARTTLS": Command(
        "starttls",
        _GREETED,
        _S.CONNECTED,
        Stage.STARTTLS,
        "STARTTLS",
        ("STARTTLS",),
        Offer.STARTTLS,
    ),
    "AUTH": Command(
        "auth",
        _GREETED,
        None,
        None,  # the auth stage is the end of the exchange, when the user is known
        f"AUTH {' | '.join(_MECHANISMS)} [initial-response]",
        (f"AUTH {' '.join(_MECHANISMS)}",),  # RFC 4954
        Offer.AUTH,
        refuse="refuse_auth",  # counted under the mechanism it names
    ),
    "HELP": Command("help", SESSION, None, None, "HELP [command]", ("HELP",), junk=True),
    "VRFY": Command("vrfy", SESSION, None, Stage.VRFY, "VRFY <address>", ("VRFY",), junk=True),
    "ETRN": Command("etrn", _GREETED, None, None, "ETRN node", ("ETRN",), junk=True),  # RFC 1985
    "EXPN": Command(
        "expn", SESSION, None, None, "EXPN <list1 | list2 | list3 | all>", ("EXPN",), junk=True
    ),
    "RSET": Command(
        "rset",
        SESSION,
        _S.GREETED,
        Stage.RSET,
        "RSET",
        junk=True,
        stays_in=frozenset({_S.CONNECTED}),
    ),
    "NOOP": Command("noop", SESSION, None, Stage.NOOP, "NOOP", junk=True),
    "QUIT": Command("quit", SESSION | {_S.REFUSED}, None, Stage.QUIT, "QUIT"),
}


def _next(state: State, command: Command) -> State:
    if command.next is None or state in command.stays_in:
        return state
    return command.next


# The 503 for a verb that is known but not allowed: per state, with the more
# helpful texts for the verbs that state is waiting for.
_REFUSED_IN: dict[State, Reply] = {
    _S.CONNECTED: R.R503_NEED_EHLO,
    _S.GREETED: R.R503_BAD_SEQUENCE,
    _S.MAIL: R.R503_BAD_SEQUENCE,
    _S.RCPT: R.R503_BAD_SEQUENCE,
    _S.BDAT: R.R503_BAD_SEQUENCE,
    _S.REFUSED: R.R503_BAD_SEQUENCE,
}
_REFUSED_FOR: dict[tuple[State, str], Reply] = {
    (_S.GREETED, "RCPT"): R.R503_NEED_MAIL,
    (_S.GREETED, "DATA"): R.R503_NEED_MAIL,
    (_S.GREETED, "BDAT"): R.R503_NEED_MAIL,
    (_S.MAIL, "DATA"): R.R503_NEED_RCPT,
    (_S.MAIL, "BDAT"): R.R503_NEED_RCPT,
    (_S.BDAT, "DATA"): R.R503_BDAT_THEN_DATA,
}
REFUSALS: dict[tuple[State, str], Reply] = {
    (state, verb): _REFUSED_FOR.get((state, verb), _REFUSED_IN[state])
    for state in State
    for verb, command in COMMANDS.items()
    if state not in command.allowed
}


@dataclass(frozen=True, slots=True)
class Entry:
    """A row resolved for one (state, verb): what the core runs.

    Allowed (``refusal`` is None): ``check`` validates the argument and
    returns the facts the command acts on, or the ``Reply`` that refuses it
    (a handler may have no check: its argument is its facts); ``commit`` acts
    and queues its reply, after the state has become ``next``. Refused:
    ``refusal`` is the 503. Either way a refusal runs ``refuse`` (if any)
    with the reply, instead of just sending it (BDAT reads its chunk).
    """

    verb: str
    check: str
    commit: str
    refuse: str | None
    next: State
    stage: Stage | None
    junk: bool
    refusal: Reply | None


def _entry(state: State, verb: str, command: Command) -> Entry:
    check, commit = f"check_{command.handler}", f"do_{command.handler}"
    if state not in command.allowed:
        refusal = REFUSALS[state, verb]
        return Entry(verb, check, commit, command.refuse, state, None, False, refusal)
    stage = command.stage
    if command.stage_in is not None and state not in command.stage_in:
        stage = None
    next_state = _next(state, command)
    return Entry(verb, check, commit, command.refuse, next_state, stage, command.junk, None)


def _lmtp_entry(state: State, verb: str, command: Command) -> Entry:
    if command.lmtp is False:
        # RFC 2033 4.1: HELO and EHLO are replaced by LHLO, so that a client
        # speaking SMTP to an LMTP server finds out at once.
        check, commit = f"check_{command.handler}", f"do_{command.handler}"
        return Entry(verb, check, commit, None, state, None, False, R.R500_USE_LHLO)
    return _entry(state, verb, command)


# SMTP sessions: LHLO is in no row, so it is an unknown command (502).
TABLE: dict[tuple[State, str], Entry] = {
    (state, verb): _entry(state, verb, command)
    for verb, command in COMMANDS.items()
    if command.lmtp is not True
    for state in State
}
# LMTP sessions (RFC 2033): the same rows, with LHLO in place of HELO/EHLO.
LMTP_TABLE: dict[tuple[State, str], Entry] = {
    (state, verb): _lmtp_entry(state, verb, command)
    for verb, command in COMMANDS.items()
    for state in State
}


def offered(verb: str, *, tls: bool, auth: bool, lmtp: bool = False) -> bool:
    command = COMMANDS[verb]
    if command.lmtp is not None and command.lmtp is not lmtp:
        return False
    offer = command.offer
    return offer is Offer.ALWAYS or (tls if offer is Offer.STARTTLS else auth)


# Memoised (protocol.memo): every connection of a load test sends the same
# EHLO; the reply is immutable and depends only on these arguments.
_EHLOS: Final[dict[tuple[str, str, int, bool, bool], Reply]] = {}


def ehlo_reply(mailname: str, client: str, max_size: int, *, tls: bool, auth: bool) -> Reply:
    """The EHLO answer (RFC 5321 4.1.1.1): the greeting line, then the keywords offered."""
    key = (mailname, client, max_size, tls, auth)
    known = _EHLOS.get(key)
    if known is None:
        made = _ehlo(mailname, client, max_size, tls=tls, auth=auth)
        known = remember(_EHLOS, key, made, 256)
    return known


def _ehlo(mailname: str, client: str, max_size: int, *, tls: bool, auth: bool) -> Reply:
    greeting = R.echo(f"{mailname} Hello ", client)
    lines = [greeting, *(k.format(max_size=max_size) for k in SERVICE_EXTENSIONS)]
    for verb, command in COMMANDS.items():
        if command.keywords and offered(verb, tls=tls, auth=auth):
            lines += command.keywords
    return Reply(250, None, lines)


@lru_cache(maxsize=8)
def help_summary(*, tls: bool, auth: bool, lmtp: bool = False) -> Reply:
    """RFC 5321 4.1.1.8: the commands offered in this session, as EHLO offers them."""
    verbs = sorted(v for v in COMMANDS if offered(v, tls=tls, auth=auth, lmtp=lmtp))
    return Reply(214, "2.0.0", "Supported commands: " + " ".join(verbs))


HELP_TOPICS: dict[str, Reply] = {
    verb: Reply(214, "2.0.0", f"Syntax: {command.help}") for verb, command in COMMANDS.items()
}
