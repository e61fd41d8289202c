"""The mail name: the host name Blackhole greets with (``220 <mailname> ESMTP``).

Resolved once at start-up (and on a reload), in the supervisor, then handed to
the workers as a plain string. ``socket.getfqdn()`` can block for seconds on a
slow resolver, so this must never run on the event loop.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path

from blackhole.errors import ConfigError

__all__ = ["ETC_MAILNAME", "resolve_mailname", "validate_mailname"]

log = logging.getLogger(__name__)

# Debian policy 11.6 / mailname(5): the host's visible mail name, one line.
ETC_MAILNAME = Path("/etc/mailname")

# RFC 1035 section 2.3.4: a domain name is at most 255 octets.
_MAX_NAME = 255
# The name goes verbatim into replies (RFC 5321 section 4.1.1.1 and 4.2): any
# whitespace or control character would split or corrupt the reply line.
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def _problem(name: str) -> str | None:
    """Why ``name`` cannot be a mail name, or None if it can."""
    if not name:
        return "it is empty"
    if _BAD_CHARS.search(name):
        return "it contains spaces or control characters"
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME:
        return f"it is longer than {_MAX_NAME} octets"
    return None


def validate_mailname(name: str) -> str:
    """Return ``name`` if it can be used in a greeting, else raise ConfigError.

    Deliberately loose: any host name, address literal or even a made-up name
    is fine (this is a test server), as long as it cannot break a reply line.
    """
    problem = _problem(name)
    if problem is not None:
        raise ConfigError(f"mailname {name!r} is not usable: {problem}")
    return name


def _from_etc_mailname(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        # Missing (not Debian), unreadable, a directory: all mean "not set".
        return None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        problem = _problem(line)
        if problem is None:
            return line
        log.warning("ignoring %s: %r is not usable (%s)", path, line, problem)
        return None
    return None


def _from_fqdn(fqdn: Callable[[], str]) -> str:
    try:
        name = fqdn().strip()
    except (OSError, UnicodeError):
        return "localhost"
    if _problem(name) is not None:
        return "localhost"
    return name


def resolve_mailname(
    configured: str | None,
    etc_mailname: Path = ETC_MAILNAME,
    *,
    fqdn: Callable[[], str] = socket.getfqdn,
) -> str:
    """The mail name: ``configured``, else ``/etc/mailname``, else the FQDN.

    - ``configured`` (the ``mailname`` config key) wins; it is validated and a
      bad one raises ``ConfigError``.
    - else the first non-empty line of ``etc_mailname`` that is not a ``#``
      comment, stripped (an unusable line is logged and skipped over to the FQDN);
    - else ``fqdn()`` (``socket.getfqdn``), or ``"localhost"`` if that fails or
      returns nothing usable.

    Blocking (file read, maybe a DNS query): call once at start-up, never on
    the event loop. ``fqdn`` is injectable for tests.
    """
    if configured is not None:
        return validate_mailname(configured)
    from_file = _from_etc_mailname(etc_mailname)
    if from_file is not None:
        return from_file
    return _from_fqdn(fqdn)
