"""What /proc says about the servers and the machine: CPU time, memory, listen drops.

Every figure of the benchmark is read here, from the kernel's own counters, for
a server's whole process tree (its workers included, live or reaped).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY_PCT = 25.0  # "other CPU %" above this: someone else is using the machine


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    ticks: int  # utime + stime + cutime + cstime
    user_ticks: int  # utime + cutime: the part spent in user space


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/PID/stat (None if the process is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ProcStat(
        pid=pid,
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        ticks=utime + stime + cutime + cstime,
        user_ticks=utime + cutime,
    )


def all_stats() -> list[ProcStat]:
    stats = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats.append(stat)
    return stats


def process_tree(root: int) -> list[ProcStat]:
    """The root, its descendants, and anything left in its session (the server's own)."""
    stats = all_stats()
    children: dict[int, list[ProcStat]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat)
    found = {s.pid: s for s in stats if root in (s.pid, s.session)}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child.pid)
    return list(found.values())


def tree_cpu_seconds(root: int) -> float:
    """CPU time of a process tree, dead children included.

    Each live process counts utime+stime (all its threads, living and dead) plus
    cutime+cstime, the time of the children it has reaped (which, recursively,
    includes their own reaped children). A process that exits and is reaped
    during a run thus moves from one term to the other and is never lost.
    """
    return sum(s.ticks for s in process_tree(root)) / CLK_TCK


def tree_user_seconds(root: int) -> float:
    """The user-space part of ``tree_cpu_seconds``; the rest is the kernel's (system
    calls, and on loopback the TCP work of both ends that the sender's writes run)."""
    return sum(s.user_ticks for s in process_tree(root)) / CLK_TCK


def role_of(pid: int) -> str:
    """Which part of Blackhole a process is, from its title (``blackhole: worker 2``
    -> ``worker``, ``hub``, ``master``); ``other`` for anything else."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return "other"
    title = argv0.decode(errors="replace").strip()
    if not title.startswith("blackhole: "):
        return "other"
    return title.removeprefix("blackhole: ").split(" ", 1)[0] or "other"


def tree_cpu_by_role(root: int) -> dict[str, float]:
    """``tree_cpu_seconds`` split by ``role_of`` (a reaped worker counts as its parent's)."""
    roles: dict[str, float] = {}
    for stat in process_tree(root):
        role = role_of(stat.pid)
        roles[role] = roles.get(role, 0.0) + stat.ticks / CLK_TCK
    return roles


def tree_memory_kib(root: int) -> dict[str, int]:
    """RSS, PSS and USS (private pages) of a process tree, from smaps_rollup, in KiB."""
    total = {"rss": 0, "pss": 0, "uss": 0}
    for stat in process_tree(root):
        if stat.state == "Z":
            continue
        try:
            text = Path(f"/proc/{stat.pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if not value.strip().endswith("kB"):
                continue
            kib = int(value.split()[0])
            if key == "Rss":
                total["rss"] += kib
            elif key == "Pss":
                total["pss"] += kib
            elif key in ("Private_Clean", "Private_Dirty"):
                total["uss"] += kib
    return total


def settle_cpu(root: int, max_wait: float = 2.0, interval: float = 0.05) -> float:
    """Wait until the server tree stops burning CPU (closing sessions); return its CPU."""
    deadline = time.monotonic() + max_wait
    last = tree_cpu_seconds(root)
    still = 0
    while time.monotonic() < deadline and still < 2:
        time.sleep(interval)
        now = tree_cpu_seconds(root)
        still = still + 1 if now == last else 0
        last = now
    return last


def system_busy_seconds() -> float:
    """CPU time used by the whole machine (all cores, every process, interrupts)."""
    with Path("/proc/stat").open() as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def listen_drops() -> int:
    """TcpExt ListenDrops of this network namespace: SYNs dropped at a full accept queue.

    A dropped SYN is not a failed connection (the client retransmits it after 1 s,
    then 3 s, ...) but it is what makes a server with a short listen backlog crawl.
    The counter is shared by every process in the namespace.
    """
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        if header.startswith("TcpExt:"):
            table = dict(zip(header.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenDrops", 0))
    return 0


def group_alive(pgid: int) -> bool:
    return any(s.pgrp == pgid and s.state != "Z" for s in all_stats())


def event_loop_of(root: int) -> str:
    """'uvloop' when a process of the tree has uvloop's extension mapped, else 'asyncio'."""
    for stat in process_tree(root):
        with contextlib.suppress(OSError):
            if "uvloop" in Path(f"/proc/{stat.pid}/maps").read_text():
                return "uvloop"
    return "asyncio"


@dataclass(frozen=True)
class Usage:
    """The CPU seconds a measured stretch of wall time cost, split by who spent them."""

    wall_s: float
    server_s: float  # the server's process tree
    generator_s: float  # our own reaped children: the load generator
    other_s: float  # the rest of the machine (never below zero): noise
    roles: dict[str, float]  # the server's CPU seconds by role_of (Blackhole's worker, hub...)
    server_user_s: float  # the user-space part of server_s

    def shares(self) -> tuple[float, float, float]:
        """The server's, the generator's and the rest's CPU in % of one core (100: one busy)."""
        per_second = 100 / self.wall_s
        return self.server_s * per_second, self.generator_s * per_second, self.other_s * per_second


class Meter:
    """CPU counters read once the server is quiet, then again when ``stop`` is called."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.server0 = settle_cpu(root)
        self.roles0 = tree_cpu_by_role(root)
        self.user0 = tree_user_seconds(root)
        self.generator0 = children_cpu_seconds()
        self.busy0 = system_busy_seconds()
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def stop(self) -> Usage:
        """The usage since the start; the server's part once it has stopped using CPU."""
        wall = self.elapsed()
        busy = system_busy_seconds() - self.busy0
        generator = children_cpu_seconds() - self.generator0
        server = settle_cpu(self.root) - self.server0
        roles = {
            role: seconds - self.roles0.get(role, 0.0)
            for role, seconds in tree_cpu_by_role(self.root).items()
        }
        user = tree_user_seconds(self.root) - self.user0
        return Usage(wall, server, generator, max(0.0, busy - generator - server), roles, user)
