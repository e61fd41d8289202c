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

from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter
from typing import Any

from blackhole.observe.counters import Counters
from blackhole.observe.layout import (
    ACCEPTED,
    CODE_SPAN,
    DEFERRED,
    DROPPED,
    FIRST_CODE,
    MICROS,
    OUTCOMES,
    REJECTED,
    REPLY_BOUNDS,
    REPLY_VERBS,
    SIZE_BOUNDS,
    VERBS,
    Layout,
    histogram_width,
)

# What a reply verb means to the transaction (OBSERVE.md "Counting, exactly").
_PLAIN, _MAIL, _INSIDE, _ENDS, _END, _AUTH = range(6)
_KINDS = {
    "MAIL": _MAIL,
    **dict.fromkeys(("RCPT", "DATA", "BDAT"), _INSIDE),
    **dict.fromkeys(("RSET", "HELO", "EHLO", "LHLO", "QUIT", "STARTTLS"), _ENDS),
    "end": _END,
    "AUTH": _AUTH,  # not the transaction's: counted by result (its final reply)
}
# Transaction states besides an outcome: none open, open with a positive last reply.
_IDLE = -1
_OPEN = -2
_REPLY_WIDTH = histogram_width(REPLY_BOUNDS)
_REPLY_SUM = len(REPLY_BOUNDS) + 1
_SIZE_SUM = len(SIZE_BOUNDS) + 1
_FIRST_BOUND = REPLY_BOUNDS[0]
# A reply's code from its first three bytes, without slicing: b"0" is 48.
_ZEROS = 48 * 111

# Per reply verb: (command slot or -1 when no command prompted it, base of its
# replies by code less FIRST_CODE, base of its histogram, _KINDS value).
Slot = tuple[int, int, int, int]
# Per (verb, reply bytes): (command slot or -1, the reply's own replies_total
# slot, base of the verb's histogram (its first bucket), its sum's slot,
# _KINDS value, the reply code).
Resolved = tuple[int, int, int, int, int, int]
# Replies are mostly the same few constant byte strings; texts that vary (a
# queue id, an echoed address) are resolved each time once this many are kept.
_RESOLVED_LIMIT = 1024


class VerbSlots:
    """A worker's reply indices: by verb, and resolved per (verb, reply) as seen."""

    __slots__ = ("by_verb", "resolved", "unknown")

    def __init__(self, by_verb: dict[str, Slot]) -> None:
        self.by_verb = by_verb
        self.unknown = by_verb["unknown"]
        self.resolved: dict[tuple[str, bytes], Resolved] = {}

    def resolve(self, verb: str, wire: bytes) -> Resolved:
        """The slots one reply counts in; kept for the next time while there is room."""
        command, replies, histogram, kind = self.by_verb.get(verb, self.unknown)
        code = wire[0] * 100 + wire[1] * 10 + wire[2] - _ZEROS
        found = (command, replies + code, histogram, histogram + _REPLY_SUM, kind, code)
        if len(self.resolved) < _RESOLVED_LIMIT:
            self.resolved[verb, wire] = found
        return found


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


MessageSink = Callable[[int, bytes | None, int | None], None]


def _no_message(_outcome: int, _reply: bytes | None, _size: int | None) -> None:
    return None


def _no_auth(_ok: bool) -> None:
    return None


