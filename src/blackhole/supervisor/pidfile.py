"""The pidfile: written by the supervisor at start, removed at exit.

A pidfile left behind by a crash (or by a reboot, which recycles pids) must
not stop the next start, and a live server must: the file is stale when its
pid is not running, or is running something that is not Blackhole. The file
is created with its content in one step (write a temporary file, then
``link`` it into place, which fails if the name exists), so that a second
server starting at the same moment never reads a half-written pidfile.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
from pathlib import Path

from blackhole.errors import ConfigError, PermissionDenied, Unavailable

log = logging.getLogger(__name__)

_PROC = Path("/proc")


def process_is_blackhole(pid: int, proc: Path = _PROC) -> bool:
    """True if ``pid`` is a running process that looks like Blackhole."""
    if pid <= 0 or not _pid_exists(pid):
        return False
    try:
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return True  # no /proc to ask: a live pid is taken at its word
    # A recycled pid (after a reboot) belongs to some other program.
    return b"blackhole" in cmdline


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    # Linux pids stay under 2**22 (PID_MAX_LIMIT): a longer number is no pid,
    # and os.kill() would raise OverflowError on it.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 7 else None


def _stale_reason(pid: int | None) -> str:
    """Why a pidfile holding ``pid`` is stale, in words for the log."""
    if pid is None:
        return "it holds no process id"
    if pid > 0 and _pid_exists(pid):
        # A recycled pid: running, but not Blackhole (or this very process).
        return f"pid {pid} is running something else"
    return f"pid {pid} is not running"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def _error(path: Path, action: str, exc: OSError) -> Exception:
    reason = f"cannot {action} pidfile {path}: {exc.strerror or exc}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(reason)
    return ConfigError(reason)


class PidFile:
    """``acquire()`` at start, ``release()`` at exit; release only removes our own."""

    def __init__(self, path: str | os.PathLike[str], pid: int | None = None) -> None:
        self.path = Path(path)
        self.pid = os.getpid() if pid is None else pid
        self.acquired = False
        self._janitor_pipe: int | None = None

    def acquire(self) -> None:
        """Write our pid; raises ``Unavailable`` (exit 69) if Blackhole runs already."""
        tmp = self.path.with_name(f".{self.path.name}.{self.pid}.tmp")
        try:
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{self.pid}\n")
        except OSError as exc:
            raise _error(self.path, "write", exc) from None
        try:
            # Bounded: each pass either creates the file or removes a stale one.
            for _attempt in range(3):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    self._clear_stale()
                    continue
                self.acquired = True
                return
            raise Unavailable(f"cannot create pidfile {self.path}: it keeps reappearing")
        except OSError as exc:
            raise _error(self.path, "write", exc) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _clear_stale(self) -> None:
        pid = _read_pid(self.path)
        if pid is not None and pid != self.pid and process_is_blackhole(pid):
            raise Unavailable(f"already running as pid {pid} (pidfile {self.path})")
        log.warning("removing stale pidfile %s (%s)", self.path, _stale_reason(pid))
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def remove_at_exit_as_root(self) -> None:
        """Leave a tiny root process behind that removes the file once we exit.

        Called just before the privilege drop: the dropped user often cannot
        unlink the file (``/run`` is root's; in sticky ``/tmp`` only the
        owner may). The janitor is double-forked (not our child, so nothing
        counts it as a worker), holds only the read end of a pipe, and wakes
        when the last holder of the write end (this supervisor and the
        workers it forks) has exited, even after a SIGKILL. It then removes
        the file only if it still names this supervisor, and exits. It never
        touches the network or any other file.
        """
        if not self.acquired:
            return
        read_end, write_end = os.pipe()
        first = os.fork()
        if first == 0:  # pragma: no cover - runs in the forked child
            try:
                os.close(write_end)
                os.setsid()
                if os.fork() != 0:
                    os._exit(0)
                _janitor(read_end, self.path, self.pid)
            finally:
                os._exit(0)
        os.close(read_end)
        os.waitpid(first, 0)
        # Not inherited by spawned workers (close-on-exec); forked workers hold
        # it too, which is right: the file goes once everything is gone.
        os.set_inheritable(write_end, False)
        self._janitor_pipe = write_end

    def removable(self) -> bool:
        """Can this process remove the file at exit (after a privilege drop)?"""
        # access(2) as the real user: the directory must be writable and searchable.
        return os.access(self.path.parent, os.W_OK | os.X_OK)

    def release(self) -> None:
        """Remove the file if it still holds our pid (a newer server may own it now)."""
        if not self.acquired:
            return
        self.acquired = False
        try:
            if _read_pid(self.path) != self.pid:
                return
            self.path.unlink()
        except OSError as exc:
            if self._janitor_pipe is not None:
                # Root's directory after the drop: the janitor removes it
                # once the pipe closes, when this process exits.
                log.debug("pidfile %s is left to the janitor: %s", self.path, exc)
                return
            # After a privilege drop the directory may be root's (/run): the
            # file stays, and being stale it will not block the next start.
            log.warning(
                "cannot remove pidfile %s: %s (a stale pidfile does not block a start)",
                self.path,
                exc.strerror or exc,
            )


def _janitor(read_end: int, path: Path, pid: int) -> None:  # pragma: no cover - forked
    """Body of the janitor process: wait for EOF on ``read_end``, then clean up."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        # The supervisor's process group gets these at shutdown; the janitor
        # must outlive it to do its one job.
        signal.signal(sig, signal.SIG_IGN)
    os.closerange(0, read_end)
    os.closerange(read_end + 1, 65536)
    with contextlib.suppress(ImportError):
        import setproctitle  # noqa: PLC0415 - optional, and only in this process

        setproctitle.setproctitle("blackhole: pidfile janitor")
    while True:
        try:
            if not os.read(read_end, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    with contextlib.suppress(OSError):
        if _read_pid(path) == pid:
            path.unlink()
