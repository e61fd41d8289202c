"""bench/procstats.py's split of a server's CPU into user space and the kernel, read
from /proc for real processes, and the report table made of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.usefixtures("bench_on_path")

# Burns about 0.3 s of its own CPU, in user space (arithmetic) or in the kernel
# (copying from /dev/zero), then says so and waits to be told to exit: its CPU
# is read while it is still alive, as the bench reads a server's.
BURN = """
import os, sys, time
kernel = sys.argv[1] == "kernel"
zero = os.open("/dev/zero", os.O_RDONLY)
n = 0
while time.process_time() < 0.3:
    if kernel:
        os.read(zero, 1 << 20)
    else:
        for i in range(10000):
            n += i
print("done", flush=True)
sys.stdin.readline()
"""


def _burnt(where: str) -> tuple[float, float]:
    """(CPU seconds, user-space seconds) of a process that burnt CPU ``where``."""
    from procstats import tree_cpu_seconds, tree_user_seconds

    proc = subprocess.Popen(
        [sys.executable, "-c", BURN, where],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "done\n"
        return tree_cpu_seconds(proc.pid), tree_user_seconds(proc.pid)
    finally:
        proc.communicate("exit\n", timeout=30)


def test_user_space_and_kernel_time_are_told_apart() -> None:
    cpu, user = _burnt("user")
    assert cpu >= 0.25 and user >= 0.8 * cpu, (cpu, user)
    cpu, user = _burnt("kernel")
    assert cpu >= 0.25 and cpu - user >= 0.5 * cpu, (cpu, user)


def test_kernel_table() -> None:
    from costs import kernel_table
    from scenarios import SCENARIOS

    first, second = SCENARIOS[0], SCENARIOS[1]
    load = {
        first.name: {
            "smtp-sink": {"cpu": 45.0, "user": 8.5},
            "blackhole-1w": {"cpu": 60.5, "user": 29.5},
        },
        second.name: {
            "smtp-sink": {"cpu": 108.0, "user": None},
            "blackhole-1w": {"cpu": 147.0, "user": 81.0},
        },
    }
    assert kernel_table(load, [first, second])[3:] == [
        f"| server | {first.name} | {second.name} |",
        "| --- | ---: | ---: |",
        "| smtp-sink | 8.5 / 36.5 | – |",
        "| blackhole-1w | 29.5 / 31.0 | 81.0 / 66.0 |",
    ]
    assert kernel_table({first.name: {"smtp-sink": {"cpu": 1.0, "user": None}}}, [first]) == []
