#!/usr/bin/env python3
"""Blackhole benchmark: Blackhole against Postfix smtp-sink and aiosmtpd, on loopback.

Every server is started on ephemeral 127.0.0.1 ports, driven by Postfix
``smtp-source`` (alternating between servers, several repetitions), and its CPU
time is read from /proc for the whole process tree. Also measured: TLS handshakes
per second on the SMTPS port (``openssl s_time``) and memory per idle session.
See bench/README.md for the meaning of every column.

    python bench/run.py --quick            # smoke run, under a minute
    python bench/run.py                    # full run, a few minutes
    python bench/run.py --only 1k-reuse,tls --servers smtp-sink,blackhole-1w --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HOST = "127.0.0.1"  # every byte of load goes to loopback, nowhere else
CLK_TCK = os.sysconf("SC_CLK_TCK")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")

# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One smtp-source load: message size, parallel sessions, connection reuse."""

    name: str
    title: str
    length: int
    sessions: int
    reuse: bool
    count: int
    quick_count: int


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("1k-reuse", "1 KB messages, connection reused", 1024, 20, True, 40_000, 2_000),
    Scenario("1k-new", "1 KB messages, new connection per message", 1024, 10, False, 10_000, 1_000),
    Scenario("100k-reuse", "100 KB messages, connection reused", 102_400, 10, True, 4_000, 300),
    Scenario(
        "500-sessions",
        "1 KB messages, 500 concurrent sessions, new connection per message",
        1024,
        500,
        False,
        15_000,
        1_500,
    ),
)
EXTRA_PHASES = ("tls", "idle")
ALL_SERVERS = ("smtp-sink", "aiosmtpd", "blackhole-1w", "blackhole-2w")
REFERENCE = "smtp-sink"
NOISY_PCT = 25.0  # "other CPU %" above this: someone else is using the machine

# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    ticks: int  # utime + stime + cutime + cstime


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


# --------------------------------------------------------------------------- signals

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def install_interrupt_handlers() -> None:
    """Ctrl-C and kill both run the finally blocks that stop the servers.

    SIGINT is set explicitly: a shell that starts us in the background ignores it.
    """
    for sig in INTERRUPTS:
        signal.signal(sig, _interrupt)


# --------------------------------------------------------------------------- servers


