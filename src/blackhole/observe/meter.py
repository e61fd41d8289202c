"""One session's counting: the core's replies in, exact counts out.

``SessionMeter`` is the ``protocol.metering.ReplyMeter`` the adapter injects
into each core. The core calls ``replies`` with every batch of replies just
before the adapter writes it, so every count below is taken before the client
can see the reply it counts (a SIGKILL then never loses a reply a client saw).

Per reply: ``commands_total`` for each command line, ``replies_total`` and
``reply_seconds`` by (verb, code). Per transaction, OBSERVE.md "Counting,
exactly": a message is counted once, when its transaction ends:

- ``accepted`` / ``deferred`` / ``rejected``: the reply after the data was
  2xx / 4xx / 5xx;
- ``deferred`` / ``rejected``: the transaction ended (RSET, HELO/EHLO, QUIT,
  STARTTLS, a new MAIL, the connection's end) while the server's last reply in
  it (at MAIL, RCPT, DATA or BDAT) was 4xx / 5xx;
- ``dropped``: the connection ended inside the transaction, its last reply
  being positive;
- nothing: the client abandoned it (RSET, QUIT...) after a positive last reply.

``on_message`` is told of each counted message (for the event log): the
outcome, and the reply that decided it (None for ``dropped``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blackhole.observe.counters import Counters
from blackhole.observe.layout import (
    ACCEPTED,
    DEFERRED,
    DROPPED,
    REJECTED,
    REPLY_VERBS,
    VERBS,
    verb_index,
)

# A reply verb's (reply index, command index or -1 for no command).
_KNOWN: dict[str, tuple[int, int]] = {
    **{verb: (index, index) for index, verb in enumerate(VERBS) if verb != "unknown"},
    **{verb: (REPLY_VERBS.index(verb), -1) for verb in ("connect", "end", "server")},
}
_UNKNOWN = (verb_index("unknown"), verb_index("unknown"))

# Transaction states besides an outcome: none open, open with a positive last reply.
_IDLE = -1
_OPEN = -2
_TRANSACTION = frozenset({"MAIL", "RCPT", "DATA", "BDAT"})
_ENDS_TRANSACTION = frozenset({"RSET", "HELO", "EHLO", "LHLO", "QUIT", "STARTTLS"})

MessageSink = Callable[[int, bytes | None, int | None], None]


def _no_message(_outcome: int, _reply: bytes | None, _size: int | None) -> None:
    return None


class SessionMeter:
    """Counts one session's replies and messages into a worker's ``Counters``."""

    __slots__ = (
        "_counters",
        "_last",
        "_transaction",
        "commands",
        "listener",
        "on_message",
        "size",
        "started",
    )

    def __init__(self, counters: Counters, listener: int) -> None:
        self._counters = counters
        self.listener = listener
        self._transaction = _IDLE
        self._last = b""  # the last reply in the transaction
        # When the command being answered was complete (perf_counter); the
        # adapter moves it on, and past any injected delay.
        self.started = time.perf_counter()
        self.size: int | None = None  # of the message whose data was read
        self.on_message: MessageSink = _no_message
        self.commands = 0  # command lines in this session (the event log's)
        counters.connection(listener)

    def replies(self, out: list[bytes], marks: list[tuple[int, str]]) -> None:
        counters = self._counters
        seconds = time.perf_counter() - self.started
        # marks[0] carries on from the previous batch; every later mark made
        # by a command line is a command.
        last = len(marks) - 1
        for number, (start, verb) in enumerate(marks):
            reply_index, command_index = _KNOWN.get(verb, _UNKNOWN)
            if number and command_index >= 0:
                counters.command(command_index)
                self.commands += 1
            stop = marks[number + 1][0] if number < last else len(out)
            for wire in out[start:stop]:
                code = int(wire[:3])
                counters.reply(reply_index, code, seconds)
                if verb in _TRANSACTION or verb == "end" or verb in _ENDS_TRANSACTION:
                    self._transaction_reply(verb, code, wire)

    def _transaction_reply(self, verb: str, code: int, wire: bytes) -> None:
        if verb == "end":
            outcome = ACCEPTED if code < 400 else DEFERRED if code < 500 else REJECTED
            self._count(outcome, wire, self.size)
            self._transaction, self.size = _IDLE, None
        elif verb in _ENDS_TRANSACTION:
            self._close_transaction(abandoned=True)
        elif verb == "MAIL":
            self._close_transaction(abandoned=True)  # after a refused MAIL
            self._transaction = _OPEN if code < 400 else DEFERRED if code < 500 else REJECTED
            self._last = wire
        elif self._transaction != _IDLE:  # RCPT, DATA, BDAT inside a transaction
            self._transaction = _OPEN if code < 400 else DEFERRED if code < 500 else REJECTED
            self._last = wire

    def _close_transaction(self, *, abandoned: bool) -> None:
        state = self._transaction
        if state == _IDLE:
            return
        if state >= 0:
            self._count(state, self._last, None)
        elif not abandoned:
            self._count(DROPPED, None, self.size)
        self._transaction, self.size = _IDLE, None

    def _count(self, outcome: int, reply: bytes | None, size: int | None) -> None:
        self._counters.message(self.listener, outcome, size)
        self.on_message(outcome, reply, size)

    def end(self, how: int) -> None:
        """The session ended (``layout.SESSION_ENDS`` index): a transaction in
        flight is a message, dropped unless its last reply refused it."""
        self._close_transaction(abandoned=False)
        self._counters.session_end(self.listener, how)
