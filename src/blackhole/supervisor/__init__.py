"""Processes: the supervisor, its workers, signals, pidfile, privilege drop, daemon.

``run(config)`` is what the command line calls: detach first if ``-b``
asked for it, then supervise until stopped. See docs/production.md for how
this behaves in production.
"""

from __future__ import annotations

import logging
import sys

from blackhole.config.model import Config
from blackhole.errors import EX_OK, classify
from blackhole.supervisor.daemon import Launched, Readiness, detach
from blackhole.supervisor.supervisor import Supervisor

__all__ = ["Supervisor", "run"]

log = logging.getLogger("blackhole.supervisor")


def run(config: Config) -> int:
    """Run until stopped; returns the exit code, raises ``BlackholeError`` on failure."""
    readiness = Readiness()
    if config.background:
        launched = detach(config.log_file)
        if isinstance(launched, Launched):
            # The command returns only now, when the daemon listens.
            log.info("running in the background as pid %d: %s", launched.pid, launched.line)
            if config.log_file is not None:  # the line above went to the file: say where
                print(
                    f"blackhole: started as pid {launched.pid}, logging to {config.log_file}",
                    file=sys.stderr,
                )
            return EX_OK
        readiness = launched
    try:
        return Supervisor(config, readiness).run()
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            # A daemon's launcher is still waiting: give it the reason.
            readiness.failed(*classify(exc))
        raise
    finally:
        readiness.failed(EX_OK, "stopped during start-up")
