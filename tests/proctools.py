"""Watching real processes through /proc, and waiting without sleeping blind.

Used by the supervisor, daemon, pidfile and privilege tests: they start the
real server, then look at its processes the way an operator would.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
PROC = Path("/proc")


def wait_until(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; return that. Bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces ("blackhole: worker 1").
    return text[text.rindex(")") + 2 :].split()


def state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def session_id(pid: int) -> int:
    fields = _stat_fields(pid)
    assert fields is not None, f"no process {pid}"
    return int(fields[3])


def alive(pid: int) -> bool:
    """Running (a zombie whose parent is init in a container does not count)."""
    return state(pid) not in (None, "Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return sorted(found)


def tree(pid: int) -> list[int]:
    """``pid`` and every live process under it (a supervisor, its workers, theirs)."""
    pids = [pid]
    for child in children(pid):
        pids += tree(child)
    return pids


def cmdline(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def workers(pid: int) -> dict[int, int]:
    """``{worker number: pid}`` for the live workers of supervisor ``pid``."""
    found = {}
    for child in children(pid):
        title = cmdline(child)
        if title.startswith("blackhole: worker "):
            found[int(title.split()[-1])] = child
    return found


def status(pid: int) -> dict[str, str]:
    lines = (PROC / str(pid) / "status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def kill_quietly(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def send_mail(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> dict[str, object]:
    with smtplib.SMTP(host, port, timeout=timeout) as client:
        return dict(client.sendmail("a@example.com", ["b@example.com"], "Subject: t\r\n\r\nhi\r\n"))


class MailPump:
    """Sends one message per connection, back to back, in a thread, until stopped.

    ``results`` records ``"ok"``, ``"bounced"`` (the final reply was 4xx/5xx,
    as the mode asked), ``"refused"`` (connect refused: a listener was
    missing) or the exception of any other failure, in order.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MailPump:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                refused = send_mail(self.port, timeout=5)
                self.results.append("ok" if not refused else f"rejected {refused}")
            except ConnectionRefusedError:
                self.results.append("refused")
            except smtplib.SMTPDataError:
                self.results.append("bounced")  # the mode said so: an answer, not a failure
            except (smtplib.SMTPException, OSError) as exc:
                self.results.append(repr(exc))

    def count(self, what: str = "ok") -> int:
        return sum(1 for result in self.results if result == what)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), "the mail pump did not stop"


def zombies(pid: int) -> list[int]:
    """Children of ``pid`` that have exited and that it has not waited for."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == pid and fields[0] == "Z":
                found.append(int(entry.name))
    return sorted(found)


# Run with ``python3 -c`` inside a PID namespace whose init is under test: a
# child forks a grandchild and exits, so the kernel re-parents the grandchild
# to the namespace's init (wait(2)). The grandchild waits until that happened,
# prints its pid as this /proc names it (proc(5) NSpid, first field) and
# exits; the script returns only once the grandchild is gone (EOF on a pipe
# only the grandchild holds), so its zombie, if any, is there to be seen.
MAKE_ORPHAN = """
import os, time
r, w = os.pipe()
if os.fork() == 0:
    os.close(r)
    if os.fork() == 0:
        while os.getppid() != 1:
            time.sleep(0.01)
        status = open("/proc/self/status").read()
        print([l for l in status.splitlines() if l.startswith("NSpid:")][0].split()[1], flush=True)
    os._exit(0)
os.close(w)
while os.read(r, 1):
    pass
os.wait()
"""
