"""The seam through which the core reports every reply it hands out, with its verb.

The core does not count (it has no clock and knows nothing of workers); it
tells an injected ``ReplyMeter`` which replies a batch of output holds and
which command prompted each, just before the adapter writes them. So a count
is taken before the client can see the reply (OBSERVE.md: a SIGKILL never
loses a reply the client saw), and the adapter keeps no copy of SMTP meaning.

``marks`` is a flat list of ``position, verb`` pairs in output order (flat:
no tuple per command on the hot path): the replies from ``out[position]`` up
to the next mark were prompted by ``verb``. Verbs are the
command's (upper case, as typed, so possibly unknown), or one of the replies
no command prompted: ``connect`` (the greeting), ``end`` (the answer after a
message's data, RFC 5321 4.1.1.4) and ``server`` (a timeout's or a
shutdown's 421). An AUTH command that names a mechanism the server has
marks its replies ``AUTH <mechanism>`` (``AUTH PLAIN``...) after its own
mark, whether its exchange begins or it is refused: its result is counted
under that mechanism, even when the next AUTH is pipelined behind it. The
first mark is always at position 0.
"""

from __future__ import annotations

from typing import Final, Protocol

CONNECT: Final = "connect"
END: Final = "end"
SERVER: Final = "server"
# A line that could not even be parsed into a verb (bad bytes, overlong).
UNPARSED: Final = "unknown"


class ReplyMeter(Protocol):
    def replies(self, out: list[bytes], marks: list[int | str]) -> None:
        """``out`` is about to be written; read it, never change it."""
        ...

    def unanswered(self, marks: list[int | str]) -> None:
        """The session ended before the commands marked after ``marks[0:2]`` were
        answered (a rule's drop or reset, the client leaving): each was still a
        command line received (an ``AUTH <mechanism>`` mark is no command)."""
        ...


class NullMeter:
    """The default: nothing is counted."""

    __slots__ = ()

    def replies(self, out: list[bytes], marks: list[int | str]) -> None:
        return None

    def unanswered(self, marks: list[int | str]) -> None:
        return None


NULL_METER = NullMeter()
