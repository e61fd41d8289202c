"""The event log's message line, made without building and encoding a record each time.

A line is written for every message, so its making is on the hot path
(OBSERVE.md's budget: the event log costs at most 30 % CPU per message).
``MessageLines`` belongs to one session: the fields that stay the same for
the session's messages (session, worker, listener, client, helo, tls,
auth_user) are encoded once, again only when one changes (a new EHLO,
STARTTLS, AUTH), and each message encodes only its own values.

The line is exactly ``eventlog.encode`` of ``eventlog.message_record`` with
``outcome`` added, the record the ``record`` ring keeps: the same fields in
the same order, each value encoded as ``json.dumps`` encodes it (strings by
the json module's own ASCII escaping, integers and floats by their ``repr``).
The tests compare the two for arbitrary values.
"""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _string
from typing import Any

from blackhole.observe.eventlog import encode, rfc3339


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


class MessageLines:
    """One session's message lines."""

    __slots__ = ("_auth_user", "_client", "_encoded", "_head", "_helo", "_tls")

    def __init__(self, session: str, worker: int, listener: str) -> None:
        # int.__repr__ as json does: a bool would be "true", a worker is an int.
        self._head = f'"session":{_string(session)},"worker":{int.__repr__(worker)},'
        self._head += f'"listener":{_string(listener)},'
        # What the session's fields were encoded from, compared by identity:
        # the adapter replaces a value, never changes one in place.
        self._client: str | None = None  # never a client: the first line encodes
        self._helo: str | None = None
        self._tls: dict[str, Any] | None = None
        self._auth_user: str | None = None
        self._encoded = ""

    def _session_fields(
        self, client: str, helo: str | None, tls: dict[str, Any] | None, auth_user: str | None
    ) -> str:
        self._client, self._helo, self._tls, self._auth_user = client, helo, tls, auth_user
        tls_text = "null" if tls is None else encode(tls)[:-1].decode("ascii")
        self._encoded = (
            f'{self._head}"client":{_string(client)},"helo":{_optional(helo)},'
            f'"tls":{tls_text},"auth_user":{_optional(auth_user)}'
        )
        return self._encoded

    def line(
        self,
        *,
        time: float,
        queue_id: str | None,
        client: str,
        helo: str | None,
        tls: dict[str, Any] | None,
        auth_user: str | None,
        sender: str | None,
        recipients: Sequence[str],
        size: int | None,
        reply: tuple[int, str | None, str],
        rule: str | None,
        seconds: float,
        outcome: str,
    ) -> bytes:
        """The message's line, newline included."""
        code, enhanced, text = reply
        fixed = self._encoded
        if (
            client is not self._client
            or helo is not self._helo
            or tls is not self._tls
            or auth_user is not self._auth_user
        ):
            fixed = self._session_fields(client, helo, tls, auth_user)
        to = ",".join([_string(recipient) for recipient in recipients])
        return (
            f'{{"type":"message","time":"{rfc3339(time)}","queue_id":{_optional(queue_id)},'
            f'{fixed},"sender":{_optional(sender)},"recipients":[{to}],'
            f'"size":{"null" if size is None else int.__repr__(size)},'
            f'"reply":{{"code":{int.__repr__(code)},"enhanced":{_optional(enhanced)},'
            f'"text":{_string(text)}}},"rule":{_optional(rule)},'
            f'"seconds":{float.__repr__(round(seconds, 6))},"outcome":{_string(outcome)}}}\n'
        ).encode("ascii")
