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
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from blackhole.observe.counters import Counters
from blackhole.observe.layout import (
    ACCEPTED,
    CODE_SPAN,
    DEFERRED,
    DROPPED,
    FIRST_CODE,
    MICROS,
    REJECTED,
    REPLY_BOUNDS,
    REPLY_VERBS,
    VERBS,
    histogram_width,
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
_WATCHED = _TRANSACTION | _ENDS_TRANSACTION | {"end"}
_REPLY_WIDTH = histogram_width(REPLY_BOUNDS)
_REPLY_SUM = len(REPLY_BOUNDS) + 1

MessageSink = Callable[[int, bytes | None, int | None], None]


def _no_message(_outcome: int, _reply: bytes | None, _size: int | None) -> None:
    return None


class SessionMeter:
    """Counts one session's replies and messages into a worker's ``Counters``."""

    __slots__ = (
        "_commands",
        "_counters",
        "_histograms",
        "_last",
        "_replies",
        "_transaction",
        "_v",
        "commands",
        "listener",
        "on_message",
        "size",
        "started",
    )

    def __init__(self, counters: Counters, listener: int) -> None:
        self._counters = counters
        # The counters' vector and block bases, for the inlined hot path.
        self._v = counters.view
        layout = counters.layout
        self._commands = layout.commands
        self._replies = layout.replies
        self._histograms = layout.reply_histograms
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

    # marks: list[int | str], alternating; Any spares the hot loop a check per item.
    def replies(self, out: list[bytes], marks: list[Any]) -> None:
        # The per-reply hot path: Counters.reply inlined, one clock read and
        # one bucket search per batch, no allocation of containers.
        seconds = time.perf_counter() - self.started
        bucket = bisect_left(REPLY_BOUNDS, seconds)
        micros = int(seconds * MICROS + 0.5)
        v = self._v
        replies, histograms = self._replies, self._histograms
        last = len(marks) - 2
        # marks[0:2] carries on from the previous batch; every later mark
        # made by a command line is a command.
        for k in range(0, last + 2, 2):
            verb = marks[k + 1]
            reply_index, command_index = _KNOWN.get(verb, _UNKNOWN)
            if k and command_index >= 0:
                v[self._commands + command_index] += 1
                self.commands += 1
            stop = marks[k + 2] if k < last else len(out)
            base = histograms + reply_index * _REPLY_WIDTH
            for index in range(marks[k], stop):
                wire = out[index]
                code = int(wire[:3])
                v[replies + reply_index * CODE_SPAN + code - FIRST_CODE] += 1
                v[base + bucket] += 1
                v[base + _REPLY_SUM] += micros
                if verb in _WATCHED:
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
