"""The ``blackhole`` server as a child process of the test, and what it says at start-up.

``ServerProcess.start`` runs ``sys.executable -m blackhole -c FILE`` (the
interpreter running the tests, never a ``blackhole`` found on PATH) and
waits for its start-up lines, an event rather than a sleep:

- ``control API serving on http://127.0.0.1:PORT``: the control API's port;
- ``listening on smtp://127.0.0.1:PORT, smtps://..., lmtp://...``: every
  listener is bound and every worker serves.

The server holds the read end of a pipe whose write end only this process
has (``supervisor/lifeline.py``): if the test process dies without calling
``stop``, even by SIGKILL, the server sees the pipe close and stops itself.

The ports are the ones the kernel chose for port 0. One daemon thread reads
the server's output for its whole life (a pipe left unread would block the
server's logging) and keeps the last lines for error messages; it ends when
the server's output closes, and ``stop`` joins it, so nothing outlives
``stop``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from blackhole.supervisor.lifeline import ENV as LIFELINE_ENV
from blackhole.supervisor.process import FORK
from blackhole.supervisor.startup import START_METHOD_ENV

READY = re.compile(r"listening on (.*)")
CONTROL = re.compile(r"control API serving on http://\S+:(\d+)")
LISTENER = re.compile(r"(smtps?|lmtp)://(?:\[[^\]]+\]|[^:\s,]+):(\d+)")
KEEP_LINES = 200
STOP_TIMEOUT = 15.0


class StartError(RuntimeError):
    """The server did not come up; the message carries what it logged."""


@dataclass
class _Startup:
    control_port: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[str], lifeline: int) -> None:
        self.proc = proc
        self._lifeline = lifeline  # the write end: closing it stops the server
        self.log: deque[str] = deque(maxlen=KEEP_LINES)
        self._startup = _Startup()
        self._reader = threading.Thread(
            target=self._read, args=(proc.stdout,), name=f"blackhole-log-{proc.pid}", daemon=True
        )
        self._reader.start()

    @classmethod
    def start(cls, config: Path, timeout: float) -> ServerProcess:
        """Run the server on ``config``; wait until it serves. Raises ``StartError``."""
        env = dict(os.environ)
        # Forked rather than spawned hub and worker: one interpreter start-up
        # instead of three, which is most of the start-up time.
        env.setdefault(START_METHOD_ENV, FORK)
        give, keep = os.pipe()  # the server polls the read end; we keep the write end
        env[LIFELINE_ENV] = str(give)
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and package
                [sys.executable, "-m", "blackhole", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                env=env,
                pass_fds=(give,),
            )
        except BaseException:
            os.close(keep)
            raise
        finally:
            os.close(give)
        server = cls(proc, keep)
        if not server._startup.ready.wait(timeout) or server._startup.control_port is None:
            server.stop()
            why = "exited" if proc.returncode not in (None, 0) else f"was not ready in {timeout}s"
            raise StartError(f"blackhole {why}; it said:\n{server.text()}")
        return server

    def _read(self, stream: IO[str]) -> None:
        startup = self._startup
        for line in stream:
            self.log.append(line)
            if startup.ready.is_set():
                continue
            control = CONTROL.search(line)
            if control:
                startup.control_port = int(control.group(1))
            ready = READY.search(line)
            if ready:
                for scheme, port in LISTENER.findall(ready.group(1)):
                    startup.ports.setdefault(scheme, int(port))
                startup.ready.set()
        startup.ready.set()  # the server is gone: stop waiting for it
        stream.close()

    @property
    def control_port(self) -> int:
        assert self._startup.control_port is not None
        return self._startup.control_port

    def port(self, scheme: str) -> int | None:
        return self._startup.ports.get(scheme)

    def text(self) -> str:
        return "".join(self.log)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join()
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
        return code
