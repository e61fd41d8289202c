"""How fast a ``Blackhole`` starts, and the supervisor switch it relies on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blackhole.testing import Blackhole
from tests.e2e import Factory, config_file


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_start_method_is_honoured_without_a_user_switch(
    server_factory: Factory, tmp_path: Path, method: str
) -> None:
    """BLACKHOLE_WORKER_START applied only after a user switch; the testing API needs fork."""
    config = config_file(tmp_path, "mailname = mx.test\nlisten = 127.0.0.1:0\n")
    server = server_factory(config, "-d", env={"BLACKHOLE_WORKER_START": method})
    server.wait_for(rf"worker 1 starting \(pid \d+, {method}\)")
    assert server.stop() == 0


def test_start_up_time_is_measured() -> None:
    """Not a benchmark (the machine is shared): a sanity bound, and the figure in the output."""
    started = time.monotonic()
    with Blackhole(lmtp=True) as bh:
        ready = time.monotonic() - started
        assert bh.stats()["workers"] == 1
    print(f"ready in {ready:.3f}s")
    assert ready < 10
