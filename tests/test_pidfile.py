"""The pidfile: written and removed; stale ones do not block, live ones do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from blackhole.supervisor.pidfile import PidFile, process_is_blackhole
from tests.serverproc import ServerProcess

Factory = Callable[..., ServerProcess]
WriteConfig = Callable[[str], Path]


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_acquire_writes_our_pid_and_release_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "bh.pid"
    pidfile = PidFile(path)
    pidfile.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bh.pid"]  # no temporary file left
    pidfile.release()
    assert not path.exists()


@pytest.mark.parametrize(
    "content", ["{dead}\n", "", "garbage\n", "0\n", "99999999999999999999\n", "\u00b2\n"]
)
def test_stale_pidfile_is_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bh.pid"
    path.write_text(content.format(dead=dead_pid()))
    pidfile = PidFile(path)
    pidfile.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    pidfile.release()


def test_a_live_process_that_is_not_blackhole_is_a_recycled_pid(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    sleeper = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        assert not process_is_blackhole(sleeper.pid)
        path = tmp_path / "bh.pid"
        path.write_text(f"{sleeper.pid}\n")
        PidFile(path).acquire()
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{dead}\n", "pid {dead} is not running"),
        ("garbage\n", "it holds no process id"),
        ("", "it holds no process id"),
        ("{live}\n", "pid {live} is running something else"),
    ],
)
def test_stale_pidfile_warning_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, reason: str
) -> None:
    # Regression: a recycled pid (running, not Blackhole) was logged as "not
    # running", and a file with no pid in it as "unreadable".
    command = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    sleeper = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        pids = {"dead": dead_pid(), "live": sleeper.pid}
        path = tmp_path / "bh.pid"
        path.write_text(content.format(**pids))
        pidfile = PidFile(path)
        with caplog.at_level("WARNING", logger="blackhole.supervisor.pidfile"):
            pidfile.acquire()
        pidfile.release()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [r.getMessage() for r in caplog.records] == [
        f"removing stale pidfile {path} ({reason.format(**pids)})"
    ]


def test_release_leaves_a_pidfile_that_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "bh.pid"
    pidfile = PidFile(path)
    pidfile.acquire()
    path.write_text("12345\n")  # a newer server took over
    pidfile.release()
    assert path.read_text() == "12345\n"


def test_server_writes_and_removes_its_pidfile_over_a_stale_one(
    server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = tmp_path / "bh.pid"
    path.write_text(f"{dead_pid()}\n")
    server = server_factory(write_config(f"listen = 127.0.0.1:0\npidfile = {path}\n"))
    assert path.read_text() == f"{server.pid}\n"
    assert "removing stale pidfile" in server.text()
    assert server.stop() == 0
    assert not path.exists()


def test_live_pidfile_blocks_a_second_server(
    server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = tmp_path / "bh.pid"
    config = write_config(f"listen = 127.0.0.1:0\npidfile = {path}\n")
    first = server_factory(config)
    second = subprocess.run(
        [sys.executable, "-m", "blackhole", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 69
    assert f"blackhole: already running as pid {first.pid} (pidfile {path})" in second.stderr
    assert path.read_text() == f"{first.pid}\n"  # untouched
    assert first.stop() == 0
    assert not path.exists()
