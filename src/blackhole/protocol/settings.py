"""What one SMTP session needs to know from outside the core."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _no_challenge() -> str:
    return "<0.0@localhost>"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What one session needs to know; the server builds it per listener."""

    mailname: str = "localhost"
    max_message_size: int = 512_000
    max_recipients: int = 1000
    dynamic_switch: bool = True
    tls_available: bool = False  # STARTTLS can be offered
    tls_active: bool = False  # the connection is TLS from the start (SMTPS)
    auth_required: bool = False  # MAIL needs AUTH first (530 5.7.0)
    auth_tls_only: bool = False  # AUTH only once TLS is on (538 5.7.11)
    # RFC 2195: a unique challenge "<random.timestamp@host>"; made by the adapter
    # because the core has no clock and no randomness of its own.
    challenge: Callable[[], str] = field(default=_no_challenge)
