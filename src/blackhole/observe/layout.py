"""Where every count lives: a fixed map from (metric, labels) to a slot index.

Workers count into a flat vector of unsigned 64-bit integers (see
``observe.counters``); this module decides, once per server start, which index
holds what. Every label has a bounded set of values, so the vector has a fixed
size and the Prometheus exposition a bounded number of series (OBSERVE.md
"Metrics": label values are bounded):

- ``listener``: a bounded table of ``MAX_LISTENERS`` slots, bound in order to
  the labels of the listeners (their ``name=`` flag or ``host:port``): those
  of the config at start, in config order, then those a reload adds
  (``with_listeners``). A label keeps its slot for the server's life, so that
  its counts never move, and the size of the vector never changes; a label
  beyond the table counts under the first one (the supervisor logs it).
- ``verb``: the commands of RFC 5321 and its extensions that the server knows;
  anything else counts as ``unknown``.
- reply ``verb``: the command verbs, plus three replies no command prompted:
  ``connect`` (the greeting, or a connect rule's reply), ``end`` (the reply
  after the end of data, RFC 5321 4.1.1.4) and ``server`` (the idle timeout's
  or the shutdown's 421).
- ``code``: 200-599, the range RFC 5321 4.2 allows (rules may send any of them).
- ``rule``: a bounded table of ``RULE_SLOTS`` slots. Slot 0 is ``mode``: the
  delays of the config file, listener flags and X-Blackhole-Delay switches.
  Rule names are bound to slots 1.. by ``observe.ruleslots.RuleSlots``.

Gauges (open sessions) come first in the vector, so that folding a dead
worker's counts into the retired totals (``observe.tally``) can skip them with
one slice: a gauge is a current value, and a dead worker holds no sessions.

Histograms take ``len(bounds) + 2`` slots: one per bucket (not cumulative, the
last one is ``+Inf``), then the sum. Times are summed in whole microseconds, so
that every slot stays an integer a worker can bump without a lock.
"""

from __future__ import annotations

from collections.abc import Sequence

VERBS: tuple[str, ...] = (
    "HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT",
    "VRFY", "EXPN", "ETRN", "HELP", "AUTH", "STARTTLS", "unknown",
)  # fmt: skip
UNKNOWN_VERB = VERBS.index("unknown")
REPLY_VERBS: tuple[str, ...] = (*VERBS, "connect", "end", "server")
FIRST_CODE = 200
LAST_CODE = 599
CODE_SPAN = LAST_CODE - FIRST_CODE + 1

OUTCOMES: tuple[str, ...] = ("accepted", "rejected", "deferred", "dropped")
ACCEPTED, REJECTED, DEFERRED, DROPPED = range(4)
RESULTS: tuple[str, ...] = ("ok", "failed")
MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5", "unknown")
SESSION_ENDS: tuple[str, ...] = (
    "quit", "timeout", "client_closed", "dropped", "reset", "shutdown", "error",
)  # fmt: skip
# Why a worker was replaced (blackhole_worker_restarts_total): counted by the
# supervisor into the retired totals, so that POST /reset zeroes them too.
RESTART_REASONS: tuple[str, ...] = (
    "killed", "crashed", "exited", "heartbeat", "start_timeout", "reload_failed",
)  # fmt: skip

# Bucket upper bounds (Prometheus ``le``). Sizes: 1 KiB to 64 MiB by fours;
# reply times: 100 us (a pipelined reply) to 10 s; TLS handshakes: 1 ms to 10 s.
SIZE_BOUNDS: tuple[float, ...] = tuple(float(1024 * 4**k) for k in range(9))
REPLY_BOUNDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
TLS_BOUNDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
MICROS = 1_000_000

# Listener labels a server counts in its life: a config has a few listeners,
# and reloads add some. Each costs 9 words per counter row (sessions,
# connections, 4 outcomes, bytes, 2 TLS results), 6% of a row for 64.
MAX_LISTENERS = 64
MODE_RULE_SLOT = 0
MAX_RULES = 256
RULE_SLOTS = MAX_RULES + 1