class ServerError(RuntimeError):
    """A server did not start or died."""


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@dataclass
class Server:
    """A server under test: how to start it, and the process once it runs."""

    name: str
    kind: str  # "smtp-sink" | "aiosmtpd" | "blackhole"
    workdir: Path
    cert: Path
    key: Path
    workers: int = 1
    idle_capacity: int = 12_000
    port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def has_tls(self) -> bool:
        return self.kind != "smtp-sink"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.kind == "smtp-sink":
            sink = find_tool("smtp-sink")
            if sink is None:
                raise ServerError("smtp-sink not found (apt-get install postfix)")
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            # -m: sessions served at once (default 256 would queue the 500 and idle tests).
            argv = [sink, *user, "-m", str(self.idle_capacity), f"{HOST}:{self.port}", "4096"]
            return argv, env
        if self.kind == "aiosmtpd":
            if not module_available("aiosmtpd"):
                raise ServerError("aiosmtpd not installed (pip install aiosmtpd uvloop)")
            argv = [
                sys.executable,
                str(BENCH_DIR / "aiosmtpd_sink.py"),
                "--host", HOST,
                "--port", str(self.port),
                "--tls-port", str(self.tls_port),
                "--cert", str(self.cert),
                "--key", str(self.key),
            ]  # fmt: skip
            return argv, env
        conf = self.workdir / f"{self.name}.conf"
        conf.write_text(
            f"# written by bench/run.py\n"
            f"listen = {HOST}:{self.port}\n"
            f"tls_listen = {HOST}:{self.tls_port}\n"
            f"tls_cert = {self.cert}\n"
            f"tls_key = {self.key}\n"
            f"workers = {self.workers}\n"
            f"timeout = 60\n"
            f"max_message_size = 512000\n"
        )
        if not module_available("blackhole"):
            src = str(REPO_DIR / "src")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        return [sys.executable, "-m", "blackhole", "-c", str(conf), "-q"], env

    def start(self, timeout: float = 20.0) -> None:
        self.port = free_port()
        self.tls_port = free_port() if self.has_tls else 0
        argv, env = self.command()
        self.log_path = self.workdir / f"{self.name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # own process group: Ctrl-C is ours to relay
            )
        self.wait_ready(timeout)

    def exited(self) -> bool:
        """True once the server's main process has exited (without reaping it)."""
        if self.proc is None or self.proc.returncode is not None:
            return True
        result = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return result is not None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def wait_ready(self, timeout: float) -> None:
        """Poll until the SMTP port greets with 220 and the SMTPS port accepts."""
        deadline = time.monotonic() + timeout
        pending = [(self.port, True)] + ([(self.tls_port, False)] if self.tls_port else [])
        while pending:
            if self.exited():
                raise ServerError(f"exited at start-up: {self.log_tail() or 'no output'}")
            if time.monotonic() > deadline:
                raise ServerError(f"not ready after {timeout:.0f} s: {self.log_tail()}")
            port, greets = pending[0]
            if probe(port, greets):
                pending.pop(0)
            else:
                time.sleep(0.05)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after the grace."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.returncode is not None:
            return
        # The leader is not reaped yet, so its pid (= the group id) cannot be reused.
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait
            while group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not group_alive(proc.pid):
                break
        proc.wait(timeout=grace)


def group_alive(pgid: int) -> bool:
    return any(s.pgrp == pgid and s.state != "Z" for s in all_stats())


def probe(port: int, greets: bool) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            if not greets:
                return True
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(512)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"220")
    except OSError:
        return False


