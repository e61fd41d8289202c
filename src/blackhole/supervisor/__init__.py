"""Processes: the supervisor, its workers, signals, pidfile, privilege drop, daemon.

``run(config)`` is what the command line calls: detach first if ``-b``
asked for it, then supervise until stopped. See docs/production.md for how
this behaves in production.
"""

from __future__ import annotations

import logging

from blackhole.config.model import Config
from blackhole.errors import (
    EX_NOPERM,
    EX_OK,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    BlackholeError,
    ConfigError,
)
from blackhole.supervisor.daemon import Launched, Readiness, detach
from blackhole.supervisor.supervisor import Supervisor

__all__ = ["Supervisor", "run"]

log = logging.getLogger("blackhole.supervisor")


def _message(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, ConfigError):
        return exc.exit_code, "\n".join(exc.problems)
    if isinstance(exc, BlackholeError):
        return exc.exit_code, str(exc)
    if isinstance(exc, PermissionError):
        return EX_NOPERM, str(exc)
    if isinstance(exc, OSError):
        return EX_UNAVAILABLE, str(exc)
    return EX_SOFTWARE, f"internal error: {exc!r}"


def run(config: Config) -> int:
    """Run until stopped; returns the exit code, raises ``BlackholeError`` on failure."""
    readiness = Readiness()
    if config.background:
        launched = detach(config.log_file)
        if isinstance(launched, Launched):
            # The command returns only now, when the daemon listens.
            log.info("running in the background as pid %d: %s", launched.pid, launched.line)
            return EX_OK
        readiness = launched
    try:
        return Supervisor(config, readiness).run()
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            # A daemon's launcher is still waiting: give it the reason.
            readiness.failed(*_message(exc))
        raise
    finally:
        readiness.failed(EX_OK, "stopped during start-up")
