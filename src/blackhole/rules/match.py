"""Whether a rule's matchers hold for one event: pure functions of (matchers, facts).

``Facts`` is what the core knows at the moment of a stage event; a field is
``None`` while its value is not known (no sender outside a transaction), and
a matcher on an unknown value never holds (RULES.md "Matchers": at rset, noop,
vrfy, quit and command a matcher holds only when its value is known).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from blackhole.protocol.hooks import Stage
from blackhole.rules.model import Matchers


@dataclass(slots=True, init=False)
class Facts:
    """What is known about the session at one stage event.

    Not frozen, though never changed once made, and its ``__init__`` written
    out: one is made at every watched stage event, and ``protocol.events``
    says what a generated one costs (server.rulefacts makes them
    positionally: keep the parameters' order).
    """

    stage: Stage
    session: str  # a session id, for key = "session"
    listener_port: int | None
    listener_host: str | None  # "host:port" as configured
    listener_name: str | None
    client: str | None  # the client's IP address
    tls: bool
    helo: str | None
    auth_user: str | None
    sender: str | None  # "" is the null sender <>
    recipients: tuple[str, ...]  # accepted so far in this transaction
    recipient: str | None  # at rcpt the one given; at LMTP end the one answered
    headers: tuple[tuple[str, str], ...] | None  # (name, value), once read
    size: int | None  # SIZE= at mail, the real size at end
    message: int | None  # the n-th message of the session, from 1
    content_bytes: int  # content received so far (content stage)
    chunk_bytes: int  # of which arrived with this event

    def __init__(  # noqa: PLR0917 - made positionally (server.rulefacts)
        self,
        stage: Stage,
        session: str = "",
        listener_port: int | None = None,
        listener_host: str | None = None,
        listener_name: str | None = None,
        client: str | None = None,
        tls: bool = False,
        helo: str | None = None,
        auth_user: str | None = None,
        sender: str | None = None,
        recipients: tuple[str, ...] = (),
        recipient: str | None = None,
        headers: tuple[tuple[str, str], ...] | None = None,
        size: int | None = None,
        message: int | None = None,
        content_bytes: int = 0,
        chunk_bytes: int = 0,
    ) -> None:
        self.stage = stage
        self.session = session
        self.listener_port = listener_port
        self.listener_host = listener_host
        self.listener_name = listener_name
        self.client = client
        self.tls = tls
        self.helo = helo
        self.auth_user = auth_user
        self.sender = sender
        self.recipients = recipients
        self.recipient = recipient
        self.headers = headers
        self.size = size
        self.message = message
        self.content_bytes = content_bytes
        self.chunk_bytes = chunk_bytes

    def header(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.headers or () if key.lower() == lower]


def failing(m: Matchers, facts: Facts) -> str | None:
    """The first matcher that does not hold (its key), or ``None`` when all hold."""
    if m.listener is not None and not _listener(m.listener, facts):
        return "listener"
    if m.client is not None:
        if facts.client is None:
            return "client"
        try:
            ip = ipaddress.ip_address(facts.client)
        except ValueError:
            return "client"
        if not any(ip.version == net.version and ip in net for net in m.client):
            return "client"
    if m.tls is not None and m.tls != facts.tls:
        return "tls"
    if m.helo is not None and (facts.helo is None or not m.helo.matches(facts.helo)):
        return "helo"
    if m.auth_user is not None and (
        facts.auth_user is None or not m.auth_user.matches(facts.auth_user)
    ):
        return "auth_user"
    if m.sender is not None and (facts.sender is None or not m.sender.matches(facts.sender)):
        return "sender"
    if m.recipient is not None:
        # RULES.md: at rcpt the one given, later any of them (LMTP end: the one answered).
        if facts.recipient is not None:
            if not m.recipient.matches(facts.recipient):
                return "recipient"
        elif not any(m.recipient.matches(r) for r in facts.recipients):
            return "recipient"
    if m.header is not None:
        if facts.headers is None:
            return "header"
        for name, globs in m.header:
            if not any(globs.matches(value) for value in facts.header(name)):
                return "header"
    if m.size is not None:
        low, high = m.size
        if facts.size is None or (low is not None and facts.size < low):
            return "size"
        if high is not None and facts.size > high:
            return "size"
    if m.message is not None and (
        facts.message is None or not m.message[0] <= facts.message <= m.message[1]
    ):
        return "message"
    return None


def _listener(want: int | str, facts: Facts) -> bool:
    if isinstance(want, int):
        return facts.listener_port == want
    if facts.listener_host is not None and want == facts.listener_host.lower():
        return True
    return facts.listener_name is not None and want == facts.listener_name.lower()


def crossed(after_bytes: int, facts: Facts) -> bool:
    """At content, whether this event is the one that brings the content to ``after_bytes``.

    A rule acts once per message, at the chunk that crosses its threshold, not
    at every chunk after it (0: at the first content event).
    """
    before = facts.content_bytes - facts.chunk_bytes
    if after_bytes == 0:
        return before == 0
    return before < after_bytes <= facts.content_bytes
