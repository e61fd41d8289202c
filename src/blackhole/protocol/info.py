"""The commands that only inform: HELP, VRFY, EXPN, ETRN.

Each is a pure function of its argument (and the mail name, and for HELP what
the session offers): no session state is changed, which is why they are
allowed in every state, inside a transaction too (RFC 5321 section 4.1.4).
The answers follow the classic Blackhole's ``pass=`` / ``fail=`` convention so
that tests can ask for either.
"""

from __future__ import annotations

from blackhole.protocol import replies as R
from blackhole.protocol.replies import Reply
from blackhole.protocol.states import COMMANDS, HELP_TOPICS, help_summary

# The classic server's built-in mailing lists, kept name for name.
EXPN_LISTS: dict[str, tuple[str, ...]] = {
    "list1": ("Shadow", "Wednesday", "Low-key Liesmith"),
    "list2": ("Jim Holden", "Naomi Nagata", "Alex Kamal", "Amos Burton"),
    "list3": (
        "Takeshi Kovacs",
        "Laurens Bancroft",
        "Kristin Ortega",
        "Quellcrist Falconer",
        "Virginia Vidaura",
        "Reileen Kawahara",
    ),
}

_ETRN_SYNTAX = Reply(501, "5.5.4", f"Syntax: {COMMANDS['ETRN'].help}")
_SMTPUTF8 = " SMTPUTF8"


def help_reply(arg: str, *, tls: bool, auth: bool, lmtp: bool = False) -> Reply:
    """RFC 5321 4.1.1.8: 214 with the commands offered, or the syntax of one verb."""
    topic = arg.strip().upper()
    if not topic:
        return help_summary(tls=tls, auth=auth, lmtp=lmtp)
    return HELP_TOPICS.get(topic, R.R504_HELP_UNKNOWN)


def strip_smtputf8(arg: str) -> str:
    """RFC 6531 section 3.7.4.2: VRFY and EXPN may carry an SMTPUTF8 parameter
    (the client may take UTF-8 in the answer). Every answer here may hold
    UTF-8 anyway, so it is accepted and dropped before the argument is read."""
    stripped = arg.rstrip()
    if stripped[-len(_SMTPUTF8) :].upper() == _SMTPUTF8:
        return stripped[: -len(_SMTPUTF8)]
    return arg


def vrfy_reply(arg: str) -> Reply:
    """RFC 5321 3.5.3: 252 (will not say) unless the argument asks for 250 or 550."""
    address = arg.strip()
    if not address:
        return R.R501_VRFY_SYNTAX  # the classic server crashed here
    if "pass=" in address:
        return R.vrfy_pass(address.strip("<>"))
    if "fail=" in address:
        return R.vrfy_fail(address.strip("<>"))
    return R.R252_VRFY


def expn_reply(arg: str, mailname: str) -> Reply:
    """RFC 5321 3.5.2: the members of ``list1``..``list3`` or ``all``, else 550."""
    name = arg.strip().strip("<>").lower()
    if "fail=" in name:
        return R.R550_EXPN_DENIED
    if name == "all":
        members = [m for group in EXPN_LISTS.values() for m in group]
    elif name in EXPN_LISTS:
        members = list(EXPN_LISTS[name])
    else:
        return R.R550_EXPN_DENIED
    return Reply(250, "2.1.5", [f"{m} <{m.lower().replace(' ', '.')}@{mailname}>" for m in members])


def etrn_reply(arg: str) -> Reply:
    """RFC 1985: 250 for any node name; a sink has no queue to run."""
    return R.R250_ETRN if arg.strip() else _ETRN_SYNTAX
