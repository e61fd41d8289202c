"""The supervisor's private TLS directory: leftovers of killed supervisors go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from blackhole.supervisor.tlsfiles import TLSStore
from tests.proctools import wait_until


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_supervisors_directory_is_removed_a_live_ones_is_kept(tmp_path: Path) -> None:
    dead = tmp_path / f"blackhole-tls-{_dead_pid()}-abc123"
    (dead / "1").mkdir(parents=True)
    (dead / "1" / "key.pem").write_text("a copy of a private key")
    # A running process whose command line says blackhole: a live supervisor.
    live_process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "blackhole: master"],
        stdin=subprocess.PIPE,  # it lives until we close this or kill it
    )
    try:
        # Until its exec() is done, /proc shows the forked pytest's command line.
        cmdline = Path(f"/proc/{live_process.pid}/cmdline")
        wait_until(lambda: b"blackhole" in cmdline.read_bytes(), what="the stand-in to start")
        live = tmp_path / f"blackhole-tls-{live_process.pid}-def456"
        live.mkdir()
        unrelated = tmp_path / "blackhole-tls-notapid"
        unrelated.mkdir()
        store = TLSStore(str(tmp_path))
        mine = store.root
        assert mine.name.startswith(f"blackhole-tls-{os.getpid()}-")
        assert not dead.exists()
        assert live.exists()
        assert unrelated.exists()
        store.cleanup()
        assert not mine.exists()
    finally:
        live_process.kill()
        live_process.wait()