def make_cert(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def make_server(name: str, workdir: Path, cert: Path, key: Path, idle: int) -> Server:
    capacity = max(12_000, idle + 1_000)
    if name.startswith("blackhole"):
        match = re.fullmatch(r"blackhole(?:-(\d+)w)?", name)
        if match is None:
            raise SystemExit(f"bad server name {name!r}: use blackhole-Nw")
        workers = int(match.group(1) or 1)
        return Server(name, "blackhole", workdir, cert, key, workers, capacity)
    if name in ("smtp-sink", "aiosmtpd"):
        return Server(name, name, workdir, cert, key, 1, capacity)
    raise SystemExit(f"unknown server {name!r}; known: {', '.join(ALL_SERVERS)}")


@contextlib.contextmanager
def running(servers: Sequence[Server], status: dict[str, str]) -> Iterator[list[Server]]:
    """Start what starts (recording why the others did not), stop them all at the end."""
    started: list[Server] = []
    try:
        for server in servers:
            try:
                server.start()
            except (ServerError, OSError) as exc:
                status[server.name] = f"did not start: {exc}"
                print(f"  {server.name}: did not start: {exc}", flush=True)
                server.stop()
                continue
            started.append(server)
            status.setdefault(server.name, "ok")
        yield started
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- load runs


@dataclass
class LoadRun:
    server: str
    scenario: str
    repetition: int
    count: int
    ok: bool
    error: str = ""
    delivered: int = 0
    wall_s: float = 0.0
    msgs_per_s: float = 0.0
    server_cpu_s: float = 0.0
    cpu_us_per_msg: float = 0.0
    server_cpu_pct: float = 0.0
    generator_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0  # the rest of the machine: noise if well above zero


def smtp_source_argv(scenario: Scenario, count: int, port: int) -> list[str]:
    tool = find_tool("smtp-source")
    if tool is None:
        raise SystemExit("smtp-source not found: apt-get install postfix (see bench/README.md)")
    return [
        tool,
        "-c",  # print the running count: we check every message got through
        *(["-d"] if scenario.reuse else []),
        "-s", str(scenario.sessions),
        "-m", str(count),
        "-l", str(scenario.length),
        "-M", "localhost",  # no host name lookups in the generator
        "-f", "bench@localhost",
        "-t", "sink@localhost",
        f"{HOST}:{port}",
    ]  # fmt: skip


def last_count(output: bytes) -> int:
    numbers = re.findall(rb"\d+", output)
    return int(numbers[-1]) if numbers else 0


def run_load(server: Server, scenario: Scenario, count: int, repetition: int) -> LoadRun:
    argv = smtp_source_argv(scenario, count, server.port)
    timeout = 20 + count / 100  # far above the slowest server; the run stops by itself
    result = LoadRun(server.name, scenario.name, repetition, count, ok=False)
    if server.exited():
        result.error = f"server died: {server.log_tail()}"
        return result
    cpu0 = settle_cpu(server.pid)
    gen0 = children_cpu_seconds()
    busy0 = system_busy_seconds()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        result.error = f"timed out after {timeout:.0f} s"
        return result
    result.wall_s = time.perf_counter() - t0
    busy = system_busy_seconds() - busy0
    gen = children_cpu_seconds() - gen0
    result.server_cpu_s = settle_cpu(server.pid) - cpu0
    result.delivered = last_count(proc.stdout)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip().splitlines()
        result.error = f"smtp-source exit {proc.returncode}: {' | '.join(stderr[-2:])}"
    elif result.delivered != count:
        result.error = f"only {result.delivered} of {count} messages delivered"
    result.ok = not result.error
    result.msgs_per_s = result.delivered / result.wall_s if result.wall_s else 0.0
    if result.delivered:
        result.cpu_us_per_msg = result.server_cpu_s / result.delivered * 1e6
    result.server_cpu_pct = 100 * result.server_cpu_s / result.wall_s
    result.generator_cpu_pct = 100 * gen / result.wall_s
    other = busy - gen - result.server_cpu_s
    result.other_cpu_pct = max(0.0, 100 * other / result.wall_s)
    return result


def warm_up(server: Server) -> None:
    """A short unmeasured run: imports, caches and every worker get going first."""
    run_load(server, SCENARIOS[0], 200, repetition=-1)


# --------------------------------------------------------------------------- TLS


@dataclass
class TlsRun:
    server: str
    repetition: int
    ok: bool
    error: str = ""
    handshakes: int = 0
    wall_s: float = 0.0
    per_s: float = 0.0
    cpu_us_per_handshake: float = 0.0


def run_tls(server: Server, seconds: int, repetition: int) -> TlsRun:
    result = TlsRun(server.name, repetition, ok=False)
    argv = ["openssl", "s_time", "-connect", f"{HOST}:{server.tls_port}", "-new"]
    argv += ["-time", str(seconds)]
    cpu0 = settle_cpu(server.pid)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=seconds + 20, check=False)
    except subprocess.TimeoutExpired:
        # s_time has no timeout of its own: a handshake the server never answers hangs it.
        result.error = f"openssl s_time still running after {seconds + 20} s: a handshake hung"
        return result
    result.wall_s = time.perf_counter() - t0
    cpu = settle_cpu(server.pid) - cpu0
    match = re.search(rb"(\d+) connections in [\d.]+s", proc.stdout)
    result.handshakes = int(match.group(1)) if match else 0
    if proc.returncode != 0 or not result.handshakes:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        result.error = f"openssl s_time exit {proc.returncode}: {' | '.join(tail[-2:])}"
        return result
    result.ok = True
    result.per_s = result.handshakes / result.wall_s
    result.cpu_us_per_handshake = cpu / result.handshakes * 1e6
    return result


# --------------------------------------------------------------------------- idle sessions


