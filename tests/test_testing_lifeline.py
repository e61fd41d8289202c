"""A test process killed outright (SIGKILL) takes its ``Blackhole`` server with it.

The test process can die without calling ``stop``: nothing but the lifeline
pipe (supervisor/lifeline.py) then tells the server. Here a child Python
process starts a server through the testing API and is SIGKILLed; the
server, its hub and its workers must all go, and its port must refuse; the
next ``Blackhole`` started removes the files the dead process left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from blackhole.supervisor.lifeline import ENV, take_lifeline
from blackhole.testing import Blackhole
from tests.proctools import alive, tree, wait_until

SCRIPT = textwrap.dedent(
    """
    import sys
    from blackhole.testing import Blackhole

    server = Blackhole(tls=False).start()
    print(server._running().proc.pid, server.port, flush=True)
    sys.stdin.read()  # until the test kills us
    """
)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_sigkilled_test_process_leaves_no_server_behind(
    short_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(short_tmpdir)},
    )
    processes: list[int] = []
    try:
        assert owner.stdout is not None
        pid_text, port_text = owner.stdout.readline().split()
        server, port = int(pid_text), int(port_text)
        processes = tree(server)
        assert len(processes) >= 3, processes  # the supervisor, the hub and a worker
        assert not _refused(port)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        wait_until(
            lambda: not any(alive(pid) for pid in processes),
            timeout=30,
            what=f"the server's processes {processes} to end",
        )
        assert _refused(port)
        # Its config stays in its private directory until the next Blackhole
        # started with the same TMPDIR sees that the owner is gone.
        left = list(short_tmpdir.glob("blackhole-testing-*"))
        assert len(left) == 1, left
        monkeypatch.setattr(tempfile, "tempdir", str(short_tmpdir))
        with Blackhole(tls=False):
            assert not left[0].exists()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pid in processes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_lifeline_that_is_not_a_descriptor_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for value in ("seven", "999999"):
        environ = {ENV: value, "OTHER": "kept"}
        assert take_lifeline(environ) is None
        assert environ == {"OTHER": "kept"}  # taken out: no child inherits it
        assert f"{ENV}={value!r} is not an open descriptor" in caplog.text


def test_the_lifeline_is_taken_out_of_the_environment_and_not_inherited() -> None:
    read, write = os.pipe()
    try:
        os.set_inheritable(read, True)
        environ = {ENV: str(read)}
        assert take_lifeline(environ) == read
        assert environ == {}
        assert not os.get_inheritable(read)
    finally:
        os.close(read)
        os.close(write)