class SessionMeter:
    """Counts one session's replies and messages into a worker's ``Counters``."""

    __slots__ = (
        "_bytes",
        "_counters",
        "_last",
        "_outcomes",
        "_resolved",
        "_sizes",
        "_slots",
        "_transaction",
        "_v",
        "commands",
        "listener",
        "on_auth",
        "on_message",
        "size",
        "started",
    )

    def __init__(self, counters: Counters, listener: int, slots: VerbSlots) -> None:
        self._counters = counters
        self._v = counters.view  # the slot itself: increments inlined below
        layout = counters.layout
        self._outcomes = layout.messages + listener * len(OUTCOMES)
        self._bytes = layout.message_bytes + listener
        self._sizes = layout.size_histogram
        self._slots = slots
        self._resolved = slots.resolved
        self.listener = listener
        self._transaction = _IDLE
        self._last = b""  # the last reply in the transaction
        # When the input that completed the command being answered arrived
        # (perf_counter); the adapter moves it on, and past any injected delay.
        self.started = perf_counter()
        self.size: int | None = None  # of the message whose data was read
        self.on_message: MessageSink = _no_message
        self.on_auth: Callable[[bool], None] = _no_auth  # an AUTH exchange's result
        self.commands = 0  # command lines in this session (the event log's)
        counters.connection(listener)

    # marks: list[int | str], alternating; Any spares the hot loop a check per item.
    def replies(self, out: list[bytes], marks: list[Any]) -> None:
        # The hot path, about 4 batches per message, with a budget of 5% of a
        # message's CPU: one clock read per batch, one dict lookup per reply
        # (its slots and code resolved once per worker), three or four stores
        # per reply, and a call only where the transaction's state changes in
        # a way that counts (a refusal, the reply after the data, RSET/EHLO/QUIT
        # inside a transaction).
        seconds = perf_counter() - self.started
        v = self._v
        resolved = self._resolved
        if len(marks) == 4 and len(out) == 1 and not marks[2]:
            # One command, one reply: pipelining off, the usual case.
            wire = out[0]
            found = resolved.get((marks[3], wire))
            if found is None:
                found = self._slots.resolve(marks[3], wire)
            command, reply, histogram, total, kind, code = found
            if command >= 0:
                v[command] += 1
                self.commands += 1
            v[reply] += 1
            if seconds <= _FIRST_BOUND:
                v[histogram] += 1
            else:
                v[histogram + bisect_left(REPLY_BOUNDS, seconds)] += 1
            v[total] += int(seconds * MICROS + 0.5)
            if kind:
                if kind == _END:
                    outcome = ACCEPTED if code < 400 else DEFERRED if code < 500 else REJECTED
                    self._count(outcome, wire, self.size)
                    self._transaction, self.size = _IDLE, None
                elif code >= 400 or kind >= _ENDS or self._transaction >= 0:
                    self._transaction_reply(kind, code, wire)
                elif kind == _MAIL:
                    self._transaction = _OPEN
            return
        bucket = 0 if seconds <= _FIRST_BOUND else bisect_left(REPLY_BOUNDS, seconds)
        micros = int(seconds * MICROS + 0.5)
        count = len(marks)
        # marks[0:2] carries on from the previous batch; every later mark
        # made by a command line is a command.
        for k in range(0, count, 2):
            verb = marks[k + 1]
            if k:
                command = self._slots.by_verb.get(verb, self._slots.unknown)[0]
                if command >= 0:
                    v[command] += 1
                    self.commands += 1
            stop = marks[k + 2] if k + 2 < count else len(out)
            for index in range(marks[k], stop):
                wire = out[index]
                found = resolved.get((verb, wire))
                if found is None:
                    found = self._slots.resolve(verb, wire)
                _command, reply, histogram, total, kind, code = found
                v[reply] += 1
                v[histogram + bucket] += 1
                v[total] += micros
                if kind:
                    self._transaction_reply(kind, code, wire)

    def _transaction_reply(self, kind: int, code: int, wire: bytes) -> None:
        if kind == _AUTH:
            if code != 334:  # RFC 4954 4: 334 is a challenge, anything else ends it
                self.on_auth(code == 235)
        elif kind == _END:
            outcome = ACCEPTED if code < 400 else DEFERRED if code < 500 else REJECTED
            self._count(outcome, wire, self.size)
            self._transaction, self.size = _IDLE, None
        elif kind == _ENDS:
            self._close_transaction(abandoned=True)
        elif kind == _MAIL or self._transaction != _IDLE:  # RCPT, DATA, BDAT inside one
            if kind == _MAIL:
                self._close_transaction(abandoned=True)  # after a refused MAIL
            # The last reply matters only when it refused: it decides the outcome.
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
        # Counters.message inlined: one call per message fewer on the hot path.
        v = self._v
        v[self._outcomes + outcome] += 1
        if size is not None:
            v[self._bytes] += size
            v[self._sizes + bisect_left(SIZE_BOUNDS, size)] += 1
            v[self._sizes + _SIZE_SUM] += size
        if self.on_message is not _no_message:
            self.on_message(outcome, reply, size)

    def end(self, how: int) -> None:
        """The session ended (``layout.SESSION_ENDS`` index): a transaction in
        flight is a message, dropped unless its last reply refused it."""
        self._close_transaction(abandoned=False)
        self._counters.session_end(self.listener, how)
