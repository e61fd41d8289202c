"""The commands that only inform: HELP, VRFY, EXPN, ETRN.

Each is a pure function of its argument (and the mail name): no session state
is read or changed, which is why they are allowed in every state, inside a
transaction too (RFC 5321 section 4.1.4). The answers follow the classic
Blackhole's ``pass=`` / ``fail=`` convention so that tests can ask for either.
"""

from __future__ import annotations

from blackhole.protocol import replies as R
from blackhole.protocol.replies import Reply
from blackhole.protocol.states import COMMANDS, HELP_SUMMARY

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

_HELP_SUMMARY = Reply(214, "2.0.0", HELP_SUMMARY)
_HELP = {verb: Reply(214, "2.0.0", f"Syntax: {entry[2]}") for verb, entry in COMMANDS.items()}
_ETRN_SYNTAX = Reply(501, "5.5.4", f"Syntax: {COMMANDS['ETRN'][2]}")


def help_reply(arg: str) -> Reply:
    """RFC 5321 4.1.1.8: 214 with the command list, or the syntax of one verb."""
    topic = arg.strip().upper()
    if not topic:
        return _HELP_SUMMARY
    return _HELP.get(topic, R.R504_HELP_UNKNOWN)


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
