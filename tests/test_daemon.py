"""``-b``: the command returns only once the daemon listens, and the daemon is a daemon.

Also systemd's readiness protocol (``Type=notify``), which is the other way
to learn that the server is up.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.proctools import (
    alive,
    children,
    cmdline,
    session_id,
    status,
    wait_until,
    workers,
)
from tests.serverproc import ServerProcess

Factory = Callable[..., ServerProcess]
WriteConfig = Callable[[str], Path]
BASE = "listen = 127.0.0.1:0\nheartbeat_interval = 0.2\nworkers = 2\n"


@pytest.fixture
def daemons() -> Iterator[list[int]]:
    """Pids of daemons a test started; whatever is left is stopped at the end."""
    started: list[int] = []
    yield started
    for pid in started:
        if alive(pid):
            workers = children(pid)
            os.kill(pid, signal.SIGKILL)
            for worker in workers:
                if alive(worker):
                    os.kill(worker, signal.SIGKILL)


def background(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blackhole", "-c", str(config), "-b"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ.copy(),
    )


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    # Its parent is init (or whoever reaps orphans here): poll /proc, no wait().
    wait_until(lambda: not alive(pid), what=f"daemon {pid} to exit")


def test_background_returns_once_listening_and_detaches_properly(
    write_config: WriteConfig, tmp_path: Path, daemons: list[int]
) -> None:
    pidfile = tmp_path / "bh.pid"
    done = background(write_config(BASE + f"pidfile = {pidfile}\n"))
    assert done.returncode == 0, done.stderr
    pattern = r"running in the background as pid (\d+): .*smtp://127.0.0.1:(\d+)"
    found = re.search(pattern, done.stderr)
    assert found is not None, done.stderr
    pid, port = int(found.group(1)), int(found.group(2))
    daemons.append(pid)
    # Listening already, first try: the command did not return early.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        assert conn.recv(1024).startswith(b"220 ")
    assert pidfile.read_text() == f"{pid}\n"
    assert cmdline(pid) == "blackhole: master"
    assert len(workers(pid)) == 2
    assert [c for c in children(pid) if cmdline(c) == "blackhole: hub"]
    # Its own session, and not its leader (so it can never get a terminal).
    assert session_id(pid) not in (session_id(os.getpid()), pid)
    for fd in (0, 1, 2):
        assert Path(f"/proc/{pid}/fd/{fd}").readlink() == Path("/dev/null")
    assert Path(f"/proc/{pid}/cwd").readlink() == Path("/")
    assert status(pid)["Umask"] == "0022"
    stop(pid)
    assert not pidfile.exists()


def test_background_output_goes_to_the_log_file(
    write_config: WriteConfig, tmp_path: Path, daemons: list[int]
) -> None:
    log = tmp_path / "bh.log"
    done = background(write_config(BASE + f"log_file = {log}\n"))
    assert done.returncode == 0, done.stderr
    line = next(line for line in log.read_text().splitlines() if "listening on" in line)
    pid = int(re.findall(r"\(pid (\d+)\)", line)[-1])
    daemons.append(pid)
    for fd in (1, 2):
        assert Path(f"/proc/{pid}/fd/{fd}").readlink() == log
    stop(pid)
    assert "stopped" in log.read_text()


def test_background_failure_is_reported_by_the_command(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pidfile = tmp_path / "bh.pid"
        done = background(write_config(f"listen = 127.0.0.1:{port}\npidfile = {pidfile}\n"))
    assert done.returncode == 69
    assert f"cannot bind smtp://127.0.0.1:{port}: address already in use" in done.stderr
    assert not pidfile.exists()


def test_background_config_problem_is_reported_with_exit_64(write_config: WriteConfig) -> None:
    done = background(write_config(BASE + "user = no-such-user-here\n"))
    assert done.returncode == 64
    assert "blackhole: user 'no-such-user-here' does not exist" in done.stderr


def test_systemd_is_told_when_the_server_is_ready_and_stopping(
    server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(10)
        server = server_factory(write_config(BASE), env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert notify.recv(4096).decode() == f"READY=1\nMAINPID={server.pid}"
        server.proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert server.proc.wait(15) == 0


def test_the_shipped_systemd_unit_fits_the_server() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(Path(__file__).resolve().parent.parent / "contrib" / "blackhole.service")
    service = unit["Service"]
    assert service["Type"] == "notify"  # the supervisor sends READY=1 (tested above)
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillMode"] == "mixed"  # TERM to the supervisor, which drains
    assert " -b" not in service["ExecStart"]  # foreground under systemd
    assert int(service["TimeoutStopSec"]) > 30  # above the default grace_period
    assert set(service["RestartPreventExitStatus"].split()) == {"64", "77"}
