"""Starting one worker process, talking to it, and noticing when it is gone.

Two ways to start a worker, both giving it the already-bound listening
sockets (the worker never binds or resolves anything):

- ``spawn`` (the default): a fresh interpreter, ``python -c BOOTSTRAP``, with
  the sockets and its end of the control channel passed as inherited file
  descriptors (``pass_fds``) and its ``WorkerSpec`` sent as the first message.
  Nothing of the supervisor's state leaks into it.
- ``fork``: a copy of the supervisor. Used only when the supervisor has
  dropped privileges and the unprivileged user cannot execute the interpreter
  or read the installed package (a Python under /root, say). This is safe
  because the supervisor never runs an event loop or starts a thread; the
  child closes the supervisor's descriptors and resets its signal handlers.

The process sentinel is the read end of a pipe whose write end only the
worker holds: it becomes readable (EOF) the moment the worker exits, however
it exits, so a dead worker is noticed at once without polling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from blackhole.errors import EX_SOFTWARE
from blackhole.supervisor.messages import ChannelError, FrameReader, Start, WorkerSpec, encode
from blackhole.supervisor.worker_main import BOOTSTRAP, forked_main

SPAWN = "spawn"
FORK = "fork"
# A worker that does not read its channel for this long is as good as hung.
_SEND_TIMEOUT = 1.0
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def describe_exit(code: int) -> str:
    """``exited with code 1`` / ``was killed by SIGKILL`` from a returncode."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class WorkerProcess:
    """A started worker: its pid, sentinel and control channel."""

    def __init__(
        self,
        number: int,
        pid: int,
        sentinel: int,
        control: socket.socket,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.number = number
        self.pid = pid
        self.sentinel = sentinel
        self.control: socket.socket | None = control
        self.control.settimeout(_SEND_TIMEOUT)
        self._popen = popen
        self._reader = FrameReader()
        self.returncode: int | None = None
        self.deadline: float | None = None  # retiring: killed if still there then

    def fds(self) -> list[int]:
        """Descriptors the supervisor holds for this worker (closed in forked children)."""
        fds = [self.sentinel]
        if self.control is not None:
            fds.append(self.control.fileno())
        return fds

    def send(self, message: object) -> bool:
        if self.control is None:
            return False
        try:
            self.control.sendall(encode(message))
        except OSError:
            return False
        return True

    def receive(self) -> list[object] | None:
        """Messages readable now; None once the channel is closed or broken."""
        if self.control is None:
            return None
        try:
            data = self.control.recv(65536)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return []
        except OSError:
            data = b""
        if data:
            try:
                return self._reader.feed(data)
            except ChannelError:
                pass
        self.control.close()
        self.control = None
        return None

    def signal(self, signum: int) -> None:
        # The pid cannot have been reused: we have not reaped it yet.
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def reap(self) -> int:
        """Collect the exit status (call once the sentinel is readable)."""
        if self.returncode is None:
            if self._popen is not None:
                self.returncode = self._popen.wait()
            else:
                _pid, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            os.close(self.sentinel)
            if self.control is not None:
                self.control.close()
                self.control = None
        return self.returncode


def inherited(spec: WorkerSpec) -> tuple[int, ...]:
    """Descriptors besides the sockets a spawned worker keeps: the shared regions."""
    counters = () if spec.counters is None else (spec.counters.fd,)
    return counters if spec.state_fd is None else (*counters, spec.state_fd)


def spawn_process(
    number: int, bootstrap: str, keep: Iterable[int], *, masked: bool = False
) -> WorkerProcess:
    """A fresh interpreter running ``bootstrap`` (its argv: the descriptor of
    its end of the channel, then ``sys.path``), inheriting the ``keep``
    descriptors. ``masked``: SIGTERM, SIGINT and SIGHUP stay blocked in it (the
    mask survives exec) until it unblocks them. ``OSError`` if it cannot be
    executed."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sentinel, held = os.pipe()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS) if masked else None
    try:
        # Our own interpreter running our own bootstrap: no outside input.
        popen = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", bootstrap, str(child.fileno()), *sys.path],
            pass_fds=(held, child.fileno(), *keep),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        parent.close()
        os.close(sentinel)
        raise
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.close()
        os.close(held)
    return WorkerProcess(number, popen.pid, sentinel, parent, popen)


def fork_process(
    number: int, child_main: Callable[[socket.socket], int], close_in_child: Iterable[int]
) -> WorkerProcess:
    """A copy of the supervisor running ``child_main`` on its end of the
    channel and exiting with what it returns; ``close_in_child`` are the
    supervisor's own descriptors."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sentinel, held = os.pipe()
    # Blocked across fork: a SIGTERM meant for the child must not run the
    # supervisor's handler in it; the child unblocks once it has its own.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured there
            code = EX_SOFTWARE
            try:
                os.close(sentinel)
                parent.close()
                for fd in close_in_child:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                code = child_main(child)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else EX_SOFTWARE
            finally:
                # Never return into the supervisor's code (its finally blocks
                # would remove the pidfile and the TLS directory).
                os._exit(code)
    except BaseException:
        parent.close()
        os.close(sentinel)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.close()
        os.close(held)
    return WorkerProcess(number, pid, sentinel, parent)


def spawn_worker(spec: WorkerSpec, sockets: Sequence[socket.socket]) -> WorkerProcess:
    """A fresh interpreter; raises ``OSError`` if it cannot be executed."""
    fds = tuple(sock.fileno() for sock in sockets)
    process = spawn_process(spec.number, BOOTSTRAP, (*fds, *inherited(spec)))
    process.send(Start(replace(spec, fds=fds)))
    return process


def fork_worker(
    spec: WorkerSpec, sockets: Sequence[socket.socket], close_in_child: Iterable[int]
) -> WorkerProcess:
    """A copy of the supervisor; ``close_in_child`` are the supervisor's own fds."""

    def serve(channel: socket.socket) -> int:
        return forked_main(spec, sockets, channel)

    return fork_process(spec.number, serve, close_in_child)


def launch(
    method: str, spec: WorkerSpec, sockets: Sequence[socket.socket], close_in_child: Iterable[int]
) -> WorkerProcess:
    """Start a worker the way ``method`` (``SPAWN`` or ``FORK``) says."""
    if method == FORK:
        return fork_worker(spec, sockets, close_in_child)
    return spawn_worker(spec, sockets)
