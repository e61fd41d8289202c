"""Start-up steps of the supervisor that happen once: becoming the user, and
choosing how workers start.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import blackhole
from blackhole.config.model import Config
from blackhole.errors import ConfigError, PermissionDenied
from blackhole.observe.logs import setup_logging
from blackhole.server import unixsock
from blackhole.supervisor import capabilities
from blackhole.supervisor.privileges import Target, drop_privileges
from blackhole.supervisor.process import FORK, SPAWN
from blackhole.supervisor.tlsfiles import TLSStore

log = logging.getLogger("blackhole.supervisor")

# Set to "spawn" or "fork" to force how workers start (tests, odd installs).
START_METHOD_ENV = "BLACKHOLE_WORKER_START"


@dataclass(frozen=True, slots=True)
class Became:
    method: str  # how workers start from now on
    reads_anything: bool  # kept CAP_DAC_READ_SEARCH: reloads read any file


def spawn_needs() -> list[tuple[str, int]]:
    """What a spawned worker must be able to read: the interpreter and the code."""
    needs = [(sys.executable, os.X_OK)]
    package = str(Path(blackhole.__file__).resolve().parent)
    for entry in [*sys.path, package]:
        if entry and Path(entry).is_dir():
            needs.append((entry, os.R_OK | os.X_OK))
    return needs


def start_method(needs: list[tuple[str, int]], who: str | None) -> str:
    """``spawn``, unless forced otherwise or the user cannot run a fresh interpreter."""
    forced = os.environ.get(START_METHOD_ENV, "")
    if forced in (SPAWN, FORK):
        return forced
    for path, mode in needs:
        # access(2) checks as the real user without capabilities: as a worker.
        if not os.access(path, mode):
            # A Python installed under /root, say. Forking is safe here: the
            # supervisor runs no event loop and no thread.
            log.info(
                "user %s cannot read %s: workers are forked from the supervisor, not spawned",
                who,
                path,
            )
            return FORK
    return SPAWN


def check_log_file(config: Config, who: str) -> None:
    """After the drop: the supervisor reopens the log, and the workers can write it."""
    if config.log_file is None:
        return
    try:
        setup_logging(config)
    except ConfigError as exc:
        raise PermissionDenied(f"{exc} (as user {who})") from None
    if not os.access(config.log_file, os.W_OK):
        raise PermissionDenied(
            f"log_file {config.log_file!r} cannot be opened: Permission denied (as user {who})"
        )


def become(target: Target, config: Config, tls_store: TLSStore) -> Became:
    """Drop to ``target`` after binding; raises ``PermissionDenied`` if refused."""
    needs = spawn_needs()  # while every path is still visible to us
    if os.geteuid() == 0:
        tls_store.hand_over(target.uid, target.gid)
        unixsock.hand_over(config.listeners, target.uid, target.gid)
    kept = drop_privileges(target, keep=capabilities.KEPT)
    reads_anything = capabilities.CAP_DAC_READ_SEARCH in kept
    if not reads_anything:
        tls_store.who = target.name
    check_log_file(config, target.name)
    return Became(start_method(needs, target.name), reads_anything)
