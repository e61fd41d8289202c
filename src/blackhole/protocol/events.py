"""Events the core reports to its adapter: the things it cannot do itself.

Not frozen: a frozen dataclass pays an ``object.__setattr__`` per field in
``__init__``, and a ``MessageReceived`` is made for every message. Each
``__init__`` is written out (``init=False``): the one ``dataclass`` generates
is interpreted code even in the compiled build (mypyc compiles only what the
class body holds), about 1,000 instructions an event against some 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from blackhole.protocol.hooks import Stage
from blackhole.protocol.reader import HeaderScanner
from blackhole.protocol.replies import Reply


@dataclass(slots=True, init=False)
class MessageReceived:
    """A message was read to its end; the adapter must answer with ``send()``.

    ``mode`` and ``delay`` are the raw values of the X-Blackhole-Mode and
    X-Blackhole-Delay headers found in the header section (``None`` when
    absent or when dynamic switches are off); the policy validates them.
    ``headers`` holds the header section's (name, value) pairs when the
    session collects headers (``SessionSettings.collect_headers``), else
    None; they are parsed from ``scanner`` when first asked for, as most
    messages are answered without anyone looking at them. ``reply`` is the
    answer a ``content`` rule already chose: when it is set, the adapter
    sends it rather than asking the policy. ``lmtp``:
    the answer is one reply per recipient, in ``recipients`` order (RFC 2033
    section 4.2), each decided on its own.
    """

    size: int
    sender: str
    recipients: list[str]
    mode: str | None
    delay: str | None
    scanner: HeaderScanner | None
    reply: Reply | None
    lmtp: bool

    def __init__(  # noqa: PLR0917 - positional, as the generated one took them
        self,
        size: int,
        sender: str,
        recipients: list[str],
        mode: str | None,
        delay: str | None,
        scanner: HeaderScanner | None = None,
        reply: Reply | None = None,
        lmtp: bool = False,
    ) -> None:
        self.size = size
        self.sender = sender
        self.recipients = recipients
        self.mode = mode
        self.delay = delay
        self.scanner = scanner
        self.reply = reply
        self.lmtp = lmtp

    @property
    def headers(self) -> list[tuple[str, str]] | None:
        return self.scanner.fields() if self.scanner is not None else None


@dataclass(slots=True, init=False)
class StageReached:
    """A watched stage was reached: input is held until ``resolve()``.

    ``verb`` is the command's (upper case; "" at connect and content).
    ``value`` is what the stage is about: the HELO/EHLO argument at helo, the
    sender at mail ("" for ``<>``), the recipient at rcpt, the user at auth
    (never a password), the VRFY argument at vrfy, the command line at
    command. ``size`` is the SIZE= parameter at mail and the content bytes
    received so far at content. ``message`` is the number of the message in
    the session that the stage belongs to (1 for the first MAIL).

    At content only: ``before`` is the byte count of the message's previous
    content event (0 for its first); ``headers`` the header section's (name,
    value) pairs when headers are collected and the section has ended within
    ``size`` bytes, else None.
    """

    stage: Stage
    verb: str
    value: str | None
    size: int | None
    message: int
    before: int
    headers: list[tuple[str, str]] | None

    def __init__(  # noqa: PLR0917 - positional, as the generated one took them
        self,
        stage: Stage,
        verb: str = "",
        value: str | None = None,
        size: int | None = None,
        message: int = 0,
        before: int = 0,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.stage = stage
        self.verb = verb
        self.value = value
        self.size = size
        self.message = message
        self.before = before
        self.headers = headers


@dataclass(slots=True, init=False)
class StartTLS:
    """The 220 to STARTTLS is queued: write it, then upgrade the transport."""


@dataclass(slots=True, init=False)
class Close:
    """Write what is queued, then close the connection."""

    reason: str

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass(slots=True, init=False)
class Cut:
    """End the connection without a reply: ``how`` is "drop" (write what is
    queued, then FIN), "reset" (abort, RST) or "hang" (never answer again:
    the core reads nothing more; the session ends at a timeout or shutdown,
    which then close it without a reply)."""

    how: str
    reason: str

    def __init__(self, how: str, reason: str) -> None:
        self.how = how
        self.reason = reason


Event = MessageReceived | StageReached | StartTLS | Close | Cut
