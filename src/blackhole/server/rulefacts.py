"""What the rules see of a session at one stage: ``Facts`` from the core and the socket.

The listener and the client do not change during a session, so they are read
once (``Where``); the rest comes from the core and the stage event at the
moment the stage is reached (RULES.md "Matchers").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from blackhole.net import host_port
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived, StageReached
from blackhole.protocol.hooks import Stage
from blackhole.rules.match import Facts
from blackhole.server.unixsock import client_of


@dataclass(frozen=True, slots=True)
class Where:
    """The session's fixed facts: its id, the accepting listener and the client."""

    session: str
    port: int | None
    host: str | None  # "host:port" of the listener, with the real port
    client: str | None
    name: str | None = None  # the listener's name= flag

    @classmethod
    def of(
        cls, session: str, transport: asyncio.BaseTransport, host: str, name: str | None = None
    ) -> Where:
        sockname = transport.get_extra_info("sockname")
        # A port-0 listener's real port is the socket's, not the config's 0.
        port = sockname[1] if isinstance(sockname, tuple) else None
        client = client_of(transport)
        shown = host_port(host, port) if port is not None else None
        return cls(session, port, shown, client, name)


def stage_facts(where: Where, core: SMTPConnection, event: StageReached) -> Facts:
    """The facts at a stage the core reported."""
    stage = event.stage
    value = event.value
    sender = value if stage is Stage.MAIL else core.sender
    content = event.size or 0 if stage is Stage.CONTENT else 0
    return Facts(
        stage=stage,
        session=where.session,
        listener_port=where.port,
        listener_host=where.host,
        listener_name=where.name,
        client=where.client,
        tls=core.tls,
        helo=value if stage is Stage.HELO else core.helo,
        auth_user=value if stage is Stage.AUTH else core.auth_user,
        sender=sender,
        recipients=tuple(core.recipients),
        recipient=value if stage is Stage.RCPT else None,
        size=event.size if stage is Stage.MAIL else None,
        message=event.message or None,
        # The core reports content once per message, at the threshold or at
        # its end: this event brings every byte so far (rules.match.crossed).
        content_bytes=content,
        chunk_bytes=content,
    )


def end_facts(where: Where, core: SMTPConnection, event: MessageReceived) -> Facts:
    """The facts at ``end``: the message as read, with its headers when collected."""
    return Facts(
        stage=Stage.END,
        session=where.session,
        listener_port=where.port,
        listener_host=where.host,
        listener_name=where.name,
        client=where.client,
        tls=core.tls,
        helo=core.helo,
        auth_user=core.auth_user,
        sender=event.sender,
        recipients=tuple(event.recipients),
        headers=tuple(event.headers) if event.headers is not None else None,
        size=event.size,
        message=core.message_number or None,
        content_bytes=event.size,
    )
