"""The mail name: the host name Blackhole greets with (``220 <mailname> ESMTP``).

Resolved once at start-up (and on a reload), in the supervisor, then handed to
the workers as a plain string. ``socket.getfqdn()`` can block for seconds on a
slow resolver, so this must never run on the event loop.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path

from blackhole.config.domain import mailname_problem as _problem
from blackhole.errors import ConfigError

__all__ = ["ETC_MAILNAME", "resolve_mailname", "validate_mailname"]

log = logging.getLogger(__name__)

# Debian policy 11.6 / mailname(5): the host's visible mail name, one line.
ETC_MAILNAME = Path("/etc/mailname")


def validate_mailname(name: str) -> str:
    """Return ``name`` if it can be used in a greeting, else raise ConfigError.

    RFC 5321 rules (a domain or an address literal), the same as the
    ``mailname`` config key's.
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
