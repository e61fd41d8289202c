"""The event log of OBSERVE.md: one JSON object per line, per message and per session.

``message_record`` and ``session_record`` build the records with exactly the
fields of OBSERVE.md "Event log", as plain JSON values (they also go into the
``record = N`` ring and over the worker channel to ``GET /messages``). Their
keyword-only parameters are the whole of what a record can hold: there is no
parameter for a password or for message content, so neither can reach a line.

``EventLog`` writes them. Several worker processes append to one file, so:

- the file is opened with ``O_APPEND`` by each process, and each record is one
  ``write()`` of one whole line: the kernel positions every append at the end
  of the file atomically, so lines of different workers never interleave or
  overwrite each other. (On standard output that holds for lines up to
  ``PIPE_BUF``, 4096 bytes, when it is a pipe; a regular file has no limit.)
- ``reopen()`` opens the path anew before closing the old descriptor, for
  logrotate: the worker's SIGHUP handler calls it (wiring: ``worker_main``
  makes one ``EventLog(config.event_log)`` when the key is set, passes it to
  the connections, and calls ``reopen`` where it reopens the text log). If the
  path cannot be opened, the old descriptor keeps being written and the error
  is raised for the caller to log.
- a write that fails (disk full) is reported once through ``logging`` and
  otherwise ignored: the event log must never cost a session.

Cost: a line is written for every message, so its making is on the hot path
(OBSERVE.md's budget: the event log on costs at most 30 % CPU per message).
``encode`` keeps one JSON encoder for the process instead of building one per
line, as ``json.dumps`` does for any non-default separator, and ``rfc3339``
formats the date and time once per second; both give exactly the bytes of
``json.dumps`` and ``datetime.isoformat``, which the tests check.
"""

from __future__ import annotations

import json
import json.encoder
import logging
import os
import re
import sys
import time as clock
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from blackhole.observe.layout import SESSION_ENDS

log = logging.getLogger(__name__)

JSON = dict[str, Any]


# The last second formatted: whole seconds since the epoch, "YYYY-MM-DDTHH:MM:SS".
_second = -1
_second_text = ""
_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))