@dataclass
class IdleRun:
    server: str
    sessions: int
    ok: bool
    error: str = ""
    opened: int = 0
    open_s: float = 0.0
    rss_kib_per_session: float = 0.0
    pss_kib_per_session: float = 0.0
    uss_kib_per_session: float = 0.0
    greeting_ms_median: float = 0.0
    greeting_ms_max: float = 0.0


async def _open_session(
    port: int, gate: asyncio.Semaphore, writers: list[asyncio.StreamWriter]
) -> None:
    async with gate:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 15)
        writers.append(writer)
        line = await asyncio.wait_for(reader.readline(), 15)
        if not line.startswith(b"220"):
            raise ConnectionError(f"greeting was {line[:60]!r}")


async def _greeting_ms(port: int) -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    if not line.startswith(b"220"):
        raise ConnectionError(f"greeting was {line[:60]!r}")
    return (time.perf_counter() - t0) * 1000


async def _idle(server: Server, sessions: int, result: IdleRun) -> None:
    writers: list[asyncio.StreamWriter] = []
    loop = asyncio.get_running_loop()
    try:
        await _greeting_ms(server.port)  # one session first: lazily built state is baseline
        before = await loop.run_in_executor(None, _settled_memory, server.pid)
        gate = asyncio.Semaphore(256)
        t0 = time.perf_counter()
        opening = asyncio.gather(
            *(_open_session(server.port, gate, writers) for _ in range(sessions)),
            return_exceptions=True,
        )
        # On Ctrl-C the loop is torn down under us: mark the outcome as seen, quietly.
        opening.add_done_callback(lambda done: done.cancelled() or done.exception())
        outcomes = await asyncio.wait_for(opening, timeout=180)
        result.open_s = time.perf_counter() - t0
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        result.opened = sessions - len(failures)
        after = await loop.run_in_executor(None, _settled_memory, server.pid)
        samples = [await _greeting_ms(server.port) for _ in range(7)]
        result.greeting_ms_median = statistics.median(samples)
        result.greeting_ms_max = max(samples)
        if result.opened:
            result.rss_kib_per_session = (after["rss"] - before["rss"]) / result.opened
            result.pss_kib_per_session = (after["pss"] - before["pss"]) / result.opened
            result.uss_kib_per_session = (after["uss"] - before["uss"]) / result.opened
        if failures:
            result.error = f"{len(failures)} sessions failed, first: {failures[0]!r}"
        elif server.exited():
            result.error = f"server died: {server.log_tail()}"
        result.ok = not result.error
    finally:
        for writer in writers:
            writer.close()
        await asyncio.wait_for(
            asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True), 60
        )


def _settled_memory(pid: int) -> dict[str, int]:
    settle_cpu(pid)
    return tree_memory_kib(pid)


