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
- ``deferred`` / ``rejected``: a MAIL was refused with 4xx / 5xx (counted at
  once: no transaction opened), or the transaction ended (RSET, HELO/EHLO,
  QUIT, STARTTLS, a new MAIL, the connection's end) while the server's last
  reply in it (at RCPT, DATA or BDAT) was 4xx / 5xx;
- ``dropped``: the connection ended inside the transaction, its last reply
  being positive;
- nothing: the client abandoned it (RSET, QUIT...) after a positive last reply.

``on_message`` is told of each counted message (for the event log): the
outcome, and the reply that decided it (None for ``dropped``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from blackhole.observe.counters import Counters
from blackhole.observe.layout import (
    ACCEPTED,
    CODE_SPAN,
    DEFERRED,
    DROPPED,
    FIRST_CODE,
    MECHANISMS,
    MICROS,
    OUTCOMES,
    REJECTED,
    REPLY_BOUNDS,
    REPLY_VERBS,
    SIZE_BOUNDS,
    VERBS,
    Layout,
    histogram_width,
    mechanism_index,
)

# The compiled build compiles this module with Cython, its C types in
# meter.pxd: the counter slot is a C array there, and these constants C numbers.
# What a reply verb means to the transaction (OBSERVE.md "Counting, exactly").
_PLAIN: Final = 0
_MAIL: Final = 1
_INSIDE: Final = 2
_ENDS: Final = 3
_END: Final = 4
# AUTH's replies are not the transaction's: its result (its final reply)
# counts under a mechanism, _AUTH + its index in MECHANISMS. The AUTH
# command's mark stands for "unknown" (no mechanism the server has named);
# the core marks the replies "AUTH <mechanism>" when the command names one
# (protocol.metering).
_AUTH: Final = 5
_AUTH_MARKS = {f"AUTH {mechanism}": mechanism for mechanism in MECHANISMS[:-1]}
_KINDS = {
    "MAIL": _MAIL,
    # "server": a 421 no command asked for (idle timeout, stop). Inside a
    # transaction it is the server's last reply there: the message is
    # deferred by it, not dropped (OBSERVE.md, Counting).
    **dict.fromkeys(("RCPT", "DATA", "BDAT", "server"), _INSIDE),
    **dict.fromkeys(("RSET", "HELO", "EHLO", "LHLO", "QUIT", "STARTTLS"), _ENDS),
    "end": _END,
    "AUTH": _AUTH + mechanism_index("unknown"),
}
# Transaction states besides an outcome: none open, open with a positive last reply.
_IDLE: Final = -1
_OPEN: Final = -2
# The outcomes (layout's), which are also the states of a refused transaction.
_ACCEPTED: Final = ACCEPTED
_REJECTED: Final = REJECTED
_DEFERRED: Final = DEFERRED
_DROPPED: Final = DROPPED
_REPLY_WIDTH: Final = histogram_width(REPLY_BOUNDS)
_REPLY_SUM: Final = len(REPLY_BOUNDS) + 1
_SIZE_SUM: Final = len(SIZE_BOUNDS) + 1
_OUTCOMES: Final = len(OUTCOMES)
_MICROS: Final = float(MICROS)
_BOUNDS = REPLY_BOUNDS  # a C array in meter.pxd
_SIZES = SIZE_BOUNDS  # a C array in meter.pxd
_REPLY_BUCKETS: Final = len(REPLY_BOUNDS)
_SIZE_BUCKETS: Final = len(SIZE_BOUNDS)
# Most replies fall in the first bucket: one compare then, where the pure
# build would otherwise pay a call and a loop.
_FIRST_BOUND: Final = REPLY_BOUNDS[0]
_ZEROS: Final = 48 * 111

# Per reply verb: its command's slot (-1 when no command prompted it), the
# base of its replies by code less FIRST_CODE, the first bucket of its
# histogram, its _KINDS value.
Slot = tuple[int, int, int, int]


class VerbSlots:
    """A worker's indices in its layout, shared by its sessions' meters: the
    reply verbs' (one dict lookup per reply) and the message blocks' bases.

    A C class in the compiled build (meter.pxd): a meter made for each
    session reads these as C fields, not as attributes looked up by name.
    """

    __slots__ = ("by_verb", "message_bytes", "messages", "size_histogram", "unknown")

    def __init__(self, by_verb: dict[str, Slot], layout: Layout) -> None:
        self.by_verb = by_verb
        self.unknown = by_verb["unknown"]
        self.messages = layout.messages
        self.message_bytes = layout.message_bytes
        self.size_histogram = layout.size_histogram


def verb_slots(layout: Layout) -> VerbSlots:
    """Every reply verb's indices in ``layout``, and its message blocks'."""
    slots: dict[str, Slot] = {}
    for reply_index, verb in enumerate(REPLY_VERBS):
        command = layout.commands + reply_index if verb in VERBS else -1
        slots[verb] = (
            command,
            layout.replies + reply_index * CODE_SPAN - FIRST_CODE,
            layout.reply_histograms + reply_index * _REPLY_WIDTH,
            _KINDS.get(verb, _PLAIN),
        )
    _command, codes, histogram, _kind = slots["AUTH"]
    for mark, mechanism in _AUTH_MARKS.items():
        # AUTH's replies, under the mechanism; not another command.
        slots[mark] = (-1, codes, histogram, _AUTH + mechanism_index(mechanism))
    return VerbSlots(slots, layout)


MessageSink = Callable[[int, bytes | None, int | None], None]


def _no_message(_outcome: int, _reply: bytes | None, _size: int | None) -> None:
    return None


def _bucket(value: float, bounds: Sequence[float], count: int) -> int:
    """The histogram bucket of ``value``: the first of the ``count`` bounds it
    does not exceed (Prometheus ``le``), ``count`` for none. A scan: values
    are mostly small, and compiled it is a few C compares over a C array,
    where ``bisect`` compares Python numbers."""
    index = 0
    while index < count and value > bounds[index]:
        index += 1
    return index


class SessionMeter:
    """Counts one session's replies and messages into a worker's ``Counters``."""

    __slots__ = (
        "_by_verb",
        "_bytes",
        "_counters",
        "_last",
        "_outcomes",
        "_sizes",
        "_transaction",
        "_unknown",
        "commands",
        "listener",
        "on_message",
        "size",
        "started",
    )

    def __init__(self, counters: Counters, listener: int, slots: VerbSlots) -> None:
        self._counters = counters
        self._place(slots, listener)
        self.listener = listener
        self._transaction = _IDLE
        self._last = b""  # the last reply in the transaction
        # When the input that completed the command being answered arrived
        # (perf_counter); the adapter moves it on, and past any injected delay.
        self.started = time.perf_counter()
        self.size: int | None = None  # of the message whose data was read
        self.on_message: MessageSink = _no_message
        self.commands = 0  # command lines in this session (the event log's)
        counters.connection(listener)

    def start(self) -> None:
        """The input that completes a command arrived now (or an injected
        delay ended): the time to its reply counts from here."""
        self.started = time.perf_counter()

    def _place(self, slots: VerbSlots, listener: int) -> None:
        # Apart from __init__ for meter.pxd's types: Cython reads the
        # argument's fields in C only where they are declared, and it
        # declares no def method's.
        self._outcomes = slots.messages + listener * _OUTCOMES
        self._bytes = slots.message_bytes + listener
        self._sizes = slots.size_histogram
        self._by_verb = slots.by_verb
        self._unknown = slots.unknown

    # marks: list[int | str], alternating; Any spares the hot loop a check per item.
    def replies(self, out: list[bytes], marks: list[Any]) -> None:
        # The hot path, about 4 batches per message, with a budget of 5% of a
        # message's CPU: one clock read per batch, one dict lookup per reply
        # (its verb's slots), three or four stores per reply (C additions in
        # the compiled build), and a call only where the transaction's state
        # changes in a way that counts (a refusal, the reply after the data,
        # RSET/EHLO/QUIT inside a transaction).
        # In the compiled build time.perf_counter is Cython's C reading of the
        # same clock (meter.pxd), and a C subtraction: no Python call, no
        # float object.
        now = time.perf_counter()
        seconds = now - self.started
        v = self._counters.view  # the slot itself: increments inlined
        if len(marks) == 4 and len(out) == 1 and not marks[2]:
            # One command, one reply: pipelining off, the usual case.
            wire = out[0]
            command, codes, histogram, kind = self._by_verb.get(marks[3], self._unknown)
            # The code from the first three bytes, without slicing: b"0" is 48.
            code = wire[0] * 100 + wire[1] * 10 + wire[2] - _ZEROS
            if command >= 0:
                v[command] += 1
                self.commands += 1
            v[codes + code] += 1
            bucket = 0 if seconds <= _FIRST_BOUND else _bucket(seconds, _BOUNDS, _REPLY_BUCKETS)
            v[histogram + bucket] += 1
            v[histogram + _REPLY_SUM] += int(seconds * _MICROS + 0.5)
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
        bucket = _bucket(seconds, _BOUNDS, _REPLY_BUCKETS)
        micros = int(seconds * _MICROS + 0.5)
        count = len(marks)
        # marks[0:2] carries on from the previous batch; every later mark
        # made by a command line is a command.
        for k in range(0, count, 2):
            command, codes, histogram, kind = self._by_verb.get(marks[k + 1], self._unknown)
            if k and command >= 0:
                v[command] += 1
                self.commands += 1
            stop = marks[k + 2] if k + 2 < count else len(out)
            for index in range(marks[k], stop):
                wire = out[index]
                code = wire[0] * 100 + wire[1] * 10 + wire[2] - _ZEROS
                v[codes + code] += 1
                v[histogram + bucket] += 1
                v[histogram + _REPLY_SUM] += micros
                if kind:
                    self._transaction_reply(kind, code, wire)

    def unanswered(self, marks: list[Any]) -> None:
        # Rare (a session cut before its replies): no fast path.
        v = self._counters.view
        for k in range(2, len(marks), 2):
            command = self._by_verb.get(marks[k + 1], self._unknown)[0]
            if command >= 0:
                v[command] += 1
                self.commands += 1

    def _transaction_reply(self, kind: int, code: int, wire: bytes) -> None:
        if kind >= _AUTH:
            if code != 334:  # RFC 4954 4: 334 is a challenge, anything else ends it
                self._counters.auth(kind - _AUTH, code == 235)
        elif kind == _END:
            outcome = _ACCEPTED if code < 400 else _DEFERRED if code < 500 else _REJECTED
            self._count(outcome, wire, self.size)
            self._transaction, self.size = _IDLE, None
        elif kind == _ENDS:
            self._close_transaction(True)
        elif kind == _MAIL and (code < 400 or self._transaction == _IDLE):
            self._close_transaction(True)
            if code < 400:
                self._transaction = _OPEN
            else:
                # RFC 5321 3.3: a refused MAIL opens no transaction, so its
                # reply decides the message now; the 503s that RCPT and DATA
                # get until the next MAIL belong to none.
                self._count(_DEFERRED if code < 500 else _REJECTED, wire, None)
        elif self._transaction != _IDLE:  # RCPT, DATA, BDAT, a refused MAIL inside one
            # The last reply matters only when it refused: it decides the outcome.
            self._transaction = _OPEN if code < 400 else _DEFERRED if code < 500 else _REJECTED
            self._last = wire

    def _close_transaction(self, abandoned: bool) -> None:
        state = self._transaction
        if state == _IDLE:
            return
        if state >= 0:
            # The size: data was read when a 421 of the server's own (a
            # timeout, a stop) refused the message during or after it.
            self._count(state, self._last, self.size)
        elif not abandoned:
            self._count(_DROPPED, None, self.size)
        self._transaction, self.size = _IDLE, None

    def _count(self, outcome: int, reply: bytes | None, size: int | None) -> None:
        # Counters.message inlined: one call per message fewer on the hot path.
        v = self._counters.view  # the slot itself: increments inlined
        v[self._outcomes + outcome] += 1
        if size is not None:
            v[self._bytes] += size
            v[self._sizes + _bucket(size, _SIZES, _SIZE_BUCKETS)] += 1
            v[self._sizes + _SIZE_SUM] += size
        if self.on_message is not _no_message:
            self.on_message(outcome, reply, size)

    def end(self, how: int) -> None:
        """The session ended (``layout.SESSION_ENDS`` index): a transaction in
        flight is a message, dropped unless its last reply refused it."""
        self._close_transaction(False)
        self._counters.session_end(self.listener, how)
