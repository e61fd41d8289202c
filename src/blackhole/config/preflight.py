"""``-t``: the checks start-up makes on this host, without starting anything.

Loading a config checks the file on its own; start-up then checks it against
the host: does the user exist, do the TLS files load together, can the log
be written, may the ports be bound. A config test that skipped these passed
files that then stopped the start (exit 64 or 77), so ``-t`` runs them all
and reports every problem at once. It binds nothing and writes nothing: a
server may be running on these ports while its next config is tested.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from blackhole.config.model import Config
from blackhole.config.stateurl import client_installed
from blackhole.errors import BlackholeError, ConfigError

# Linux: ports below this need CAP_NET_BIND_SERVICE (ip(7)).
_UNPRIVILEGED_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
_CAP_NET_BIND_SERVICE = 10  # linux/capability.h


def preflight(config: Config) -> list[str]:
    """Every problem start-up would meet with ``config`` on this host; empty when none."""
    problems: list[str] = []
    for check in (_accounts, _tls_files, _log_file, _control_token, _ports, client_installed):
        try:
            check(config)
        except BlackholeError as exc:
            problems += getattr(exc, "problems", None) or [str(exc)]
    return problems


def _on_demand(module: str, name: str) -> Callable[..., object]:
    # Imported when needed: -t on a plain config needs neither ssl nor the
    # supervisor, and the config package sits below both.
    found: Callable[..., object] = getattr(importlib.import_module(module), name)
    return found


def _accounts(config: Config) -> None:
    if config.user is None and config.group is None:
        return
    # Raises ConfigError for a user or group that does not exist here.
    _on_demand("blackhole.supervisor.privileges", "resolve_target")(config.user, config.group)


def _tls_files(config: Config) -> None:
    # Loads them as start-up does: a key that is not the certificate's, or
    # DH parameters OpenSSL cannot read, pass the loader's PEM sniffing.
    pairs = list(config.listener_tls)  # listeners' cert=/key=
    if config.tls_cert is not None:
        pairs.insert(0, (config.tls_cert, config.tls_key or config.tls_cert))
    if not pairs:
        return
    build = _on_demand("blackhole.server.tls", "build_server_context")
    problems: list[str] = []
    for cert, key in pairs:
        try:
            build(cert, key, config.tls_dhparams, config.less_secure)
        except BlackholeError as exc:
            problems += getattr(exc, "problems", None) or [str(exc)]
    if problems:
        raise ConfigError(problems)


def _control_token(config: Config) -> None:
    # Read as start-up reads it: a file that is missing, empty or holds
    # more than one word stops the start (exit 64).
    _on_demand("blackhole.supervisor.hubsockets", "load_token")(config)


def _log_file(config: Config) -> None:
    if config.log_file is None:
        return
    path = Path(config.log_file)
    # The file is created at start-up if missing: then its directory must be writable.
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise BlackholeError(f"log_file {config.log_file!r} cannot be opened: Permission denied")


def _ports(config: Config) -> None:
    if os.geteuid() == 0 or _can_bind_low_ports():
        return
    try:
        first_free = int(_UNPRIVILEGED_PORT_START.read_text())
    except (OSError, ValueError):
        first_free = 1024
    low = [str(listener) for listener in config.listeners if 0 < listener.port < first_free]
    if low:
        raise BlackholeError(
            f"binding {', '.join(low)} needs root or CAP_NET_BIND_SERVICE"
            f" (ports below {first_free}); start blackhole as root with user = set"
        )


def _can_bind_low_ports() -> bool:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_NET_BIND_SERVICE & 1)
    return False
