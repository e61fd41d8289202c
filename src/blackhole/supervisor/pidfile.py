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
from pathlib import Path

from blackhole.errors import ConfigError, PermissionDenied, Unavailable

log = logging.getLogger(__name__)

_PROC = Path("/proc")


def process_is_blackhole(pid: int, proc: Path = _PROC) -> bool:
    """True if ``pid`` is a running process that looks like Blackhole."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
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
    return int(text) if text.isdigit() else None


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
        what = "unreadable" if pid is None else f"pid {pid} is not running"
        log.warning("removing stale pidfile %s (%s)", self.path, what)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

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
            # After a privilege drop the directory may be root's (/run): the
            # file stays, and being stale it will not block the next start.
            log.warning(
                "cannot remove pidfile %s: %s (a stale pidfile does not block a start)",
                self.path,
                exc.strerror or exc,
            )