def rules_fit(file_rules: int, api_rules: int) -> bool:
    """Whether that many file and API rules can be in force together: each
    counts in a rule slot of its own (observe.ruleslots)."""
    return file_rules + api_rules <= MAX_RULES


def histogram_width(bounds: Sequence[float]) -> int:
    """Slots of one histogram: a bucket per bound, ``+Inf``, then the sum."""
    return len(bounds) + 2


def verb_index(verb: str) -> int:
    """The index of a command verb (case-insensitive), ``unknown`` if not known."""
    try:
        return VERBS.index(verb.upper())
    except ValueError:
        return UNKNOWN_VERB


def mechanism_index(mechanism: str) -> int:
    try:
        return MECHANISMS.index(mechanism.upper())
    except ValueError:
        return len(MECHANISMS) - 1


class Layout:
    """The base index of every block; ``size`` slots in all.

    Two processes that build a ``Layout`` from the same listener names agree
    on every index: the worker computes it from the labels in its spec, the
    supervisor from the bound listeners (the hub is sent the supervisor's).
    Every layout has the same
    ``size``: the listener names only say which listener slots are bound (the
    first ``MAX_LISTENERS`` names; ``listener_index`` raises for the others).
    """

    def __init__(self, listeners: Sequence[str]) -> None:
        if not listeners:
            raise ValueError("a layout needs at least one listener")
        if len(set(listeners)) != len(listeners):
            raise ValueError(f"listener names repeat: {list(listeners)}")
        self.listeners = tuple(listeners[:MAX_LISTENERS])
        count = MAX_LISTENERS
        self._next = 0
        self.sessions_open = self._block(count)
        self.gauges = self._next  # everything before this index is a gauge
        self.connections = self._block(count)
        self.messages = self._block(count * len(OUTCOMES))
        self.message_bytes = self._block(count)
        self.tls = self._block(count * len(RESULTS))
        self.commands = self._block(len(VERBS))
        self.replies = self._block(len(REPLY_VERBS) * CODE_SPAN)
        self.auth = self._block(len(MECHANISMS) * len(RESULTS))
        self.session_ends = self._block(len(SESSION_ENDS))
        self.size_histogram = self._block(histogram_width(SIZE_BOUNDS))
        self.reply_histograms = self._block(len(REPLY_VERBS) * histogram_width(REPLY_BOUNDS))
        self.tls_histogram = self._block(histogram_width(TLS_BOUNDS))
        self.rule_hits = self._block(RULE_SLOTS)
        self.rule_actions = self._block(RULE_SLOTS)
        self.rule_delay = self._block(RULE_SLOTS)  # microseconds
        self.worker_restarts = self._block(len(RESTART_REASONS))
        self.size = self._next

    def _block(self, length: int) -> int:
        start = self._next
        self._next += length
        return start

    def with_listeners(self, labels: Sequence[str]) -> Layout:
        """This layout with the labels it lacks bound to the next free listener
        slots (a reload added listeners); the labels it has keep their slots."""
        known = set(self.listeners)
        return Layout([*self.listeners, *(label for label in labels if label not in known)])

    def unbound(self, labels: Sequence[str]) -> list[str]:
        """The labels without a listener slot of their own (over ``MAX_LISTENERS``)."""
        return [label for label in labels if label not in self.listeners]

    def listener_index(self, name: str) -> int:
        """Raises ``KeyError`` for a listener the layout was not built with."""
        try:
            return self.listeners.index(name)
        except ValueError:
            raise KeyError(name) from None

    def rule_indices(self, slot: int) -> tuple[int, int, int]:
        """The hits, actions and delay indices of one rule slot."""
        return (self.rule_hits + slot, self.rule_actions + slot, self.rule_delay + slot)