def rfc3339(epoch: float) -> str:
    """``2026-01-31T12:00:00.123Z`` (RFC 3339 5.6, UTC, milliseconds).

    The same text as ``datetime.fromtimestamp(epoch, UTC).isoformat(timespec=
    "milliseconds")`` with ``Z``: microseconds rounded half to even (carrying
    into the second), then cut to milliseconds.
    """
    global _second, _second_text  # noqa: PLW0603 - a per-process cache of one entry
    # math.modf's parts, without its tuple: a float less its integer part is exact.
    second = int(epoch)
    micros = round((epoch - second) * 1_000_000)
    if micros >= 1_000_000:
        micros -= 1_000_000
        second += 1
    elif micros < 0:
        micros += 1_000_000
        second -= 1
    if second != _second:
        _second_text = clock.strftime("%Y-%m-%dT%H:%M:%S", clock.gmtime(second))
        _second = second
    return _second_text + _MILLIS[micros // 1000]


def tls_field(version: str | None, cipher: str | None) -> JSON | None:
    return None if version is None else {"version": version, "cipher": cipher}


def message_record(
    *,
    time: float,
    queue_id: str | None,
    session: str,
    worker: int,
    listener: str,
    client: str,
    helo: str | None,
    tls: JSON | None,
    auth_user: str | None,
    sender: str | None,
    recipients: Sequence[str],
    size: int | None,
    reply: tuple[int, str | None, str],
    rule: str | None,
    seconds: float,
) -> JSON:
    """One message, after its final reply; ``reply`` is (code, enhanced, text)."""
    code, enhanced, text = reply
    return {
        "type": "message",
        "time": rfc3339(time),
        "queue_id": queue_id,
        "session": session,
        "worker": worker,
        "listener": listener,
        "client": client,
        "helo": helo,
        "tls": tls,
        "auth_user": auth_user,
        "sender": sender,
        "recipients": list(recipients),
        "size": size,
        "reply": {"code": code, "enhanced": enhanced, "text": text},
        "rule": rule,
        "seconds": round(seconds, 6),
    }


def session_record(
    *,
    time: float,
    session: str,
    listener: str,
    client: str,
    duration: float,
    commands: int,
    messages: int,
    tls: JSON | None,
    end: str,
) -> JSON:
    """One session, when it ends; ``end`` is one of ``SESSION_ENDS``."""
    return {
        "type": "session",
        "time": rfc3339(time),
        "session": session,
        "listener": listener,
        "client": client,
        "duration": round(duration, 6),
        "commands": commands,
        "messages": messages,
        "tls": tls,
        "end": check_end(end),
    }


def check_end(end: str) -> str:
    """``end``, one of ``SESSION_ENDS``, or ``ValueError``."""
    if end not in SESSION_ENDS:
        raise ValueError(f"unknown session end {end!r}")
    return end


# The queue id in a reply's text: "250 2.0.0 OK: queued as 4F2A91" (Postfix's
# words, which Blackhole's own accept reply uses).
QUEUE_ID = re.compile(rb"queued as (\S+)")


def queue_id(wire: bytes | None) -> str | None:
    """The queue id a reply's wire text names, if any."""
    found = QUEUE_ID.search(wire) if wire else None
    return found.group(1).decode() if found else None


def parse_reply(wire: bytes | None) -> tuple[int, str | None, str]:
    """(code, enhanced, text) of a reply's last line; (0, None, "") for none.

    ``enhanced`` is the RFC 3463 status code (class 2, 4 or 5, three parts)
    that RFC 2034 puts at the start of the text, and ``text`` what follows it.
    """
    if not wire:
        return 0, None, ""
    last = wire.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1].decode("utf-8", "replace")
    code, text = int(last[:3]), last[4:]
    first, _, rest = text.partition(" ")
    if first.count(".") == 2 and first[:1] in "245":
        return code, first, rest
    return code, None, text


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # ensure_ascii: a line is plain ASCII


def _encoder() -> Callable[[Mapping[str, Any]], Iterable[str]]:
    """The encoder ``json.dumps`` would build for ``_ENCODER``'s options, built once.

    CPython's C encoder when there is one (what ``JSONEncoder.iterencode``
    uses), without the check for circular references: a record is a tree of
    plain values made here. Elsewhere the encoder's own ``encode``.
    """
    # Not in typeshed: the C encoder is an implementation detail of json.
    c_make_encoder: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - CPython has it
        return lambda record: (_ENCODER.encode(record),)
    make = c_make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring_ascii,
        None, ":", ",", False, False, True,
    )  # fmt: skip
    return lambda record: make(record, 0)


_iterencode = _encoder()


def encode(record: Mapping[str, Any]) -> bytes:
    """One line: compact JSON, non-ASCII escaped (a line is then plain ASCII).

    Exactly ``json.dumps(record, separators=(",", ":"))`` plus a newline.
    """
    return "".join(_iterencode(record)).encode("ascii") + b"\n"


class EventLog:
    """Appends records to ``path`` (``-``: standard output)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = self._open()
        self._failed = False

    def _open(self) -> int:
        if self.path == "-":
            return os.dup(sys.stdout.fileno())
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.path, flags, 0o640)

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_line(encode(record))

    def write_line(self, line: bytes) -> None:
        """One whole line, made by ``encode`` or ``messageline.MessageLines``."""
        try:
            written = os.write(self._fd, line)
            while written < len(line):
                # One write for the whole line; a short write (a signal, a
                # full pipe) continues where it stopped.
                line = line[written:]
                written = os.write(self._fd, line)
        except OSError as exc:
            if not self._failed:
                log.warning("event log %s: cannot write: %s", self.path, exc.strerror or exc)
                self._failed = True
        else:
            self._failed = False

    def reopen(self) -> None:
        """Open the path again (after logrotate moved it); ``OSError`` keeps the old one."""
        fd = self._open()
        os.close(self._fd)
        self._fd = fd

    def close(self) -> None:
        os.close(self._fd)
