"""Events the core reports to its adapter: the things it cannot do itself.

Not frozen: a frozen dataclass pays an ``object.__setattr__`` per field in
``__init__``, and a ``MessageReceived`` is made for every message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class MessageReceived:
    """A message was read to its end; the adapter must answer with ``send()``.

    ``mode`` and ``delay`` are the raw values of the X-Blackhole-Mode and
    X-Blackhole-Delay headers found in the header section (``None`` when
    absent or when dynamic switches are off); the policy validates them.
    """

    size: int
    recipients: int
    mode: str | None
    delay: str | None


@dataclass(slots=True)
class StartTLS:
    """The 220 to STARTTLS is queued: write it, then upgrade the transport."""


@dataclass(slots=True)
class Close:
    """Write what is queued, then close the connection."""

    reason: str


Event = MessageReceived | StartTLS | Close
