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

from collections.abc import Callable
from time import perf_counter
from typing import Any, Final

from blackhole.observe.counters import REPLY_COMMAND, REPLY_HISTOGRAM, Counters
from blackhole.observe.layout import (
    ACCEPTED,
    CODE_SPAN,
    DEFERRED,
    DROPPED,
    FIRST_CODE,
    REJECTED,
    REPLY_BOUNDS,
    REPLY_VERBS,
    VERBS,
    Layout,
    histogram_width,
)

# Constants are Final: the compiled build keeps them in C variables, where it
# would look a plain module global up in the module's dict at every use.
# What a reply verb means to the transaction (OBSERVE.md "Counting, exactly").
_PLAIN: Final = 0
_MAIL: Final = 1
_INSIDE: Final = 2
_ENDS: Final = 3
_END: Final = 4
_AUTH: Final = 5
_KINDS = {
    "MAIL": _MAIL,
    **dict.fromkeys(("RCPT", "DATA", "BDAT"), _INSIDE),
    **dict.fromkeys(("RSET", "HELO", "EHLO", "LHLO", "QUIT", "STARTTLS"), _ENDS),
    "end": _END,
    "AUTH": _AUTH,  # not the transaction's: counted by result (its final reply)
}
# Transaction states besides an outcome: none open, open with a positive last reply.
_IDLE: Final = -1
_OPEN: Final = -2
# The outcomes (layout's), which are also the states of a refused transaction.
_ACCEPTED: Final = ACCEPTED
_REJECTED: Final = REJECTED
_DEFERRED: Final = DEFERRED
_DROPPED: Final = DROPPED
_clock: Final = perf_counter
_REPLY_WIDTH = histogram_width(REPLY_BOUNDS)
_ZEROS: Final = 48 * 111

# Per reply verb, Counters.replied's slots (counters.REPLY_*: the command's
# slot or -1 when no command prompted the reply, the base of its replies by
# code less FIRST_CODE, the first bucket of its histogram), then its _KINDS
# value. Of any length to the type checker, so that the compiled build keeps
# it one object (a fixed-length tuple would be unboxed, and boxed again for
# each call).
Slot = tuple[int, ...]
_COMMAND: Final = REPLY_COMMAND
_KIND: Final = REPLY_HISTOGRAM + 1


class VerbSlots:
    """A worker's reply indices by verb, shared by its sessions' meters."""

    __slots__ = ("by_verb", "unknown")

    def __init__(self, by_verb: dict[str, Slot]) -> None:
        self.by_verb = by_verb
        self.unknown = by_verb["unknown"]


def verb_slots(layout: Layout) -> VerbSlots:
    """Every reply verb's indices in ``layout``: one dict lookup per reply."""
    slots: dict[str, Slot] = {}
    for reply_index, verb in enumerate(REPLY_VERBS):
        command = layout.commands + reply_index if verb in VERBS else -1
        slots[verb] = (
            command,
            layout.replies + reply_index * CODE_SPAN - FIRST_CODE,
            layout.reply_histograms + reply_index * _REPLY_WIDTH,
            _KINDS.get(verb, _PLAIN),
        )
    return VerbSlots(slots)


def _code(wire: bytes) -> int:
    """A reply's code from its first three bytes, without slicing: b"0" is 48."""
    return wire[0] * 100 + wire[1] * 10 + wire[2] - _ZEROS


MessageSink = Callable[[int, bytes | None, int | None], None]


def _no_message(_outcome: int, _reply: bytes | None, _size: int | None) -> None:
    return None


def _no_auth(_ok: bool) -> None:
    return None


