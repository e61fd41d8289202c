"""The event log's lines, made without building and encoding a record each time.

A message line is written for every message and a session line for every
session, so their making is on the hot path (OBSERVE.md's budget: the event
log costs at most 30 % CPU per message). ``MessageLines`` belongs to one
session: the fields that stay the same for the session's messages (session,
worker, listener, client, helo, tls, auth_user) are encoded once, again only
when one changes (a new EHLO, STARTTLS, AUTH), and each message encodes only
its own values.

A message line is exactly ``eventlog.encode`` of ``eventlog.message_record``
with ``outcome`` added (the record the ``record`` ring keeps), its reply and
queue id read from the reply's wire text by ``eventlog.parse_reply`` and
``eventlog.queue_id``; a session line is exactly ``eventlog.encode`` of
``eventlog.session_record``: the same fields in the same order, each value
encoded as ``json.dumps`` encodes it (strings by the json module's own ASCII
escaping, integers by their ``repr``, floats by ``seconds_text``). The tests
compare them for arbitrary values.

The reply's part of a line is encoded once per distinct reply (``_Replies``):
most replies are a few constant texts, and an accepted message's differs
from the others only by its queue id.
"""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _string
from typing import Any

from blackhole.observe.eventlog import (
    QUEUE_ID,
    check_end,
    encode,
    parse_reply,
    queue_id,
    rfc3339,
)
from blackhole.protocol.memo import remember

# Distinct replies kept encoded, per process; far more than the replies a
# configuration can give (rules' texts are fixed), so that the cache is
# emptied only under replies that never repeat (queue ids outside the text).
_MAX_REPLIES = 4096


def seconds_text(seconds: float) -> str:
    """``float.__repr__(round(seconds, 6))``, what ``json.dumps`` writes for it.

    One conversion to decimal instead of ``round``'s two and ``repr``'s
    third: ``{:.6f}`` gives the digits ``round`` rounds to (both correctly
    rounded, half to even, from the exact binary value), and below 1e9
    they are at most 15 significant digits, so the float they make has no
    shorter ``repr`` than them without their trailing zeros. ``repr`` writes
    an exponent below 1e-4 (``5e-05``): those take the slow way.
    """
    if 0.0001 <= seconds < 1e9:
        text = f"{seconds:.6f}".rstrip("0")
        return text + "0" if text[-1] == "." else text
    return float.__repr__(round(seconds, 6))


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _reply_json(wire: bytes | None) -> tuple[str, str]:
    """(queue_id, reply) of a message line, JSON-encoded, made the slow way."""
    code, enhanced, text = parse_reply(wire)
    reply = (
        f'{{"code":{int.__repr__(code)},"enhanced":{_optional(enhanced)},"text":{_string(text)}}}'
    )
    return _optional(queue_id(wire)), reply


