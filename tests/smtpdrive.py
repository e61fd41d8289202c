"""Drive the sans-IO core without sockets: the adapter's loop, in a few lines.

Used by the transcript tests and the Hypothesis properties. ``Driver`` plays
the part of ``server/connection.py``: it feeds bytes, drains replies, and
answers events (a ``MessageReceived`` with a reply chosen by the test, a
``StartTLS`` by noting it, a ``Close`` or ``Cut`` by refusing further
input, a ``StageReached`` with the verdict the test's ``decide`` gives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from blackhole.protocol import (
    Close,
    Cut,
    MessageReceived,
    SessionSettings,
    SMTPConnection,
    StageReached,
    StartTLS,
)
from blackhole.protocol.hooks import Stage, Verdict, bits
from blackhole.protocol.replies import Reply, queued

# What the transcripts see as the CRAM-MD5 challenge (RFC 2195: <...@host>).
TEST_CHALLENGE = "<1896.697170952@mx.test>"


def make_settings(**overrides: object) -> SessionSettings:
    base: dict[str, object] = {"mailname": "mx.test", "challenge": lambda: TEST_CHALLENGE}
    base.update(overrides)
    return SessionSettings(**base)  # type: ignore[arg-type]


@dataclass
class Record:
    """One observable thing: a reply line (``S``) or an event (``E``/``A``)."""

    kind: str  # "S" reply line, "E" event, "A" message answered
    text: str
    event: MessageReceived | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


# One reply, or (LMTP) one per recipient; one reply for an LMTP message
# answers every recipient alike.
Answer = Callable[[MessageReceived], Reply | Sequence[Reply]]
Decide = Callable[[StageReached], Verdict | None]


def accept_all(event: MessageReceived) -> Reply:
    return queued("TESTID")


def no_verdict(event: StageReached) -> Verdict | None:
    return None


@dataclass
class Driver:
    """Feeds a core and records what comes out, as the asyncio adapter would."""

    conn: SMTPConnection
    answer: Answer = accept_all
    records: list[Record] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    messages: list[MessageReceived] = field(default_factory=list)
    closed: bool = False
    starttls: bool = False
    decide: Decide = no_verdict
    stages: list[StageReached] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        settings: SessionSettings | None = None,
        answer: Answer = accept_all,
        *,
        watch: frozenset[Stage] = frozenset(),
        decide: Decide = no_verdict,
        content_threshold: int | None = None,
    ) -> Driver:
        conn = SMTPConnection(settings or make_settings())
        conn.watch = bits(watch)
        conn.content_thresholds = () if content_threshold is None else (content_threshold,)
        driver = cls(conn, answer, decide=decide)
        conn.start()
        driver.pump()
        return driver

    def feed(self, data: bytes) -> None:
        if self.closed:
            return  # the adapter has closed the transport: nothing is read
        self.conn.receive_data(data)
        self.pump()

    def feed_chunks(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.feed(chunk)

    def pump(self) -> None:
        # Bounded: every round either consumes an event or ends the loop, and
        # a core that keeps making events forever is itself a bug to report.
        for _ in range(100_000):
            out = self.conn.data_to_send()
            if out:
                self.raw += out
                self._lines(out)
            event = self.conn.next_event()
            if event is None:
                return
            if isinstance(event, MessageReceived):
                self.messages.append(event)
                self.records.append(Record("A", describe(event), event))
                answer = event.reply or self.answer(event)  # a content rule's reply wins
                if event.lmtp and isinstance(answer, Reply):
                    answer = [answer] * len(event.recipients)
                self.conn.send(answer)
            elif isinstance(event, StageReached):
                self.stages.append(event)
                self.records.append(Record("E", describe_stage(event, self.conn)))
                self.conn.resolve(self.decide(event))
            elif isinstance(event, Cut):
                self.closed = event.how != "hang"
                self.records.append(Record("E", event.how))
            elif isinstance(event, StartTLS):
                self.starttls = True
                self.records.append(Record("E", "starttls"))
            elif isinstance(event, Close):
                self.closed = True
                self.records.append(Record("E", "close"))
        raise AssertionError("the core produced events without end")

    def _lines(self, out: bytes) -> None:
        assert out.endswith(b"\r\n"), f"reply bytes do not end with CRLF: {out!r}"
        for line in out[:-2].split(b"\r\n"):
            self.records.append(Record("S", line.decode("utf-8")))


def describe_stage(event: StageReached, conn: SMTPConnection) -> str:
    """``stage <stage> [verb] [value=...] [size=...]``: a content event's size
    is the threshold it reports (or the content's size at its end)."""
    words = ["stage", event.stage.value]
    if event.verb:
        words.append(event.verb)
    if event.value is not None:
        words.append(f"value={event.value}")
    if event.size is not None:
        words.append(f"size={event.size}")
    return " ".join(words)


def describe(event: MessageReceived) -> str:
    return (
        f"size={event.size} recipients={len(event.recipients)} "
        f"mode={event.mode if event.mode is not None else '-'} "
        f"delay={event.delay if event.delay is not None else '-'}"
    )
