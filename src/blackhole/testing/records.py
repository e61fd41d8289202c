"""The recorded messages as typed values: ``Message``, ``Reply``, ``Headers``.

A record is what ``GET /messages`` answers (OBSERVE.md: the event log's
message line plus the headers, never the body). ``Message.from_json`` turns
one JSON object into a frozen ``Message``; the field names are the event
log's, so a test reads ``bh.messages[0].reply.code`` as the log says
``"reply": {"code": ...}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's last reply to the message: ``code`` 250, ``enhanced`` "2.0.0", ``text``."""

    code: int
    enhanced: str | None
    text: str

    def __str__(self) -> str:
        middle = f" {self.enhanced}" if self.enhanced else ""
        return f"{self.code}{middle} {self.text}"


class Headers(Mapping[str, str]):
    """The message's header fields, looked up by name case-insensitively.

    Header names are case-insensitive (RFC 5322 section 1.2.2), so
    ``headers["subject"]`` is the ``Subject:`` field. A name that occurs more
    than once (``Received``) maps to its first value; ``get_all`` gives them
    all, in order. ``items()`` keeps the names as the sender wrote them.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Sequence[tuple[str, str]]) -> None:
        self._fields = tuple(fields)

    def _matching(self, name: str) -> list[str]:
        folded = name.casefold()
        return [value for key, value in self._fields if key.casefold() == folded]

    def __getitem__(self, name: str) -> str:
        found = self._matching(name)
        if not found:
            raise KeyError(name)
        return found[0]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self._fields:
            if key.casefold() not in seen:
                seen.add(key.casefold())
                yield key

    def __len__(self) -> int:
        return len({key.casefold() for key, _ in self._fields})

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order the message has them."""
        return self._matching(name)

    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every (name, value) pair, in order, duplicates included."""
        return self._fields

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"


@dataclass(frozen=True, slots=True)
class Message:
    """One recorded message (OBSERVE.md, event log message line, plus ``headers``)."""

    queue_id: str | None
    session: str
    worker: int
    listener: str
    client: str
    helo: str | None
    tls: Mapping[str, Any] | None  # {"version": "TLSv1.3", "cipher": ...} or None
    auth_user: str | None
    sender: str | None
    recipients: list[str]
    size: int | None
    reply: Reply
    rule: str | None  # the rule that decided, or None
    seconds: float
    time: str
    headers: Headers
    headers_truncated: bool

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Message:
        reply = record["reply"]
        return cls(
            queue_id=record.get("queue_id"),
            session=record["session"],
            worker=record["worker"],
            listener=record["listener"],
            client=record["client"],
            helo=record.get("helo"),
            tls=record.get("tls"),
            auth_user=record.get("auth_user"),
            sender=record.get("sender"),
            recipients=list(record.get("recipients", [])),
            size=record.get("size"),
            reply=Reply(reply["code"], reply.get("enhanced"), reply["text"]),
            rule=record.get("rule"),
            seconds=record.get("seconds", 0.0),
            time=record.get("time", ""),
            headers=Headers([(name, value) for name, value in record.get("headers", [])]),
            headers_truncated=bool(record.get("headers_truncated", False)),
        )

    def summary(self) -> str:
        """One line for failure messages: who sent what to whom, and the answer."""
        to = ", ".join(self.recipients) or "(no recipients)"
        # None: no MAIL FROM address was read; "" is the null reverse-path, <>.
        sender = "(no sender)" if self.sender is None else f"<{self.sender}>"
        return f"{sender} -> {to}: {self.reply}"
