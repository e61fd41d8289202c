"""200 start/stop cycles of ``Blackhole`` in one process leave nothing behind.

The cycles run in a process of their own (tests/leakcheck_script.py), a
child subreaper with a private temporary directory, so that what it counts
is only what the cycles left: threads, open descriptors, child processes
(a hub or worker orphaned by its supervisor would be adopted by it and
counted) and temporary files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("leakcheck_script.py")
CYCLES = 200


@pytest.mark.timeout(1800)  # ~0.5 s a cycle on an idle machine, 4 s under heavy load
def test_start_stop_cycles_leave_no_thread_fd_process_or_file(tmp_path: Path) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(CYCLES)],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(private)},
        timeout=1700,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    before, after = figures["before"], figures["after"]
    assert after == before, figures
    assert after["children"] == [] and after["temporary"] == []
    assert list(private.iterdir()) == []
    print(f"{CYCLES} cycles in {figures['seconds']:.1f}s")
