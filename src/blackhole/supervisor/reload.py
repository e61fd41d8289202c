"""SIGHUP helpers: what a new config may change, and the listening sockets it needs.

Pure decisions plus the binding of listeners that are new; the supervisor
commits the result only when every step succeeded, so a broken new config
leaves the running server exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from blackhole.config.classic import reload_config
from blackhole.config.model import Config, Listener
from blackhole.observe.logs import setup_logging
from blackhole.server.app import listener_keys
from blackhole.server.mailname import resolve_mailname
from blackhole.server.sockets import bind_listener
from blackhole.server.unixsock import release
from blackhole.supervisor.hubsockets import load_token
from blackhole.supervisor.messages import Settings
from blackhole.supervisor.tlsfiles import TLSStore

log = logging.getLogger("blackhole.supervisor")

Bound = list[tuple[Listener, socket.socket]]

# These are acted on once, at start-up, before privileges are dropped (the
# control API's port is bound then too, like the SMTP ports, but only once).
_FIXED = ("user", "group", "pidfile", "background", "control_listen")


def keep_fixed(old: Config, new: Config) -> Config:
    """``new`` with the settings a running server cannot change put back, with a warning."""
    for name in _FIXED:
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            log.warning(
                "reload: %s changed from %r to %r; that takes a restart, keeping %r",
                name,
                before,
                after,
                before,
            )
    return replace(new, **{name: getattr(old, name) for name in _FIXED})


@dataclass(slots=True)
class Rebind:
    """The listening sockets for a new config."""

    bound: Bound
    changed: bool  # the set of addresses differs: workers need the new sockets
    added: list[socket.socket] = field(default_factory=list)
    removed: Bound = field(default_factory=list)

    def abandon(self) -> None:
        """The reload failed after binding: give the new ports back."""
        for sock in self.added:
            sock.close()


def rebind(
    current: Sequence[tuple[Listener, socket.socket]], listeners: Sequence[Listener]
) -> Rebind:
    """Keep the sockets of listeners that stay, bind the new ones.

    Listeners are matched as ``Worker.reload`` matches them (address, TLS and
    rank among equal addresses), so a port-0 listener keeps its port. A
    listener whose flags alone changed keeps its socket. Binding happens as
    the user the server runs as by now: a new port below 1024 after the
    privilege drop fails (``PermissionDenied``) and the reload is refused.
    """
    old_keys = listener_keys([listener for listener, _sock in current])
    new_keys = listener_keys(listeners)
    by_key = {key: sock for key, (_listener, sock) in zip(old_keys, current, strict=True)}
    result = Rebind(bound=[], changed=old_keys != new_keys)
    try:
        for key, listener in zip(new_keys, listeners, strict=True):
            sock = by_key.get(key)
            if sock is None:
                sock = bind_listener(listener)
                result.added.append(sock)
            result.bound.append((listener, sock))
    except BaseException:
        result.abandon()
        raise
    kept = set(new_keys)
    result.removed = [
        (listener, sock)
        for key, (listener, sock) in zip(old_keys, current, strict=True)
        if key not in kept
    ]
    return result


def close_all(bound: Sequence[tuple[Listener, socket.socket]]) -> None:
    """Close the supervisor's listening sockets for good, removing UNIX socket files."""
    for listener, sock in bound:
        # While our socket is open nobody else can have bound the path: the
        # file is ours to remove (a later one may be another server's).
        release(listener)
        with contextlib.suppress(OSError):
            sock.close()


@dataclass(slots=True)
class Prepared:
    """A reload that passed every check, ready to be committed."""

    settings: Settings
    rebound: Rebind


def prepare(old: Settings, bound: Bound, tls_store: TLSStore) -> Prepared:
    """Read and check everything a SIGHUP changes, committing nothing.

    Re-reads the config file (keeping the command-line switches and the
    settings fixed at start-up), the control token file, the certificate
    files, the mail name if its setting changed, binds new listeners and
    reopens the log. Raises a
    ``BlackholeError`` (``ConfigError`` with every problem) if anything is
    wrong; new sockets are closed again then.
    """
    config = keep_fixed(old.config, reload_config(old.config))
    load_token(config)  # a token file start-up or -t would refuse refuses the reload
    mailname = old.mailname
    if config.mailname != old.config.mailname:
        mailname = resolve_mailname(config.mailname)
    tls = tls_store.prepare(config, mailname)
    listener_tls = tls_store.prepare_listeners(config)
    rebound = rebind(bound, config.listeners)
    try:
        setup_logging(config)  # reopens the log file: logrotate moved it
    except BaseException:
        rebound.abandon()
        raise
    settings = Settings(config, mailname, tls, old.generation + 1, listener_tls)
    return Prepared(settings, rebound)
