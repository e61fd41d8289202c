"""What the rules see of a session at one stage: ``Facts`` from the core and the socket.

The listener and the client do not change during a session, so they are read
once (``Where``); the rest comes from the core and the stage event at the
moment the stage is reached (RULES.md "Matchers").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from blackhole.net import host_port
from blackhole.protocol import hooks as H
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived, StageReached
from blackhole.protocol.hooks import Stage
from blackhole.rules.match import Facts


@dataclass(slots=True, init=False)
class Where:
    """The session's fixed facts: its id, the accepting listener and the client.

    Made for every session that rules watch: not frozen and its ``__init__``
    written out, as ``protocol.events`` says why.
    """

    session: str
    port: int | None
    host: str | None  # "host:port" of the listener, with the real port
    client: str | None
    name: str | None  # the listener's name= flag

    def __init__(
        self,
        session: str,
        port: int | None,
        host: str | None,
        client: str | None,
        name: str | None = None,
    ) -> None:
        self.session = session
        self.port = port
        self.host = host
        self.client = client
        self.name = name

    @classmethod
    def of(
        cls,
        session: str,
        transport: asyncio.BaseTransport,
        host: str,
        client: tuple[str, int] | None,
        name: str | None = None,
    ) -> Where:
        """``client`` is the session's (``SMTPProtocol.client``): behind a
        PROXY header it is not the socket's peer."""
        sockname = transport.get_extra_info("sockname")
        # A port-0 listener's real port is the socket's, not the config's 0.
        port = sockname[1] if isinstance(sockname, tuple) else None
        shown = host_port(host, port) if port is not None else None
        return cls(session, port, shown, client[0] if client else None, name)


# Facts are made positionally, in the order of their fields (rules.match.Facts):
# matching 17 keyword arguments to their parameters costs more than the rest
# of making them, and they are made at every watched event.


def stage_facts(where: Where, core: SMTPConnection, event: StageReached) -> Facts:
    """The facts at a stage the core reported."""
    stage = event.stage
    value = event.value
    content = event.size or 0 if stage is H.CONTENT else 0
    return Facts(
        stage,
        where.session,
        where.port,  # listener_port
        where.host,  # listener_host
        where.name,  # listener_name
        where.client,
        core.tls,
        value if stage is H.HELO else core.helo,
        value if stage is H.AUTH else core.auth_user,
        value if stage is H.MAIL else core.sender,
        tuple(core.recipients),
        value if stage is H.RCPT else None,  # recipient
        # The core reports content at each rule's after_bytes, or at its end
        # when none is reached: this event brings the bytes since the last
        # one (rules.match.crossed), and the headers once they have ended.
        tuple(event.headers) if event.headers is not None else None,
        # RULES.md size: SIZE= from mail on (the real size is end's).
        event.size if stage is H.MAIL else core.declared_size,
        event.message or None,
        content,  # content_bytes
        content - event.before,  # chunk_bytes
    )


def command_facts(where: Where, core: SMTPConnection, stage: Stage, value: str | None) -> Facts:
    """The facts ``stage_facts`` makes of the event the core reports at a
    command stage other than mail (protocol.staging), before it is made:
    ``value`` is the event's, the rest is the core's as it stands."""
    return Facts(
        stage,
        where.session,
        where.port,  # listener_port
        where.host,  # listener_host
        where.name,  # listener_name
        where.client,
        core.tls,
        value if stage is H.HELO else core.helo,
        core.auth_user,  # auth is reported after the exchange, not at a command
        core.sender,
        tuple(core.recipients),
        value if stage is H.RCPT else None,  # recipient
        None,  # headers
        core.declared_size,  # size: SIZE= of the transaction's MAIL
        core.message_number or None,
    )


def end_facts(
    where: Where, core: SMTPConnection, event: MessageReceived, recipient: str | None = None
) -> Facts:
    """The facts at ``end``: the message as read, with its headers when collected.

    ``recipient``: on LMTP, the recipient being answered (RULES.md "LMTP").
    """
    return Facts(
        H.END,
        where.session,
        where.port,  # listener_port
        where.host,  # listener_host
        where.name,  # listener_name
        where.client,
        core.tls,
        core.helo,
        core.auth_user,
        event.sender,
        tuple(event.recipients),
        recipient,
        tuple(event.headers) if event.headers is not None else None,
        event.size,
        core.message_number or None,
        event.size,  # content_bytes
    )
