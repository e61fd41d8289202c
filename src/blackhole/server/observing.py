"""What a worker's sessions report: counts, event log lines, recorded messages.

``Observation`` is built once per worker (``supervisor.worker_main``) and
shared by its sessions through ``ServerState``; without a supervisor it counts
into private memory (``Counters.private``), the null sink, so that no session
code asks whether anything is counted.

``SessionObservation`` is one session's: the ``observe.meter.SessionMeter``
injected into its core, plus the facts the event log needs (OBSERVE.md
"Event log"): a message line after its final reply, a session line when the
session ends. Never a password, never content: the records are built from
the envelope, the reply and the header fields only.

``record_sink`` is the seam for ``record = N``: when ``record`` is above 0,
it is called with every message record plus its headers
(``observe.record.with_headers``: plain JSON values), right after the event
log line; the process that serves ``GET /messages`` keeps the last N. The
default does nothing; whoever hosts the ring (the control process) sets it.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from blackhole.config.model import Listener
from blackhole.net import host_port
from blackhole.observe.counters import Counters
from blackhole.observe.eventlog import (
    EventLog,
    message_record,
    parse_reply,
    queue_id,
    tls_field,
)
from blackhole.observe.layout import (
    MODE_RULE_SLOT,
    OUTCOMES,
    SESSION_ENDS,
    Layout,
)
from blackhole.observe.messageline import MessageLines, session_line
from blackhole.observe.meter import SessionMeter, verb_slots
from blackhole.observe.record import with_headers
from blackhole.observe.tally import attach_counters
from blackhole.observe.uncounted import UncountedMeter, counting_disabled

if TYPE_CHECKING:
    from blackhole.protocol.core import SMTPConnection
    from blackhole.protocol.events import MessageReceived

JSON = dict[str, Any]
RecordSink = Callable[[JSON], None]
_END_INDEX: Final = {name: index for index, name in enumerate(SESSION_ENDS)}


def listener_labels(bound: Sequence[tuple[Listener, socket.socket]]) -> list[str]:
    """The listeners' labels: their ``name=`` flag, else the bound ``host:port``
    (the real port, not 0) or ``unix:/path``. A name several listeners share is followed by
    ``@host:port``, so that each listener keeps a series of its own."""
    names = Counter(listener.name for listener, _sock in bound if listener.name is not None)
    labels = []
    for listener, sock in bound:
        if listener.path is not None:
            where = listener.where  # unix:/path
        else:
            address = sock.getsockname()
            where = host_port(str(address[0]), int(address[1]))
        if listener.name is None:
            labels.append(where)
        else:
            labels.append(
                listener.name if names[listener.name] == 1 else f"{listener.name}@{where}"
            )
    return labels


def _ignore_record(_record: JSON) -> None:
    return None


class Observation:
    """A worker's sinks: counters, the event log, the record seam."""

    def __init__(
        self,
        counters: Counters,
        event_log: EventLog | None = None,
        record: int = 0,
        worker: int = 0,
        counting: bool = True,
    ) -> None:
        self.counters = counters
        self.event_log = event_log
        self.record = record
        self.worker = worker
        self.counting = counting  # False only for the benchmark (observe.uncounted)
        self.record_sink: RecordSink = _ignore_record
        self.verb_slots = verb_slots(counters.layout)  # shared by every session's meter
        self.rule_slots: dict[str, int] = {}  # rule name -> counter slot, from the hub
        self._listener_indices: dict[str, int] = {}

    def set_rule_slots(self, slots: dict[str, int]) -> None:
        self.rule_slots = slots

    def rule_matched(self, rule: str) -> None:
        """A rule's matchers held (RULES.md: counted whether or not it acts): its
        hits, under the slot the hub gave it, for /stats and GET /rules."""
        slot = self.rule_slots.get(rule)
        if slot is not None:
            self.counters.rule_hit(slot)

    @classmethod
    def private(cls, names: Sequence[str]) -> Observation:
        return cls(Counters.private(Layout(names or ["-"])))

    @classmethod
    def for_worker(
        cls,
        region: tuple[int, int, Sequence[str]] | None,
        listeners: Sequence[str],
        event_log: str | None,
        record: int,
        worker: int,
    ) -> Observation:
        """A worker's: its slot of the shared region ``(fd, slot, names)``, if
        it has one, and the event log of the config (``OSError`` if it cannot
        be opened)."""
        if region is None:
            counters = Counters.private(Layout(listeners or ["-"]))
        else:
            fd, slot, names = region
            counters = attach_counters(fd, Layout(names), slot)
        log = EventLog(event_log) if event_log is not None else None
        return cls(counters, log, record, worker, counting=not counting_disabled())

    def reopen(self) -> None:
        """SIGHUP: open the event log's path again (logrotate moved it)."""
        if self.event_log is not None:
            self.event_log.reopen()

    def listener_index(self, name: str) -> int:
        """A listener beyond the layout's slots (``layout.MAX_LISTENERS``) counts as the first."""
        index = self._listener_indices.get(name)
        if index is None:  # once per listener: this is asked at every connection
            try:
                index = self.counters.layout.listener_index(name)
            except KeyError:
                index = 0
            self._listener_indices[name] = index
        return index


