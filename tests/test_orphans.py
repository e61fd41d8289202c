"""The supervisor as PID 1 reaps orphans, and only orphans.

In a container the server is the init of its PID namespace: every orphan
there becomes its child, and a zombie it never waits for stays forever.
The end-to-end tests run the real server as PID 1 of a new PID namespace
(``unshare --pid --fork``, root only), make an orphan inside it with
``nsenter``, and look for zombies from outside.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blackhole.supervisor import orphans
from tests.e2e import config_file
from tests.proctools import MAKE_ORPHAN, children, state, wait_until, workers, zombies
from tests.serverproc import READY_MARK, ServerProcess

# --- finding zombies in /proc ------------------------------------------------------


def _stat(proc: Path, pid: int, comm: str, state: str, ppid: int) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) {state} {ppid} 1 1 0 -1\n")


def test_zombie_children_reads_state_and_parent_past_odd_names(tmp_path: Path) -> None:
    _stat(tmp_path, 10, "sh", "Z", 1)
    _stat(tmp_path, 11, "a) Z 1 (b", "S", 1)  # comm may hold ") Z 1 ("
    _stat(tmp_path, 12, "x y", "Z", 1)
    _stat(tmp_path, 13, "sh", "Z", 2)  # someone else's zombie
    _stat(tmp_path, 14, "sh", "R", 1)
    (tmp_path / "self").mkdir()
    (tmp_path / "15").mkdir()  # vanished before its stat was read
    assert orphans.zombie_children(1, tmp_path) == [10, 12]


def test_reap_orphans_leaves_known_children_to_their_owner(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", ""])
    wait_until(lambda: state(child.pid) == "Z", what="the child to exit")
    assert orphans.reap_orphans({child.pid}) == []
    assert state(child.pid) == "Z"  # still there for Popen.wait to read
    assert child.wait() == 0


# --- the real server as PID 1 ------------------------------------------------------

needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
    reason="needs root and util-linux unshare/nsenter",
)


def _pump(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


@pytest.fixture
def init_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    """The server as PID 1 of a new PID namespace; yields it and its host pid."""
    config = config_file(tmp_path, "mailname = mx.test\nlisten = 127.0.0.1:0\nworkers = 2\n")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
         sys.executable, "-m", "blackhole", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    server = ServerProcess(proc, lines)
    try:
        line = server.wait_for(READY_MARK, 30)
        port = re.search(r"smtp://127\.0\.0\.1:(\d+)", line)
        assert port is not None, line
        server.listeners = [("smtp", "127.0.0.1", int(port.group(1)))]
        [init] = children(proc.pid)  # unshare's one child: the server, PID 1 inside
        yield server, init
    finally:
        # SIGTERM first: a server that stops removes its temporary
        # directories at once; a killed one leaves them to the next start.
        if proc.poll() is None:
            for pid in children(proc.pid):
                os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                for pid in children(proc.pid):
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
        proc.wait(15)


def _orphan(init: int) -> int:
    """Make an orphan in ``init``'s namespace; return its host pid once it has exited."""
    # nsenter enters the PID namespace only, so /proc (NSpid) is the host's.
    done = subprocess.run(
        ["nsenter", "--target", str(init), "--pid", sys.executable, "-c", MAKE_ORPHAN],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout.strip())


@needs_namespaces
def test_server_as_pid_1_reaps_an_orphan(init_server: tuple[ServerProcess, int]) -> None:
    server, init = init_server
    orphan = _orphan(init)
    wait_until(lambda: state(orphan) is None, what=f"the orphan {orphan} to be reaped")
    assert zombies(init) == []
    with smtplib.SMTP("127.0.0.1", server.port(), timeout=10) as client:  # still serving
        assert client.noop()[0] == 250


@needs_namespaces
def test_server_as_pid_1_still_tells_its_workers_deaths_apart(
    init_server: tuple[ServerProcess, int],
) -> None:
    """Reaping orphans must not steal a worker's exit status (SIGKILL stays SIGKILL)."""
    server, init = init_server
    _orphan(init)
    pids = workers(init)
    assert pids, server.text()
    os.kill(pids[1], signal.SIGKILL)
    server.wait_for(r"worker \d+ .*was killed by SIGKILL")
    server.wait_for(r"worker \d+ is serving")
    os.kill(init, signal.SIGTERM)
    assert server.proc.wait(20) == 0, server.text()
