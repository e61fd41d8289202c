"""``-b``: run in the background, and say truthfully whether that worked.

The command that was typed (the launcher) forks; the child starts a new
session (``setsid``, so no terminal can send it SIGHUP or SIGINT) and forks
again so that it can never reacquire a controlling terminal; the grandchild
is the daemon. It changes to ``/``, sets ``umask 022``, points its standard
input at ``/dev/null`` and its output at the log file (or ``/dev/null``).

The launcher does not return until the daemon reports over a pipe: "ready"
once every worker listens (exit 0, after printing where it listens), or the
error that stopped it (the same message and exit code a foreground start
would have given). This must happen before any thread or event loop exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from blackhole.errors import EX_SOFTWARE, BlackholeError, error_for

log = logging.getLogger(__name__)

_OK = "ok"
_ERROR = "error"


@dataclass(frozen=True, slots=True)
class Launched:
    """In the launcher: the daemon is up."""

    pid: int
    line: str


class Readiness:
    """In the server: how it tells the launcher (if any) that start-up is over."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = fd

    def _send(self, text: str) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            data = text.encode("utf-8", "replace")
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            pass  # the launcher was killed: nobody to tell
        finally:
            os.close(fd)

    def ready(self, line: str) -> None:
        self._send(f"{_OK} {os.getpid()}\n{line}")

    def failed(self, exit_code: int, message: str) -> None:
        self._send(f"{_ERROR} {exit_code}\n{message}")


def _wait_for_daemon(read_fd: int, child: int) -> Launched:
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        # Blocks until the daemon reports or exits (EOF): its start-up has
        # its own time limits, so this wait is bounded by them.
        chunks.append(pipe.read())
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child, 0)  # the intermediate process, which exits at once
    head, _, body = b"".join(chunks).decode("utf-8", "replace").partition("\n")
    word, _, number = head.partition(" ")
    if word == _OK and number.isdigit():
        return Launched(int(number), body)
    if word == _ERROR and number.lstrip("-").isdigit():
        raise error_for(int(number), body)
    error = BlackholeError("the server stopped during start-up without saying why (see its log)")
    error.exit_code = EX_SOFTWARE
    raise error


def _redirect_stdio(log_file: str | None) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    out = null
    if log_file is not None:
        with contextlib.suppress(OSError):
            out = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)


def detach(log_file: str | None) -> Readiness | Launched:
    """Fork into the background. The daemon gets a ``Readiness``; the launcher
    gets ``Launched`` once the daemon is ready, or the daemon's error raised."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child > 0:
        os.close(write_fd)
        return _wait_for_daemon(read_fd, child)
    # The intermediate child: leave the terminal's session, then fork once
    # more so that the daemon is not a session leader (no terminal, ever).
    try:
        os.close(read_fd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.chdir("/")
        os.umask(0o022)
        _redirect_stdio(log_file)
    except BaseException:
        os._exit(EX_SOFTWARE)
    return Readiness(write_fd)