class _Replies:
    """The JSON of replies seen before: by their wire text, and for replies
    with a queue id, by their text around it (``_template``)."""

    __slots__ = ("_last", "_plain", "_templates")

    def __init__(self) -> None:
        self._plain: dict[bytes, tuple[str, str]] = {}
        # (wire before the queue id, wire after it) -> the reply's JSON around it.
        self._templates: dict[tuple[bytes, bytes], tuple[str, str]] = {}
        # The last of them that served, tried first: accepted messages'.
        self._last: tuple[bytes, bytes, tuple[str, str]] | None = None

    def json(self, wire: bytes | None) -> tuple[str, str]:
        """(queue_id, reply) JSON-encoded: ``queue_id(wire)``, ``parse_reply(wire)``."""
        if wire is None:
            return _reply_json(wire)
        last = self._last
        if last is not None:
            before, after, around = last
            if wire.startswith(before) and wire.endswith(after):
                # The search below would find this queue id: the first
                # "queued as " is in ``before``, and ``after`` starts with
                # white space (or is empty), where \S+ stops.
                queue = wire[len(before) : len(wire) - len(after)]
                if queue.isalnum():
                    text = queue.decode("ascii")
                    return f'"{text}"', f"{around[0]}{text}{around[1]}"
        plain = self._plain.get(wire)
        if plain is not None:
            return plain
        found = QUEUE_ID.search(wire)
        # An ASCII letter-and-digit queue id (bytes.isalnum) is its own JSON
        # text and parses the same whatever its value (_template): the rest decides.
        if found is not None and found.group(1).isalnum():
            start, end = found.span(1)
            key = (wire[:start], wire[end:])
            known = self._templates.get(key)
            if known is None:
                known = self._template(wire, start, end)
                if known is not None:
                    remember(self._templates, key, known, _MAX_REPLIES)
            if known is not None:
                self._last = (key[0], key[1], known)
                text = wire[start:end].decode("ascii")
                return f'"{text}"', f"{known[0]}{text}{known[1]}"
        return remember(self._plain, wire, _reply_json(wire), _MAX_REPLIES)

    @staticmethod
    def _template(wire: bytes, start: int, end: int) -> tuple[str, str] | None:
        """The reply's JSON before and after the queue id at ``wire[start:end]``,
        or None when another queue id would change more than itself in it.

        It would not when the wire is ASCII (decoding maps byte to character)
        and the queue id's whole "queued as " lies in the last line's text,
        after the code and its separator: then the code, the last line, and
        the text's first word (which decides ``enhanced``) are the same for
        any queue id, and the text ends the same number of characters after
        it. ``encode_basestring_ascii`` escapes character by character, so
        the text's JSON is the JSON of the parts around the id.
        """
        if not wire.isascii():
            return None
        stripped = wire.rstrip(b"\r\n")
        cut = stripped.rfind(b"\r\n")
        last_line = 0 if cut < 0 else cut + 2
        if start - len(b"queued as ") < last_line + len(b"250 "):
            return None
        code, enhanced, text = parse_reply(wire)
        after = len(stripped) - end  # characters of the text after the id
        at = len(text) - after - (end - start)
        head = (
            f'{{"code":{int.__repr__(code)},"enhanced":{_optional(enhanced)},'
            f'"text":{_string(text[:at])[:-1]}'
        )
        return head, f"{_string(text[len(text) - after :])[1:]}}}"


_REPLIES = _Replies()


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
        wire: bytes | None,
        client: str,
        helo: str | None,
        tls: dict[str, Any] | None,
        auth_user: str | None,
        sender: str | None,
        recipients: Sequence[str],
        size: int | None,
        rule: str | None,
        seconds: float,
        outcome: str,
    ) -> bytes:
        """The message's line, newline included; ``wire`` is its final reply."""
        fixed = self._encoded
        if (
            client is not self._client
            or helo is not self._helo
            or tls is not self._tls
            or auth_user is not self._auth_user
        ):
            fixed = self._session_fields(client, helo, tls, auth_user)
        queue, reply = _REPLIES.json(wire)
        if len(recipients) == 1:
            to = _string(recipients[0])
        else:
            to = ",".join([_string(recipient) for recipient in recipients])
        return (
            f'{{"type":"message","time":"{rfc3339(time)}","queue_id":{queue},{fixed},'
            f'"sender":{"null" if sender is None else _string(sender)},"recipients":[{to}],'
            f'"size":{"null" if size is None else int.__repr__(size)},"reply":{reply},'
            f'"rule":{"null" if rule is None else _string(rule)},'
            f'"seconds":{seconds_text(seconds)},"outcome":{_string(outcome)}}}\n'
        ).encode("ascii")


def session_line(
    *,
    time: float,
    session: str,
    listener: str,
    client: str,
    duration: float,
    commands: int,
    messages: int,
    tls: dict[str, Any] | None,
    end: str,
) -> bytes:
    """``encode(session_record(...))`` of the same values, newline included."""
    tls_text = "null" if tls is None else encode(tls)[:-1].decode("ascii")
    return (
        f'{{"type":"session","time":"{rfc3339(time)}","session":{_string(session)},'
        f'"listener":{_string(listener)},"client":{_string(client)},'
        f'"duration":{seconds_text(duration)},"commands":{int.__repr__(commands)},'
        f'"messages":{int.__repr__(messages)},"tls":{tls_text},"end":{_string(check_end(end))}}}\n'
    ).encode("ascii")
