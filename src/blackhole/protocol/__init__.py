"""The sans-IO SMTP core: RFC 5321 and its extensions, and nothing else.

No module in this package imports asyncio, ssl, socket, time or random (a test
enforces it). Bytes go in with ``receive_data``, replies come out of
``data_to_send``, and anything the adapter must act on (a finished message, a
STARTTLS switch, closing, a rules stage) comes out of ``next_event``.
"""

from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import Close, Cut, Event, MessageReceived, StageReached, StartTLS
from blackhole.protocol.replies import Reply
from blackhole.protocol.settings import SessionSettings

__all__ = [
    "Close",
    "Cut",
    "Event",
    "MessageReceived",
    "Reply",
    "SMTPConnection",
    "SessionSettings",
    "StageReached",
    "StartTLS",
]
