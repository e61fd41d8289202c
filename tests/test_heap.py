"""The worker's heap: start-up objects frozen out of the collector, given back on reload."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
import weakref
from blackhole.server import heap

class Cycle:
    pass

a = Cycle(); a.me = a  # start-up garbage in a cycle: collected, not frozen
gone = weakref.ref(a)
del a
heap.freeze_startup()
frozen = gc.get_freeze_count()
assert frozen > 1000, frozen
assert gone() is None
heap.thaw()
assert gc.get_freeze_count() == 0
print(frozen)
"""


def test_freeze_startup_freezes_the_live_objects_and_thaw_gives_them_back() -> None:
    # A child process: freezing the test process itself would change it for every test.
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 1000
