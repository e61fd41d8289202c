"""Start the real ``blackhole`` command in a subprocess, on ephemeral ports.

Listeners are configured with port 0; the server's start-up line names the
ports the kernel chose, and we wait for that line (an event), never a sleep.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_LISTEN_RE = re.compile(r"(smtps?|lmtp)://(\[[^\]]+\]|[^:\s,]+):(\d+)")
READY_MARK = "listening on"


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    lines: queue.Queue[str]
    log: list[str] = field(default_factory=list)
    listeners: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def port(self, scheme: str = "smtp", index: int = 0) -> int:
        ports = [p for s, _h, p in self.listeners if s == scheme]
        return ports[index]

    def control_port(self) -> int:
        """The control API's port, as its start-up line names it."""
        line = self.wait_for(r"control API serving on http://")
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found is not None, line
        return int(found.group(1))

    def wait_for(self, pattern: str, timeout: float = 10.0) -> str:
        """Wait until a log line matches ``pattern`` (regex); return it."""
        rx = re.compile(pattern)
        for line in self.log:
            if rx.search(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.log.append(line)
            if rx.search(line):
                return line
        raise AssertionError(f"no log line matching {pattern!r}; log so far:\n" + self.text())

    def drain(self) -> None:
        while True:
            try:
                self.log.append(self.lines.get_nowait())
            except queue.Empty:
                return

    def text(self) -> str:
        self.drain()
        return "".join(self.log)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _pump(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


# Sets the limits, then becomes ``python -m blackhole ARGS`` (no preexec_fn:
# unsafe in a process with threads).
_LIMITED = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.executable, [sys.executable, '-m', 'blackhole', *sys.argv[3:]])"
)


def start_server(
    config: Path | None,
    *args: str,
    ready: bool = True,
    timeout: float = 20.0,
    env: dict[str, str] | None = None,
    new_session: bool = False,
    open_files: tuple[int, int] | None = None,
) -> ServerProcess:
    """Run ``python -m blackhole [-c config] args``; wait for its start-up line.

    ``open_files``: the (soft, hard) RLIMIT_NOFILE the server starts with.
    """
    cmd = [sys.executable, "-m", "blackhole"]
    if open_files is not None:
        cmd = [sys.executable, "-c", _LIMITED, *(str(n) for n in open_files)]
    if config is not None:
        cmd += ["-c", str(config)]
    cmd += list(args)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env={**os.environ, **(env or {})},
        start_new_session=new_session,  # its own process group, to signal as a whole
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    server = ServerProcess(proc, lines)
    if ready:
        try:
            line = server.wait_for(READY_MARK, timeout)
        except AssertionError:
            server.stop(signal.SIGKILL)
            raise
        server.listeners = [
            (scheme, host.strip("[]"), int(port)) for scheme, host, port in _LISTEN_RE.findall(line)
        ]
    return server