class SessionMeter:
    """Counts one session's replies and messages into a worker's ``Counters``."""

    __slots__ = (
        "_by_verb",
        "_counters",
        "_last",
        "_transaction",
        "_unknown",
        "commands",
        "listener",
        "on_auth",
        "on_message",
        "size",
        "started",
    )

    def __init__(self, counters: Counters, listener: int, slots: VerbSlots) -> None:
        self._counters = counters
        self._by_verb = slots.by_verb
        self._unknown = slots.unknown
        self.listener = listener
        self._transaction = _IDLE
        self._last = b""  # the last reply in the transaction
        # When the input that completed the command being answered arrived
        # (perf_counter); the adapter moves it on, and past any injected delay.
        self.started = _clock()
        self.size: int | None = None  # of the message whose data was read
        self.on_message: MessageSink = _no_message
        self.on_auth: Callable[[bool], None] = _no_auth  # an AUTH exchange's result
        self.commands = 0  # command lines in this session (the event log's)
        counters.connection(listener)

    # marks: list[int | str], alternating; Any spares the hot loop a check per item.
    def replies(self, out: list[bytes], marks: list[Any]) -> None:
        # The hot path, about 4 batches per message, with a budget of 5% of a
        # message's CPU: one clock read per batch, one dict lookup per reply
        # (its verb's slots), one call to count it (Counters.replied: all its
        # stores), and a call only where the transaction's state changes in a
        # way that counts (a refusal, the reply after the data, RSET/EHLO/QUIT
        # inside a transaction).
        seconds = _clock() - self.started
        counters = self._counters
        if len(marks) == 4 and len(out) == 1 and not marks[2]:
            # One command, one reply: pipelining off, the usual case.
            wire = out[0]
            slots = self._by_verb.get(marks[3])
            if slots is None:
                slots = self._unknown
            code = _code(wire)
            counters.replied(slots, code, seconds, True)
            if slots[_COMMAND] >= 0:
                self.commands += 1
            kind = slots[_KIND]
            if kind:
                if kind == _END:
                    outcome = _ACCEPTED if code < 400 else _DEFERRED if code < 500 else _REJECTED
                    self._count(outcome, wire, self.size)
                    self._transaction, self.size = _IDLE, None
                elif code >= 400 or kind >= _ENDS or self._transaction >= 0:
                    self._transaction_reply(kind, code, wire)
                elif kind == _MAIL:
                    self._transaction = _OPEN
            return
        count = len(marks)
        # marks[0:2] carries on from the previous batch; every later mark
        # made by a command line is a command.
        for k in range(0, count, 2):
            slots = self._by_verb.get(marks[k + 1])
            if slots is None:
                slots = self._unknown
            if k and slots[_COMMAND] >= 0:
                counters.command_at(slots[_COMMAND])
                self.commands += 1
            stop = marks[k + 2] if k + 2 < count else len(out)
            kind = slots[_KIND]
            for index in range(marks[k], stop):
                wire = out[index]
                code = _code(wire)
                counters.replied(slots, code, seconds)
                if kind:
                    self._transaction_reply(kind, code, wire)

    def _transaction_reply(self, kind: int, code: int, wire: bytes) -> None:
        if kind == _AUTH:
            if code != 334:  # RFC 4954 4: 334 is a challenge, anything else ends it
                self.on_auth(code == 235)
        elif kind == _END:
            outcome = _ACCEPTED if code < 400 else _DEFERRED if code < 500 else _REJECTED
            self._count(outcome, wire, self.size)
            self._transaction, self.size = _IDLE, None
        elif kind == _ENDS:
            self._close_transaction(abandoned=True)
        elif kind == _MAIL or self._transaction != _IDLE:  # RCPT, DATA, BDAT inside one
            if kind == _MAIL:
                self._close_transaction(abandoned=True)  # after a refused MAIL
            # The last reply matters only when it refused: it decides the outcome.
            self._transaction = _OPEN if code < 400 else _DEFERRED if code < 500 else _REJECTED
            self._last = wire

    def _close_transaction(self, *, abandoned: bool) -> None:
        state = self._transaction
        if state == _IDLE:
            return
        if state >= 0:
            self._count(state, self._last, None)
        elif not abandoned:
            self._count(_DROPPED, None, self.size)
        self._transaction, self.size = _IDLE, None

    def _count(self, outcome: int, reply: bytes | None, size: int | None) -> None:
        self._counters.message(self.listener, outcome, size)
        if self.on_message is not _no_message:
            self.on_message(outcome, reply, size)

    def end(self, how: int) -> None:
        """The session ended (``layout.SESSION_ENDS`` index): a transaction in
        flight is a message, dropped unless its last reply refused it."""
        self._close_transaction(abandoned=False)
        self._counters.session_end(self.listener, how)
