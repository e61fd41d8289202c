"""Where the conversation can be steered from outside: stages and verdicts.

The core reports a ``Stage`` (RULES.md "Stages") when the adapter has asked it
to watch that stage; the adapter answers with a ``Verdict`` (or ``None``: carry
on as usual), and the core applies what concerns SMTP (the reply and the state
change that goes with it). What concerns the socket (delays, closing,
dropping, resetting, hanging, tarpits, TLS faults) is the adapter's to carry
out. A fault is a value, not a code path: no stage grows an ``if fault:``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from blackhole.protocol.replies import Reply


class Stage(enum.StrEnum):
    """The stages of RULES.md, in conversation order where there is one."""

    CONNECT = "connect"
    HELO = "helo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    CONTENT = "content"
    END = "end"
    RSET = "rset"
    NOOP = "noop"
    VRFY = "vrfy"
    QUIT = "quit"
    COMMAND = "command"


# The members again, as module constants (``hooks.RCPT``): on Python 3.11
# reading a member through its class (Stage.RCPT) goes through
# EnumType.__getattr__'s slow slot, about ten times the cost of a module
# attribute, and under rules the core asks about stages at every command.
CONNECT: Final = Stage.CONNECT
HELO: Final = Stage.HELO
STARTTLS: Final = Stage.STARTTLS
AUTH: Final = Stage.AUTH
MAIL: Final = Stage.MAIL
RCPT: Final = Stage.RCPT
DATA: Final = Stage.DATA
CONTENT: Final = Stage.CONTENT
END: Final = Stage.END
RSET: Final = Stage.RSET
NOOP: Final = Stage.NOOP
VRFY: Final = Stage.VRFY
QUIT: Final = Stage.QUIT
COMMAND: Final = Stage.COMMAND

# Each stage as one bit of ``SMTPConnection.watch``: whether a stage is
# watched, asked at every command of a session under rules, is then an AND
# of two integers where a set's lookup hashed the stage.
BIT: Final[dict[Stage, int]] = {stage: 1 << index for index, stage in enumerate(Stage)}
CONNECT_BIT: Final = BIT[CONNECT]
AUTH_BIT: Final = BIT[AUTH]
CONTENT_BIT: Final = BIT[CONTENT]
COMMAND_BIT: Final = BIT[COMMAND]


def bits(stages: Iterable[Stage]) -> int:
    """``stages`` as ``SMTPConnection.watch`` holds them."""
    watch = 0
    for stage in stages:
        watch |= BIT[stage]
    return watch


class TLSFault(enum.StrEnum):
    """What a ``starttls`` rule does to the handshake after its 220."""

    FAIL = "fail"  # abort the handshake
    HANG = "hang"  # never handshake


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rule decided for one stage event.

    ``reply`` replaces the answer the server would have given (a positive one,
    2xx or 3xx like DATA's 354, takes the success path, anything else the
    failure path; 421 closes after it). At ``content`` it is the message's
    final answer, given once the content has ended.
    ``close`` sends ``reply`` (or 421 4.3.2) and closes; ``drop`` closes with
    no reply (FIN); ``reset`` aborts (RST); ``hang`` never answers. ``delay``
    (seconds) comes before the reply; ``tarpit`` (bytes per second) paces every
    reply of the session from this one on. ``rule`` names the deciding rule,
    for logs, the event log and metrics.
    """

    rule: str
    reply: Reply | None = None
    delay: float = 0.0
    close: bool = False
    drop: bool = False
    reset: bool = False
    hang: bool = False
    tarpit: int | None = None
    tls: TLSFault | None = None
