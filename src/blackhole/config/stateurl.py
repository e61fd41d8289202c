"""``state_url``: where rule state shared by several servers lives (Redis).

Three forms, as redis-py reads them: ``redis://[[user]:password@]host[:port][/db]``,
``rediss://...`` (the same over TLS) and ``unix:///path/to/redis.sock[?db=N]``.
Only the syntax is checked here (``-t`` does not need Redis to be up); the
hub connects when it starts and reconnects by itself.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from blackhole.errors import ConfigError

if TYPE_CHECKING:
    from blackhole.config.model import Config

SCHEMES = ("redis", "rediss", "unix")
# Redis's default port (redis.conf ``port``) when the URL gives none.
DEFAULT_PORT = 6379


def state_url(text: str) -> str:
    """The URL as written, once its syntax is known to be good; ValueError says why not."""
    if not text:
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, not {shown(text)!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"has a bad port: {shown(text)!r}") from None
    if parts.scheme == "unix":
        if not parts.path.startswith("/") or parts.netloc not in ("", "localhost"):
            raise ValueError(f"unix:// needs an absolute socket path: {shown(text)!r}")
        db = parse_qs(parts.query).get("db", ["0"])[-1]
    else:
        if not parts.hostname:
            raise ValueError(f"names no host: {shown(text)!r}")
        if port == 0:
            raise ValueError(f"has a bad port: {shown(text)!r}")
        db = parts.path.lstrip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"has a bad database number {db!r}: {shown(text)!r}")
    return text


def shown(text: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def client_installed(config: Config) -> None:
    """Start-up and ``-t``: ``state_url`` needs redis-py, an optional extra."""
    if config.state_url is not None and importlib.util.find_spec("redis") is None:
        raise ConfigError(["state_url needs the redis package: pip install 'blackhole[redis]'"])
