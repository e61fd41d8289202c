"""What one SMTP session needs to know from outside the core."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _no_challenge() -> str:
    return "<0.0@localhost>"


# Postfix's smtpd_forbidden_commands default: a browser or proxy client
# talking HTTP to an SMTP port (cross-protocol attacks, HTTP CONNECT tunnels).
FORBIDDEN_COMMANDS = frozenset({"CONNECT", "GET", "POST"})


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What one session needs to know; the server builds it per listener."""

    mailname: str = "localhost"
    max_message_size: int = 512_000
    max_recipients: int = 1000
    # X-Blackhole-* switches: the core reads them only when this is on, and
    # is the only place that looks (policy trusts what the core reports).
    dynamic_switch: bool = True
    # Keep the header section of every message (name/value pairs, bounded by
    # MAX_HEADER_SCAN) for header rules and recorded messages. Off, the hot
    # path never copies a header.
    collect_headers: bool = False
    # LMTP (RFC 2033): LHLO instead of HELO/EHLO, and one reply per
    # recipient at the end of a message.
    lmtp: bool = False
    tls_available: bool = False  # STARTTLS can be offered
    tls_active: bool = False  # the connection is TLS from the start (SMTPS)
    auth_required: bool = False  # MAIL needs AUTH first (530 5.7.0)
    auth_tls_only: bool = False  # AUTH only once TLS is on (538 5.7.11)
    # Junk commands (NOOP, RSET, VRFY, EXPN, HELP, ETRN) allowed between two
    # messages; one more gets 421 and the session is closed. 0: no limit.
    junk_command_limit: int = 100
    # Verbs (upper case) that end the session at once, without a reply; any
    # line whose first word ends with ":" (an HTTP header) does too.
    forbidden_commands: frozenset[str] = FORBIDDEN_COMMANDS
    # RFC 2195: a unique challenge "<random.timestamp@host>"; made by the adapter
    # because the core has no clock and no randomness of its own.
    challenge: Callable[[], str] = field(default=_no_challenge)

    def forbids(self, verb: str) -> bool:
        """Whether a command line starting with ``verb`` (upper case) ends the session."""
        forbidden = self.forbidden_commands
        return bool(forbidden) and (verb in forbidden or verb.endswith(":"))