async def _idle_interruptible(server: Server, sessions: int, result: IdleRun) -> bool:
    """Run the idle test; Ctrl-C or SIGTERM cancel it cleanly. True if interrupted."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def cancel() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    for sig in INTERRUPTS:
        loop.add_signal_handler(sig, cancel)
    try:
        await _idle(server, sessions, result)
    except asyncio.CancelledError:
        if not interrupted:
            raise
    finally:
        for sig in INTERRUPTS:
            loop.remove_signal_handler(sig)
    return interrupted


def run_idle(server: Server, sessions: int) -> IdleRun:
    result = IdleRun(server.name, sessions, ok=False)
    try:
        interrupted = asyncio.run(_idle_interruptible(server, sessions, result))
    except (OSError, TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.ok = False
        interrupted = False
    finally:
        install_interrupt_handlers()  # asyncio put the default ones back
    if interrupted:
        raise KeyboardInterrupt
    return result


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE for us and the servers we start; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, target_hard))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Target:
    label: str
    server: str
    measure: str  # a key of summary rows, "idle" or "tls"
    scenario: str
    threshold: float
    relative: bool  # threshold is a ratio to smtp-sink
    at_most: bool
    needs_no_failure: bool = False


TARGETS: tuple[Target, ...] = (
    Target("CPU/msg, 1 KB reused, 1 worker", "blackhole-1w", "cpu", "1k-reuse", 2.0, True, True),
    Target("CPU/msg, 1 KB new conn, 1 worker", "blackhole-1w", "cpu", "1k-new", 2.0, True, True),
    Target("CPU/msg, 100 KB reused, 1 worker", "blackhole-1w", "cpu", "100k-reuse", 1, True, True),
    Target(
        "msg/s, 1 KB reused, 2 workers",
        "blackhole-2w",
        "rate",
        "1k-reuse",
        0.5,
        True,
        False,
        needs_no_failure=True,
    ),
    Target(
        "msg/s, 500 sessions, 2 workers",
        "blackhole-2w",
        "rate",
        "500-sessions",
        0.5,
        True,
        False,
        needs_no_failure=True,
    ),
    Target("RSS per idle session (KiB), 1 worker", "blackhole-1w", "idle", "", 16.0, False, True),
    Target("greeting with sessions open (ms)", "blackhole-1w", "greet", "", 100.0, False, True),
    Target("TLS handshakes/s, 1 worker", "blackhole-1w", "tls", "", 580.0, False, False),
)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def summarize(runs: list[LoadRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> server -> medians over successful runs, failures counted."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        row = table.setdefault(run.scenario, {}).setdefault(
            run.server,
            {"rate": [], "cpu": [], "srv": [], "gen": [], "other": [], "runs": 0, "failed": 0},
        )
        row["runs"] += 1
        if not run.ok:
            row["failed"] += 1
            continue
        row["rate"].append(run.msgs_per_s)
        row["cpu"].append(run.cpu_us_per_msg)
        row["srv"].append(run.server_cpu_pct)
        row["gen"].append(run.generator_cpu_pct)
        row["other"].append(run.other_cpu_pct)
    for rows in table.values():
        for row in rows.values():
            for key in ("rate", "cpu", "srv", "gen", "other"):
                row[key] = median_or_none(row[key])
    return table


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def tls_summary(runs: list[TlsRun]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        row = out.setdefault(run.server, {"rate": [], "cpu": [], "runs": 0, "failed": 0})
        row["runs"] += 1
        if run.ok:
            row["rate"].append(run.per_s)
            row["cpu"].append(run.cpu_us_per_handshake)
        else:
            row["failed"] += 1
    for row in out.values():
        row["rate"] = median_or_none(row["rate"])
        row["cpu"] = median_or_none(row["cpu"])
    return out


def evaluate_targets(
    load: dict[str, dict[str, dict[str, Any]]],
    tls: dict[str, dict[str, Any]],
    idle: dict[str, IdleRun],
) -> list[dict[str, Any]]:
    verdicts = []
    for target in TARGETS:
        measured: float | None = None
        failed = 0
        if target.measure in ("cpu", "rate"):
            rows = load.get(target.scenario, {})
            row = rows.get(target.server)
            if row is not None:
                failed = row["failed"]
                measured = row[target.measure]
                if target.relative:
                    measured = ratio(measured, rows.get(REFERENCE, {}).get(target.measure))
        elif target.measure in ("idle", "greet"):
            run = idle.get(target.server)
            if run is not None and run.opened:
                failed = 0 if run.ok else 1
                measured = (
                    run.rss_kib_per_session if target.measure == "idle" else run.greeting_ms_max
                )
        elif target.measure == "tls":
            tls_row = tls.get(target.server)
            if tls_row is not None:
                measured, failed = tls_row["rate"], tls_row["failed"]
        if measured is None:
            verdict = "n/a"
        else:
            good = measured <= target.threshold if target.at_most else measured >= target.threshold
            if target.needs_no_failure and failed:
                good = False
            verdict = "PASS" if good else "FAIL"
        unit = "× smtp-sink" if target.relative else ""
        verdicts.append(
            {
                "target": target.label,
                "server": target.server,
                "measured": measured,
                "threshold": f"{'<=' if target.at_most else '>='} {target.threshold:g}{unit}",
                "failed_runs": failed,
                "verdict": verdict,
            }
        )
    return verdicts


def machine_info() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name, argv in {
        "postfix": ["postconf", "-d", "-h", "mail_version"],
        "openssl": ["openssl", "version"],
    }.items():
        tool = find_tool(argv[0])
        try:
            out = subprocess.run(
                [tool or argv[0], *argv[1:]], capture_output=True, timeout=10, check=False
            )
            versions[name] = out.stdout.decode().strip()
        except OSError:
            versions[name] = "not found"
    for module in ("aiosmtpd", "uvloop"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = "not installed"
    return {
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


@dataclass
class Results:
    """Everything one invocation measured, raw and in order."""

    machine: dict[str, str]
    counts: dict[str, int]
    status: dict[str, str] = field(default_factory=dict)
    load_runs: list[LoadRun] = field(default_factory=list)
    tls_runs: list[TlsRun] = field(default_factory=list)
    idle: dict[str, IdleRun] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def note(self, phase: str, server: str, rep: int, error: str, text: str) -> None:
        """Print one line of progress; remember a failure."""
        if error:
            self.failures.append(f"{server} {phase}: {error}")
        shown = f"FAILED: {error}" if error else text
        print(f"  [{rep + 1}] {phase:<13} {server:<14} {shown}", flush=True)


def report(results: Results, scenarios: Sequence[Scenario], options: argparse.Namespace) -> str:
    """The markdown report: machine, servers, one table per scenario, TLS, idle, targets."""
    machine, counts = results.machine, results.counts
    load = summarize(results.load_runs)
    tls = tls_summary(results.tls_runs)
    out: list[str] = []
    add = out.append
    add("")
    add(f"## Machine: {machine['nproc']} × {machine['cpu']}, Linux {machine['kernel']}")
    add("")
    add(
        f"Python {machine['python']}, Postfix {machine['postfix']}, {machine['openssl']}, "
        f"aiosmtpd {machine['aiosmtpd']}, uvloop {machine['uvloop']}; "
        f"{options.repeat} repetition(s), medians of successful runs; "
        f"load average at start {machine['loadavg']}."
    )
    add("")
    add("| server | status |")
    add("| --- | --- |")
    for name, text in results.status.items():
        add(f"| {name} | {text} |")
    for scenario in scenarios:
        rows = load.get(scenario.name)
        if not rows:
            continue
        ref = rows.get(REFERENCE, {})
        flags = f"-s {scenario.sessions}{' -d' if scenario.reuse else ''} -l {scenario.length}"
        add("")
        add(f"### {scenario.name}: {scenario.title} ({counts[scenario.name]:,} msgs, {flags})")
        add("")
        add(
            "| server | msg/s | µs CPU/msg | msg/s ÷ sink | CPU/msg ÷ sink "
            "| server CPU % | generator CPU % | other CPU % | failed runs |"
        )
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, row in rows.items():
            add(
                f"| {name} | {fmt(row['rate'])} | {fmt(row['cpu'], 1)} "
                f"| {fmt(ratio(row['rate'], ref.get('rate')), 2)} "
                f"| {fmt(ratio(row['cpu'], ref.get('cpu')), 2)} "
                f"| {fmt(row['srv'])} | {fmt(row['gen'])} | {fmt(row['other'])} "
                f"| {row['failed']}/{row['runs']} |"
            )
    if tls:
        add("")
        add(f"### TLS handshakes on the SMTPS port (openssl s_time -new, {options.tls_seconds} s)")
        add("")
        add("| server | handshakes/s | µs CPU/handshake | failed runs |")
        add("| --- | ---: | ---: | ---: |")
        for name, row in tls.items():
            failed = f"{row['failed']}/{row['runs']}"
            add(f"| {name} | {fmt(row['rate'])} | {fmt(row['cpu'])} | {failed} |")
    if results.idle:
        add("")
        add("### Idle sessions (greeting read on each; servers with one worker)")
        add("")
        add(
            "| server | sessions open | RSS KiB/session | PSS KiB/session | USS KiB/session "
            "| new greeting ms (median / max) | opening took s | error |"
        )
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for run in results.idle.values():
            add(
                f"| {run.server} | {run.opened:,}/{run.sessions:,} "
                f"| {fmt(run.rss_kib_per_session, 2)} | {fmt(run.pss_kib_per_session, 2)} "
                f"| {fmt(run.uss_kib_per_session, 2)} "
                f"| {fmt(run.greeting_ms_median, 1)} / {fmt(run.greeting_ms_max, 1)} "
                f"| {fmt(run.open_s, 1)} | {run.error or '–'} |"
            )
    add("")
    add("### Targets (Blackhole; ratios are to smtp-sink in the same run)")
    add("")
    add("| target | server | measured | threshold | verdict |")
    add("| --- | --- | ---: | --- | --- |")
    for row in evaluate_targets(load, tls, results.idle):
        add(
            f"| {row['target']} | {row['server']} | {fmt(row['measured'], 2)} "
            f"| {row['threshold']} | {row['verdict']} |"
        )
    noise = [r.other_cpu_pct for r in results.load_runs if r.ok]
    if noise and statistics.median(noise) > NOISY_PCT:
        add("")
        add(
            f"**Warning: the machine was busy** (other processes used a median "
            f"{statistics.median(noise):.0f}% of a core during the runs): msg/s figures are "
            f"unreliable; CPU per message and the ratios suffer less."
        )
    if results.failures:
        add("")
        add("### Failed runs")
        add("")
        out.extend(f"- {line}" for line in results.failures)
    return "\n".join(out)


def _plain(value: object) -> object:
    if isinstance(value, set):
        return sorted(value)
    return str(value) if isinstance(value, Path) else value


def to_json(results: Results, options: argparse.Namespace) -> str:
    load = summarize(results.load_runs)
    tls = tls_summary(results.tls_runs)
    opts = {key: _plain(value) for key, value in vars(options).items()}
    document = {
        "machine": results.machine,
        "options": opts,
        "status": results.status,
        "counts": results.counts,
        "load_runs": [asdict(r) for r in results.load_runs],
        "tls_runs": [asdict(r) for r in results.tls_runs],
        "idle_runs": [asdict(r) for r in results.idle.values()],
        "summary": {"load": load, "tls": tls},
        "targets": evaluate_targets(load, tls, results.idle),
        "failures": results.failures,
    }
    return json.dumps(document, indent=2)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Blackhole against smtp-sink and aiosmtpd on loopback."
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only these (comma list, repeatable): "
        + ", ".join([s.name for s in SCENARIOS] + list(EXTRA_PHASES)),
    )
    parser.add_argument(
        "--servers",
        default=",".join(ALL_SERVERS),
        help=f"comma list (default {','.join(ALL_SERVERS)}; blackhole-Nw for N workers)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--tls-seconds", type=int, help="s_time duration (default 5, quick 2)")
    parser.add_argument("--idle-sessions", type=int, help="default 10000, quick 2000")
    parser.add_argument("--json", type=Path, help="write raw runs and summary here")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.tls_seconds = args.tls_seconds or (2 if args.quick else 5)
    args.idle_sessions = args.idle_sessions or (2_000 if args.quick else 10_000)
    known = {s.name for s in SCENARIOS} | set(EXTRA_PHASES)
    args.only = {x for item in args.only for x in item.split(",") if x}
    if args.only - known:
        parser.error(f"unknown --only {sorted(args.only - known)}; known: {sorted(known)}")
    args.servers = [x for x in args.servers.split(",") if x]
    if args.repeat < 1 or args.scale <= 0 or args.idle_sessions < 1:
        parser.error("--repeat, --scale and --idle-sessions must be positive")
    return args


def rotated(items: Sequence[Server], by: int) -> list[Server]:
    by %= max(len(items), 1)
    return [*items[by:], *items[:by]]


def throughput_phase(
    servers: list[Server],
    scenarios: Sequence[Scenario],
    options: argparse.Namespace,
    results: Results,
    with_tls: bool,
) -> None:
    """Every scenario, every repetition, servers alternating (rotated each repetition)."""
    for server in servers:
        warm_up(server)
    for rep in range(options.repeat):
        for scenario in scenarios:
            for server in rotated(servers, rep):
                run = run_load(server, scenario, results.counts[scenario.name], rep)
                results.load_runs.append(run)
                text = f"{run.msgs_per_s:,.0f} msg/s, {run.cpu_us_per_msg:,.1f} µs CPU/msg"
                results.note(scenario.name, server.name, rep, run.error, text)
    if not with_tls:
        return
    tls_servers = [s for s in servers if s.has_tls]
    for rep in range(options.repeat):
        for server in rotated(tls_servers, rep):
            tls_run = run_tls(server, options.tls_seconds, rep)
            results.tls_runs.append(tls_run)
            text = f"{tls_run.per_s:,.0f} handshakes/s"
            results.note("tls", server.name, rep, tls_run.error, text)


def idle_phase(servers: list[Server], options: argparse.Namespace, results: Results) -> None:
    """A fresh server each (a used heap would hide growth), one worker, one at a time."""
    for server in servers:
        if server.workers != 1:
            continue
        with running([server], results.status) as alive:
            if not alive:
                continue
            run = run_idle(server, options.idle_sessions)
            results.idle[server.name] = run
            text = (
                f"{run.rss_kib_per_session:.2f} KiB RSS/session, "
                f"new greeting {run.greeting_ms_max:.1f} ms"
            )
            results.note("idle", server.name, 0, run.error, text)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    for tool in ("smtp-source", "openssl"):
        if find_tool(tool) is None:
            print(f"{tool} not found: see bench/README.md for the install", file=sys.stderr)
            return 69

    def wanted(phase: str) -> bool:
        return not options.only or phase in options.only

    scenarios = [s for s in SCENARIOS if wanted(s.name)]
    counts = {
        s.name: max(1, round((s.quick_count if options.quick else s.count) * options.scale))
        for s in SCENARIOS
    }
    # Raised for us (the client side) and inherited by every server we start.
    fd_limit = raise_fd_limit(options.idle_sessions + 2_048)
    if wanted("idle") and fd_limit < options.idle_sessions + 1_024:
        options.idle_sessions = max(1, fd_limit - 1_024)
        print(f"RLIMIT_NOFILE is {fd_limit}: {options.idle_sessions} idle sessions", flush=True)
    install_interrupt_handlers()
    results = Results(machine_info(), counts)
    started_at = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="blackhole-bench-") as tmp:
            workdir = Path(tmp)
            cert, key = make_cert(workdir)

            def build() -> list[Server]:
                idle = options.idle_sessions
                return [make_server(n, workdir, cert, key, idle) for n in options.servers]

            if scenarios or wanted("tls"):
                print(f"Throughput phase: {', '.join(options.servers)}", flush=True)
                with running(build(), results.status) as servers:
                    throughput_phase(servers, scenarios, options, results, wanted("tls"))
            if wanted("idle"):
                print(f"Idle phase: {options.idle_sessions:,} sessions per server", flush=True)
                idle_phase(build(), options, results)
    except KeyboardInterrupt:
        print("\ninterrupted: every server was stopped", file=sys.stderr)
        return 130
    print(report(results, scenarios, options))
    print(f"\n(total {time.monotonic() - started_at:.0f} s)")
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(to_json(results, options))
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