class SessionObservation:
    """One session's meter and event log facts."""

    __slots__ = (
        "answered",
        "client",
        "core",
        "end",
        "event",
        "lines",
        "listener",
        "messages",
        "meter",
        "observation",
        "opened",
        "recipient_rules",
        "rule",
        "session_id",
        "tls",
        "tls_started",
    )

    def __init__(self, observation: Observation, listener: str, session_id: str) -> None:
        self.observation = observation
        self.listener = listener
        self.session_id = session_id
        self.client = ""  # the peer's address, once connected
        listener_index = observation.listener_index(listener)
        self.meter: SessionMeter | UncountedMeter = (
            SessionMeter(observation.counters, listener_index, observation.verb_slots)
            if observation.counting
            else UncountedMeter(listener_index)
        )
        self.rule: str | None = None  # the last rule that acted, for the message's line
        self.end = "client_closed"  # until the server knows better
        self.messages = 0
        self.tls: JSON | None = None
        self.tls_started = 0.0
        self.event: MessageReceived | None = None
        self.answered = 0
        # LMTP: the end rule of each recipient (answered_by); a tuple, so that
        # a session or message without one makes no list.
        self.recipient_rules: Sequence[str | None] = ()
        log = observation.event_log
        if log is not None or observation.record:
            self.meter.on_message = self._message_done
        # The event log's alone: its message lines, and the start of the
        # session's duration (no clock read for a session without a log).
        self.lines = (
            MessageLines(session_id, observation.worker, listener) if log is not None else None
        )
        self.opened = time.time() if log is not None else 0.0
        self.core: SMTPConnection | None = None

    def handshake_started(self) -> None:
        self.tls_started = time.perf_counter()

    def handshake_done(self, ok: bool, version: str | None, cipher: str | None) -> None:
        seconds = time.perf_counter() - self.tls_started
        self.observation.counters.tls(self.meter.listener, ok, seconds)
        if ok:
            self.tls = tls_field(version, cipher)

    def rule_acted(self, rule: str, delay: float) -> None:
        """A rule's verdict was carried out (server.steering): counted under the
        rule's slot when the hub gave it one, and named in the message's line."""
        self.rule = rule
        slot = self.observation.rule_slots.get(rule)
        if slot is not None:
            counters = self.observation.counters
            counters.rule_action(slot)
            if delay > 0:
                counters.delay(slot, delay)

    def answered_by(self, rules: Sequence[str | None]) -> None:
        """LMTP: the ``end`` rule that decided each recipient's reply, in RCPT
        order (None: no rule acted for it), told before those rules are noted
        by ``rule_acted``. Each recipient's reply is a message of its own (RFC
        2033 4.2), so its line names its own rule; one without names the last
        rule that acted in the transaction before the end of data."""
        before = self.rule
        self.recipient_rules = [before if rule is None else rule for rule in rules]

    def delayed(self, seconds: float) -> None:
        """The mode (config, listener flag or X-Blackhole-Delay) held a reply."""
        self.observation.counters.delay(MODE_RULE_SLOT, seconds)

    def data_cut(self, size: int) -> None:
        """The session ended with ``size`` bytes of a message's data read
        and the message not complete: the size its drop is counted with."""
        if self.meter.size is None:
            self.meter.size = size

    def message_read(self, event: MessageReceived) -> None:
        self.meter.size = event.size
        self.event = event
        self.answered = 0  # LMTP: recipients whose reply has been counted
        self.recipient_rules = ()

    def _message_done(self, outcome: int, reply: bytes | None, size: int | None) -> None:
        self.messages += 1
        event = self.event
        if event is not None and event.lmtp and self.answered < len(event.recipients):
            # RFC 2033 4.2: one reply per recipient, in RCPT order; each is a
            # message of its own, to that recipient, of the size read (the
            # meter counts the bytes once, with the first).
            recipients = [event.recipients[self.answered]]
            size = event.size
            rules = self.recipient_rules
            rule = rules[self.answered] if self.answered < len(rules) else self.rule
            self.answered += 1
            if self.answered == len(event.recipients):
                # A rule that acts after this message belongs to the next one.
                self.event, self.recipient_rules, self.rule = None, (), None
        else:
            self.event = None
            recipients = event.recipients if event is not None else _recipients(self.core)
            # A rule that acts after this message belongs to the next one.
            rule, self.rule = self.rule, None
        core = self.core
        now = time.time()
        helo = core.helo if core is not None else None
        auth_user = core.auth_user if core is not None else None
        sender = event.sender if event is not None else _sender(core)
        seconds = time.perf_counter() - self.meter.started
        observation = self.observation
        if self.lines is not None and observation.event_log is not None:
            # The line of the record below, made without building it (messageline);
            # keywords, not a dict of them: this runs for every message.
            line = self.lines.line(
                time=now, wire=reply, client=self.client, helo=helo, tls=self.tls,
                auth_user=auth_user, sender=sender, recipients=recipients, size=size,
                rule=rule, seconds=seconds, outcome=OUTCOMES[outcome],
            )  # fmt: skip
            observation.event_log.write_line(line)
        if observation.record:
            record = message_record(
                time=now, queue_id=queue_id(reply), session=self.session_id,
                worker=observation.worker, listener=self.listener, client=self.client,
                helo=helo, tls=self.tls, auth_user=auth_user, sender=sender,
                recipients=recipients, size=size, reply=parse_reply(reply), rule=rule,
                seconds=seconds,
            )  # fmt: skip
            record["outcome"] = OUTCOMES[outcome]
            headers = event.headers if event is not None and event.headers else []
            observation.record_sink(with_headers(record, headers))

    def close(self) -> None:
        """The session is over: count its end, write its line."""
        meter = self.meter
        meter.end(_END_INDEX[self.end])
        log = self.observation.event_log
        if log is not None:
            now = time.time()
            log.write_line(
                session_line(
                    time=now,
                    session=self.session_id,
                    listener=self.listener,
                    client=self.client,
                    duration=now - self.opened,
                    commands=meter.commands,
                    messages=self.messages,
                    tls=self.tls,
                    end=self.end,
                )
            )


def _sender(core: SMTPConnection | None) -> str | None:
    return core.last_sender if core is not None else None


def _recipients(core: SMTPConnection | None) -> list[str]:
    return list(core.last_recipients) if core is not None else []
