"""SASL exchanges for AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195).

Blackhole checks no password. What the client sends decides the answer, the
classic convention: credentials containing ``pass=`` succeed, credentials
containing ``fail=`` fail, anything else succeeds. The decoded credentials
never leave this module: no reply and no event carries them, so they cannot
end up in a log. Only the user name (``Exchange.user``: the PLAIN authcid,
the LOGIN user name, the CRAM-MD5 user) is kept, for rules and the event log.
"""

from __future__ import annotations

import base64
import binascii
import re
from abc import ABC, abstractmethod
from collections.abc import Callable

from blackhole.protocol import replies as R
from blackhole.protocol.replies import Reply

_MARKER = re.compile(r"(?:pass|fail)=", re.IGNORECASE)


def verdict(credentials: bytes) -> Reply:
    """235 unless the credentials say ``fail=``; ``pass=`` always wins."""
    lowered = credentials.lower()
    if b"fail=" in lowered and b"pass=" not in lowered:
        return R.R535_AUTH_FAILED
    return R.R235_AUTH_OK


def decode(text: str) -> bytes | None:
    """A client response: base64, or "=" for an empty one (RFC 4954 section 4)."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class Exchange(ABC):
    """One AUTH exchange: ``start`` then ``step`` until a reply other than 334."""

    user: str | None = None  # who is authenticating, once the client has said

    @abstractmethod
    def start(self, initial: str | None) -> Reply:
        """The first reply, given the initial response if the client sent one."""

    def step(self, text: str) -> Reply:
        if text == "*":
            # RFC 4954 section 4: "*" cancels the exchange with a 501.
            return R.R501_AUTH_CANCELLED
        data = decode(text)
        if data is None:
            if not _MARKER.search(text):
                return R.R501_AUTH_BASE64
            # The classic Blackhole documented the markers sent in clear
            # ("AUTH PLAIN fail=letmein"); that can never be valid base64
            # ("=" only pads the end), so honour it rather than say 501.
            data = text.encode()
        return self.receive(data)

    @abstractmethod
    def receive(self, data: bytes) -> Reply:
        """The reply to one decoded client response."""


class Plain(Exchange):
    """RFC 4616: one message ``authzid NUL authcid NUL passwd``, maybe initial."""

    def start(self, initial: str | None) -> Reply:
        return R.R334_EMPTY if initial is None else self.step(initial)

    def receive(self, data: bytes) -> Reply:
        # RFC 4616 section 2: message = [authzid] NUL authcid NUL passwd.
        parts = data.split(b"\0")
        if len(parts) == 3:
            self.user = _text(parts[1])
        return verdict(data)


class Login(Exchange):
    """The de facto LOGIN mechanism: a ``Username:`` then a ``Password:`` prompt."""

    def __init__(self) -> None:
        self._username: bytes | None = None

    def start(self, initial: str | None) -> Reply:
        return R.R334_USERNAME if initial is None else self.step(initial)

    def receive(self, data: bytes) -> Reply:
        if self._username is None:
            self._username = data
            self.user = _text(data)
            return R.R334_PASSWORD
        return verdict(self._username + b"\0" + data)


class CramMD5(Exchange):
    """RFC 2195: a challenge, answered with ``user SP hex-digest``."""

    def __init__(self, challenge: str) -> None:
        self._challenge = challenge

    def start(self, initial: str | None) -> Reply:
        if initial is not None:
            return R.R501_AUTH_SYNTAX  # CRAM-MD5 has no initial response
        return R.challenge(base64.b64encode(self._challenge.encode()).decode("ascii"))

    def receive(self, data: bytes) -> Reply:
        # RFC 2195 section 2: the response is the user name, a space, the digest.
        self.user = _text(data.rpartition(b" ")[0]) or None
        return verdict(data)


# The mechanisms offered, in the order EHLO and HELP list them (states.py
# derives both from this), each with how to start an exchange.
MECHANISMS: dict[str, Callable[[Callable[[], str]], Exchange]] = {
    "PLAIN": lambda challenge: Plain(),
    "LOGIN": lambda challenge: Login(),
    "CRAM-MD5": lambda challenge: CramMD5(challenge()),
}


def begin(arg: str, challenge: Callable[[], str]) -> tuple[Exchange | None, Reply]:
    """``AUTH mechanism [initial-response]`` -> (the exchange, or None, and its first reply)."""
    mechanism, _, initial = arg.strip().partition(" ")
    if not mechanism:
        return None, R.R501_AUTH_SYNTAX
    make = MECHANISMS.get(mechanism.upper())
    if make is None:
        return None, R.R504_AUTH_MECHANISM
    exchange = make(challenge)
    return exchange, exchange.start(initial.strip() or None)
