#!/usr/bin/env python3
"""Blackhole benchmark: Blackhole against Postfix smtp-sink, classic Blackhole and aiosmtpd.

Every server is started on ephemeral 127.0.0.1 ports, driven by Postfix
``smtp-source`` (alternating between servers, several repetitions), and its CPU
time is read from /proc for the whole process tree. Also measured: TLS handshakes
per second on the SMTPS port (parallel ``openssl s_time`` clients, with
``openssl s_server`` on the same certificate as the ceiling) and memory per idle
session. The classic Blackhole 2.1.19 (PyPI) runs from a private venv the script
builds once. See bench/README.md for the meaning of every column.

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
ALL_SERVERS = (
    "smtp-sink",
    "s_server",
    "aiosmtpd",
    "classic-1w",
    "classic-2w",
    "blackhole-1w",
    "blackhole-2w",
)
REFERENCE = "smtp-sink"
# The classic Blackhole, as issue 5's table measured it: the last release, on uvloop.
# uvloop is pinned below 0.22: from 0.22 on, uvloop's policy raises in
# get_event_loop() when no loop is set, which classic's supervisor calls at start-up
# ("RuntimeError: There is no current event loop in thread 'MainThread'").
CLASSIC_REQUIREMENTS = ("blackhole==2.1.19", "uvloop==0.21.0")
CLASSIC_VERSION = "2.1.19"
# Classic reads a message line by line in Python (about 30 ms per 100 KB message
# here) and listens with asyncio's backlog of 100, so 500 sessions crawl at about
# 120 msg/s behind SYN retries: the full counts would take minutes per run.
# Its rates and CPU per message are measured on a tenth of the messages instead.
CLASSIC_SLOW = ("100k-reuse", "500-sessions")
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


_classic_python: dict[Path, Path | ServerError] = {}


def classic_python(venv: Path) -> Path:
    """The Python of a venv holding classic Blackhole and uvloop; built on first use.

    The venv is private (classic Blackhole is also called ``blackhole`` and must
    not meet this checkout's package) and reused by later runs when it already
    holds the pinned versions. An install failure is remembered for the run.
    """
    cached = _classic_python.get(venv)
    if isinstance(cached, ServerError):
        raise cached
    if cached is not None:
        return cached
    python = venv / "bin" / "python"
    verify = [
        str(python), "-c",
        "import blackhole, uvloop; "
        f"assert blackhole.__version__ == {CLASSIC_VERSION!r}, blackhole.__version__",
    ]  # fmt: skip
    install = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *CLASSIC_REQUIREMENTS],
        verify,
    ]  # fmt: skip

    def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            argv, capture_output=True, timeout=timeout, env=classic_env(), check=False
        )

    try:
        if not python.exists() or run(verify, 60).returncode:
            print(f"  classic: installing {' '.join(CLASSIC_REQUIREMENTS)} in {venv}", flush=True)
            for step in install:
                done = run(step, 600)
                if done.returncode:
                    tail = (done.stderr or done.stdout).decode(errors="replace").strip()
                    raise ServerError(f"{' '.join(step[:4])} failed: {tail[-400:]}")
    except (ServerError, OSError, subprocess.TimeoutExpired) as exc:
        error = exc if isinstance(exc, ServerError) else ServerError(f"venv {venv}: {exc}")
        _classic_python[venv] = error
        raise error from None
    _classic_python[venv] = python
    return python


def classic_env() -> dict[str, str]:
    """Our environment minus what would let the venv see this checkout's blackhole."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@dataclass
class Server:
    """A server under test: how to start it, and the process once it runs."""

    name: str
    kind: str  # "smtp-sink" | "s_server" | "aiosmtpd" | "classic" | "blackhole"
    workdir: Path
    cert: Path
    key: Path
    workers: int = 1
    idle_capacity: int = 12_000
    classic_venv: Path = field(default_factory=Path)
    classic_scale: float = 0.1
    port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def has_tls(self) -> bool:
        return self.kind != "smtp-sink"

    @property
    def has_smtp(self) -> bool:
        """s_server is only there for TLS: it takes no part in the SMTP loads."""
        return self.kind != "s_server"

    def count(self, scenario: Scenario, full: int) -> int:
        """Messages per run of a scenario for this server (classic: less where it crawls)."""
        if self.kind == "classic" and scenario.name in CLASSIC_SLOW:
            return max(1, round(full * self.classic_scale))
        return full

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
        if self.kind == "s_server":
            # The TLS ceiling of this machine: OpenSSL's own server on the same key and
            # defaults. -www: answer and close each connection, never read stdin.
            argv = ["openssl", "s_server", "-accept", f"{HOST}:{self.tls_port}"]
            argv += ["-cert", str(self.cert), "-key", str(self.key), "-quiet", "-www"]
            return argv, env
        if self.kind == "classic":
            python = classic_python(self.classic_venv)
            conf = self.workdir / f"{self.name}.conf"
            # Its own format; timeout at its maximum (180) so that no idle session is
            # dropped while 10,000 are being opened. No user/group: as root it only
            # warns, like this checkout's Blackhole it runs as the caller. No dhparams
            # and no -ls: an ECDSA certificate uses ECDHE, and -ls only drops
            # OP_SINGLE_(EC)DH_USE, which OpenSSL >= 1.1 ignores.
            conf.write_text(
                f"# written by bench/run.py (classic Blackhole {CLASSIC_VERSION} format)\n"
                f"listen = {HOST}:{self.port}\n"
                f"tls_listen = {HOST}:{self.tls_port}\n"
                f"tls_cert = {self.cert}\n"
                f"tls_key = {self.key}\n"
                f"workers = {self.workers}\n"
                f"pidfile = {self.workdir / (self.name + '.pid')}\n"
                f"timeout = 180\n"
                f"max_message_size = 512000\n"
            )
            return [str(python), "-m", "blackhole", "-c", str(conf), "-q"], classic_env()
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
            f"timeout = 180\n"
            f"max_message_size = 512000\n"
        )
        if not module_available("blackhole"):
            src = str(REPO_DIR / "src")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        return [sys.executable, "-m", "blackhole", "-c", str(conf), "-q"], env

    def start(self, timeout: float = 20.0) -> None:
        self.port = free_port() if self.has_smtp else 0
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
        pending = [(self.port, True)] if self.has_smtp else []
        pending += [(self.tls_port, False)] if self.tls_port else []
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


def make_server(
    name: str, workdir: Path, cert: Path, key: Path, options: argparse.Namespace
) -> Server:
    capacity = max(12_000, options.idle_sessions + 1_000)
    extra = {"classic_venv": options.classic_venv, "classic_scale": options.classic_scale}
    for kind in ("blackhole", "classic"):
        if name.startswith(kind):
            match = re.fullmatch(kind + r"(?:-(\d+)w)?", name)
            if match is None:
                raise SystemExit(f"bad server name {name!r}: use {kind}-Nw")
            workers = int(match.group(1) or 1)
            return Server(name, kind, workdir, cert, key, workers, capacity, **extra)
    if name in ("smtp-sink", "aiosmtpd", "s_server"):
        return Server(name, name, workdir, cert, key, 1, capacity, **extra)
    raise SystemExit(f"unknown server {name!r}; known: {', '.join(ALL_SERVERS)}")


def event_loop_of(root: int) -> str:
    """'uvloop' when a process of the tree has uvloop's extension mapped, else 'asyncio'."""
    for stat in process_tree(root):
        with contextlib.suppress(OSError):
            if "uvloop" in Path(f"/proc/{stat.pid}/maps").read_text():
                return "uvloop"
    return "asyncio"


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
            if server.kind in ("aiosmtpd", "classic", "blackhole"):
                status.setdefault(server.name, f"ok, {event_loop_of(server.pid)}")
            else:
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
    listen_drops: int = 0  # SYNs dropped at a full accept queue (whole namespace)


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
    # Far above the slowest server (10 ms per message plus 1 ms per KB); the run
    # stops by itself, this only bounds a hung one.
    timeout = 20 + count * (0.01 + scenario.length / 1024 * 0.001)
    result = LoadRun(server.name, scenario.name, repetition, count, ok=False)
    if server.exited():
        result.error = f"server died: {server.log_tail()}"
        return result
    cpu0 = settle_cpu(server.pid)
    gen0 = children_cpu_seconds()
    busy0 = system_busy_seconds()
    drops0 = listen_drops()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        result.error = f"timed out after {timeout:.0f} s"
        return result
    result.wall_s = time.perf_counter() - t0
    busy = system_busy_seconds() - busy0
    result.listen_drops = listen_drops() - drops0
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
    clients: int
    ok: bool
    error: str = ""
    handshakes: int = 0
    wall_s: float = 0.0
    per_s: float = 0.0
    cpu_us_per_handshake: float = 0.0
    client_us_per_handshake: float = 0.0
    server_cpu_pct: float = 0.0
    client_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0


def run_tls(server: Server, seconds: int, clients: int, repetition: int) -> TlsRun:
    """``clients`` parallel ``openssl s_time -new`` for ``seconds``: full handshakes/s.

    One sequential client measures the latency of a handshake (its own half
    included); several keep the server busy, which is what it can sustain.
    """
    result = TlsRun(server.name, repetition, clients, ok=False)
    argv = ["openssl", "s_time", "-connect", f"{HOST}:{server.tls_port}", "-new"]
    argv += ["-time", str(seconds)]
    limit = seconds + 20  # s_time has no timeout: a handshake never answered hangs it
    cpu0 = settle_cpu(server.pid)
    gen0 = children_cpu_seconds()
    busy0 = system_busy_seconds()
    procs: list[subprocess.Popen[bytes]] = []
    outputs: list[tuple[int, bytes, bytes]] = []
    t0 = time.perf_counter()
    try:
        for _ in range(clients):
            procs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            )
        for proc in procs:
            remaining = max(0.1, limit - (time.perf_counter() - t0))
            out, err = proc.communicate(timeout=remaining)
            outputs.append((proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        result.error = f"openssl s_time still running after {limit} s: a handshake hung"
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    result.wall_s = time.perf_counter() - t0
    busy = system_busy_seconds() - busy0
    gen = children_cpu_seconds() - gen0
    cpu = settle_cpu(server.pid) - cpu0
    for code, out, err in outputs:
        match = re.search(rb"(\d+) connections in [\d.]+s", out)
        count = int(match.group(1)) if match else 0
        if code != 0 or not count:
            tail = (err or out).decode(errors="replace").strip().splitlines()
            result.error = f"openssl s_time exit {code}: {' | '.join(tail[-2:])}"
        result.handshakes += count
    if result.error:
        return result
    result.ok = True
    result.per_s = result.handshakes / result.wall_s
    result.cpu_us_per_handshake = cpu / result.handshakes * 1e6
    result.client_us_per_handshake = gen / result.handshakes * 1e6
    result.server_cpu_pct = 100 * cpu / result.wall_s
    result.client_cpu_pct = 100 * gen / result.wall_s
    result.other_cpu_pct = max(0.0, 100 * (busy - gen - cpu) / result.wall_s)
    return result


def tls_parameters(server: Server) -> str:
    """What one handshake negotiates (``openssl s_client -brief``): protocol, cipher, group."""
    argv = ["openssl", "s_client", "-connect", f"{HOST}:{server.tls_port}", "-brief"]
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        return "s_client timed out"
    found = {}
    for line in (proc.stderr + proc.stdout).decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key in ("Protocol version", "Ciphersuite", "Server Temp Key", "Peer Temp Key"):
            found[key] = value.strip().split(",")[0]
    if not found:
        return "no handshake"
    temp = found.get("Server Temp Key") or found.get("Peer Temp Key", "?")
    return f"{found.get('Protocol version', '?')} {found.get('Ciphersuite', '?')} {temp}"


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
    """One target of issue 5, judged on the figures of this run."""

    label: str
    server: str
    measure: str  # "cpu" | "rate" (a load scenario), "memory" | "greet" (idle), "tls"
    scenario: str
    threshold: float
    at_most: bool
    reference: str = ""  # judged as a ratio to this server's figure; "" = absolute
    unit: str = ""
    needs_no_failure: bool = False


TARGETS: tuple[Target, ...] = (
    Target("server CPU/msg, 1 KB, connection reused, 1 worker", "blackhole-1w", "cpu",
           "1k-reuse", 2.0, True, REFERENCE, "µs"),
    Target("server CPU/msg, 1 KB, new connection per message, 1 worker", "blackhole-1w", "cpu",
           "1k-new", 2.0, True, REFERENCE, "µs"),
    Target("server CPU/msg, 100 KB, connection reused, 1 worker", "blackhole-1w", "cpu",
           "100k-reuse", 1.0, True, REFERENCE, "µs"),
    Target("msg/s, 1 KB, connection reused, 2 workers, no failed run", "blackhole-2w", "rate",
           "1k-reuse", 0.5, False, REFERENCE, "msg/s", needs_no_failure=True),
    Target("msg/s, 500 sessions, 2 workers, no failed or refused connection", "blackhole-2w",
           "rate", "500-sessions", 0.5, False, REFERENCE, "msg/s", needs_no_failure=True),
    Target("memory per idle session (largest of RSS, PSS, USS growth), 1 worker",
           "blackhole-1w", "memory", "", 16.0, True, unit="KiB", needs_no_failure=True),
    Target("new session greeted promptly with the idle sessions open (slowest of 7)",
           "blackhole-1w", "greet", "", 100.0, True, unit="ms", needs_no_failure=True),
    Target("TLS handshakes/s, 1 worker, vs classic Blackhole 1 worker", "blackhole-1w", "tls",
           "", 1.0, False, "classic-1w", "/s"),
    Target("TLS handshakes/s, 2 workers, vs classic Blackhole 2 workers", "blackhole-2w", "tls",
           "", 1.0, False, "classic-2w", "/s"),
)  # fmt: skip


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def fmt_auto(value: float | None) -> str:
    """Three significant figures or so: 26.1, 263, 10,516."""
    if value is None:
        return "–"
    return fmt(value, 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0)


def summarize(runs: list[LoadRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> server -> medians over successful runs, failures counted."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        row = table.setdefault(run.scenario, {}).setdefault(
            run.server,
            {
                "rate": [], "cpu": [], "srv": [], "gen": [], "other": [],
                "runs": 0, "failed": 0, "drops": 0, "count": run.count,
            },
        )  # fmt: skip
        row["runs"] += 1
        row["drops"] += run.listen_drops
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
    keys = ("rate", "cpu", "client_us", "srv", "client", "other")
    for run in runs:
        row = out.setdefault(run.server, {**{k: [] for k in keys}, "runs": 0, "failed": 0})
        row["runs"] += 1
        if run.ok:
            row["rate"].append(run.per_s)
            row["cpu"].append(run.cpu_us_per_handshake)
            row["client_us"].append(run.client_us_per_handshake)
            row["srv"].append(run.server_cpu_pct)
            row["client"].append(run.client_cpu_pct)
            row["other"].append(run.other_cpu_pct)
        else:
            row["failed"] += 1
    for row in out.values():
        for key in keys:
            row[key] = median_or_none(row[key])
    return out


def _target_figures(
    target: Target,
    server: str,
    load: dict[str, dict[str, dict[str, Any]]],
    tls: dict[str, dict[str, Any]],
    idle: dict[str, IdleRun],
) -> tuple[float | None, str]:
    """A server's figure for a target and a failure note ("" when none)."""
    if target.measure in ("cpu", "rate"):
        row = load.get(target.scenario, {}).get(server)
        if row is None:
            return None, ""
        failed = f"{row['failed']}/{row['runs']} runs failed" if row["failed"] else ""
        return row[target.measure], failed
    if target.measure == "tls":
        tls_row = tls.get(server)
        if tls_row is None:
            return None, ""
        failed = f"{tls_row['failed']}/{tls_row['runs']} runs failed" if tls_row["failed"] else ""
        return tls_row["rate"], failed
    run = idle.get(server)
    if run is None or not run.opened:
        return None, (run.error if run is not None else "")
    if target.measure == "greet":
        return run.greeting_ms_max, run.error
    # A forked worker's pages turn private when written (RSS flat, USS up): the
    # largest of the three growths is the memory a session really costs.
    per_session = (run.rss_kib_per_session, run.pss_kib_per_session, run.uss_kib_per_session)
    return max(per_session), run.error


def evaluate_targets(
    load: dict[str, dict[str, dict[str, Any]]],
    tls: dict[str, dict[str, Any]],
    idle: dict[str, IdleRun],
) -> list[dict[str, Any]]:
    verdicts = []
    for target in TARGETS:
        value, failure = _target_figures(target, target.server, load, tls, idle)
        measured = value
        detail = f"{fmt_auto(value)} {target.unit}" if value is not None else ""
        if target.reference:
            ref_value, ref_failure = _target_figures(target, target.reference, load, tls, idle)
            measured = ratio(value, ref_value)
            detail = (
                f"{fmt_auto(value)} vs {fmt_auto(ref_value)} {target.unit} ({target.reference})"
            )
            if ref_value is None:
                detail += f": {target.reference} not measured"
            elif ref_failure:
                detail += f"; {target.reference}: {ref_failure}"
        if target.measure in ("memory", "greet") and target.server in idle:
            run = idle[target.server]
            detail += f"; {run.opened:,}/{run.sessions:,} sessions open"
        if target.measure == "rate" and target.scenario in load:
            drops = load[target.scenario].get(target.server, {}).get("drops")
            if drops:
                detail += f"; {drops:,} SYNs dropped at the accept queue (namespace-wide)"
        if failure:
            detail += f"; {failure}"
        if measured is None:
            verdict = "n/a"
        else:
            good = measured <= target.threshold if target.at_most else measured >= target.threshold
            if target.needs_no_failure and failure:
                good = False
            verdict = "PASS" if good else "FAIL"
        unit = f"× {target.reference}" if target.reference else f" {target.unit}"
        verdicts.append(
            {
                "target": target.label,
                "server": target.server,
                "measured": measured,
                "threshold": f"{'≤' if target.at_most else '≥'} {target.threshold:g}{unit}",
                "detail": detail,
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
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
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
    tls_info: dict[str, str] = field(default_factory=dict)
    idle: dict[str, IdleRun] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def note(self, phase: str, server: str, rep: int, error: str, text: str) -> None:
        """Print one line of progress; remember a failure."""
        if error:
            self.failures.append(f"{server} {phase}: {error}")
        shown = f"FAILED: {error}" if error else text
        print(f"  [{rep + 1}] {phase:<13} {server:<14} {shown}", flush=True)


def overview(
    results: Results,
    load: dict[str, dict[str, dict[str, Any]]],
    tls: dict[str, dict[str, Any]],
    options: argparse.Namespace,
) -> list[str]:
    """Issue 5's table, measured: one column per server, ratios to smtp-sink in brackets."""
    servers = [
        name
        for name in results.status
        if any(name in rows for rows in load.values()) or name in tls or name in results.idle
    ]
    if not servers:
        return []
    rows: list[tuple[str, dict[str, str]]] = []

    def load_row(title: str, scenario: str, key: str, digits: int) -> None:
        data = load.get(scenario)
        if not data:
            return
        ref = data.get(REFERENCE, {}).get(key)
        cells = {}
        for name, row in data.items():
            value = row[key]
            share = ratio(value, ref)
            cells[name] = fmt(value, digits) + (
                f" ({share:.2f}×)" if share is not None and name != REFERENCE else ""
            )
        rows.append((title, cells))

    load_row("1 KB, reused: server µs CPU/msg", "1k-reuse", "cpu", 0)
    load_row("1 KB, reused: msg/s", "1k-reuse", "rate", 0)
    load_row("1 KB, new connection: server µs CPU/msg", "1k-new", "cpu", 0)
    load_row("1 KB, new connection: msg/s", "1k-new", "rate", 0)
    load_row("100 KB, reused: server µs CPU/msg", "100k-reuse", "cpu", 0)
    load_row("100 KB, reused: msg/s", "100k-reuse", "rate", 0)
    load_row("500 sessions, new connection: msg/s", "500-sessions", "rate", 0)
    load_row("500 sessions, new connection: server µs CPU/msg", "500-sessions", "cpu", 0)
    if tls:
        clients = f"{options.tls_clients} client{'s' if options.tls_clients > 1 else ''}"
        rows.append((f"TLS handshakes/s ({clients})", {n: fmt(r["rate"]) for n, r in tls.items()}))
        rows.append(("TLS: server µs CPU/handshake", {n: fmt(r["cpu"]) for n, r in tls.items()}))
    if results.idle:
        cells = {
            n: fmt(r.rss_kib_per_session, 1) if r.opened else "–" for n, r in results.idle.items()
        }
        sessions = max(r.sessions for r in results.idle.values())
        rows.append((f"idle: RSS KiB/session ({sessions:,} open)", cells))
    out = [
        "",
        "### Overview (medians; in brackets: ÷ smtp-sink in the same run)",
        "",
        "| | " + " | ".join(servers) + " |",
        "| --- |" + " ---: |" * len(servers),
    ]
    for title, cells in rows:
        out.append(f"| {title} | " + " | ".join(cells.get(n, "–") for n in servers) + " |")
    return out


def report(results: Results, scenarios: Sequence[Scenario], options: argparse.Namespace) -> str:
    """The markdown report: machine, servers, overview, each scenario, TLS, idle, targets."""
    machine = results.machine
    load = summarize(results.load_runs)
    tls = tls_summary(results.tls_runs)
    out: list[str] = []
    add = out.append
    add("")
    add(f"## Machine: {machine['nproc']} × {machine['cpu']}, Linux {machine['kernel']}")
    add("")
    add(
        f"{machine['date']}; Python {machine['python']}, Postfix {machine['postfix']}, "
        f"{machine['openssl']}, aiosmtpd {machine['aiosmtpd']}, uvloop {machine['uvloop']}; "
        f"{options.repeat} repetition(s), medians of successful runs; "
        f"load average at start {machine['loadavg']}."
    )
    add("")
    add("| server | status |")
    add("| --- | --- |")
    for name, text in results.status.items():
        add(f"| {name} | {text} |")
    out.extend(overview(results, load, tls, options))
    for scenario in scenarios:
        rows = load.get(scenario.name)
        if not rows:
            continue
        ref = rows.get(REFERENCE, {})
        flags = f"-s {scenario.sessions}{' -d' if scenario.reuse else ''} -l {scenario.length}"
        add("")
        add(f"### {scenario.name}: {scenario.title} (smtp-source {flags})")
        add("")
        add(
            "| server | msgs/run | msg/s | µs CPU/msg | msg/s ÷ sink | CPU/msg ÷ sink "
            "| server CPU % | generator CPU % | other CPU % | listen drops | failed runs |"
        )
        add("| --- |" + " ---: |" * 10)
        for name, row in rows.items():
            add(
                f"| {name} | {row['count']:,} | {fmt(row['rate'])} | {fmt(row['cpu'], 1)} "
                f"| {fmt(ratio(row['rate'], ref.get('rate')), 2)} "
                f"| {fmt(ratio(row['cpu'], ref.get('cpu')), 2)} "
                f"| {fmt(row['srv'])} | {fmt(row['gen'])} | {fmt(row['other'])} "
                f"| {row['drops']:,} | {row['failed']}/{row['runs']} |"
            )
    if tls:
        ceiling = tls.get("s_server", {}).get("rate")
        classic = tls.get("classic-1w", {}).get("rate")
        add("")
        add(
            f"### TLS handshakes on the SMTPS port ({options.tls_clients} × "
            f"openssl s_time -new, {options.tls_seconds} s)"
        )
        add("")
        add(
            "| server | handshakes/s | ÷ classic-1w | ÷ s_server | server µs CPU/handshake "
            "| client µs CPU/handshake | server CPU % | client CPU % | other CPU % "
            "| negotiated | failed runs |"
        )
        add("| --- |" + " ---: |" * 8 + " --- | ---: |")
        for name, row in tls.items():
            add(
                f"| {name} | {fmt(row['rate'])} | {fmt(ratio(row['rate'], classic), 2)} "
                f"| {fmt(ratio(row['rate'], ceiling), 2)} | {fmt(row['cpu'])} "
                f"| {fmt(row['client_us'])} "
                f"| {fmt(row['srv'])} | {fmt(row['client'])} | {fmt(row['other'])} "
                f"| {results.tls_info.get(name, '?')} | {row['failed']}/{row['runs']} |"
            )
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
    add("### Targets of issue 5 (Blackhole; ratios to the named server in the same run)")
    add("")
    add("| target | server | measured | threshold | figures | verdict |")
    add("| --- | --- | ---: | --- | --- | --- |")
    for row in evaluate_targets(load, tls, results.idle):
        add(
            f"| {row['target']} | {row['server']} | {fmt(row['measured'], 2)} "
            f"| {row['threshold']} | {row['detail']} | {row['verdict']} |"
        )
    noise = [r.other_cpu_pct for r in results.load_runs if r.ok]
    noise += [r.other_cpu_pct for r in results.tls_runs if r.ok]
    if noise:
        busy = statistics.median(noise)
        add("")
        add(
            f"Other processes used a median {busy:.0f}% of a core during the runs "
            f"(max {max(noise):.0f}%)."
        )
        if busy > NOISY_PCT:
            add(
                "**Warning: the machine was busy**: msg/s figures are unreliable; "
                "CPU per message and the ratios suffer less."
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
        "tls_negotiated": results.tls_info,
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
    parser.add_argument(
        "--tls-clients", type=int, default=2, help="parallel s_time clients (default 2)"
    )
    parser.add_argument(
        "--classic-venv",
        type=Path,
        default=BENCH_DIR / ".venv-classic",
        help="venv for classic Blackhole 2.1.19, built on first use (default bench/.venv-classic)",
    )
    parser.add_argument(
        "--classic-scale",
        type=float,
        default=0.1,
        help="share of the messages classic gets in 100k-reuse and 500-sessions (default 0.1)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="first wait up to S seconds for the rest of the machine to go quiet",
    )
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
    if min(args.repeat, args.scale, args.idle_sessions, args.tls_clients, args.classic_scale) <= 0:
        parser.error(
            "--repeat, --scale, --idle-sessions, --tls-clients and --classic-scale must be positive"
        )
    return args


def wait_quiet(limit: float, window: float = 5.0, quiet_pct: float = NOISY_PCT) -> None:
    """Wait (at most ``limit`` s) for a ``window`` in which the machine is nearly idle."""
    deadline = time.monotonic() + limit
    while True:
        busy0, t0 = system_busy_seconds(), time.monotonic()
        time.sleep(window)
        busy = 100 * (system_busy_seconds() - busy0) / (time.monotonic() - t0)
        if busy <= quiet_pct:
            print(f"machine quiet: {busy:.0f}% of a core busy over {window:.0f} s", flush=True)
            return
        if time.monotonic() + window > deadline:
            print(f"machine still busy ({busy:.0f}% of a core): starting anyway", flush=True)
            return
        print(f"  waiting for a quieter machine: {busy:.0f}% of a core busy", flush=True)


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
    smtp_servers = [s for s in servers if s.has_smtp]
    if scenarios:
        for server in smtp_servers:
            warm_up(server)
    for rep in range(options.repeat):
        for scenario in scenarios:
            for server in rotated(smtp_servers, rep):
                count = server.count(scenario, results.counts[scenario.name])
                run = run_load(server, scenario, count, rep)
                results.load_runs.append(run)
                text = f"{run.msgs_per_s:,.0f} msg/s, {run.cpu_us_per_msg:,.1f} µs CPU/msg"
                text += f", {run.listen_drops:,} listen drops" if run.listen_drops else ""
                results.note(scenario.name, server.name, rep, run.error, text)
    if not with_tls:
        return
    tls_servers = [s for s in servers if s.has_tls]
    for server in tls_servers:
        results.tls_info[server.name] = tls_parameters(server)
    for rep in range(options.repeat):
        for server in rotated(tls_servers, rep):
            tls_run = run_tls(server, options.tls_seconds, options.tls_clients, rep)
            results.tls_runs.append(tls_run)
            text = (
                f"{tls_run.per_s:,.0f} handshakes/s, "
                f"{tls_run.cpu_us_per_handshake:,.0f} µs CPU/handshake"
            )
            results.note("tls", server.name, rep, tls_run.error, text)


def idle_phase(servers: list[Server], options: argparse.Namespace, results: Results) -> None:
    """A fresh server each (a used heap would hide growth), one worker, one at a time."""
    for server in servers:
        if server.workers != 1 or not server.has_smtp:
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
    if options.wait_quiet:
        try:
            wait_quiet(options.wait_quiet)
        except KeyboardInterrupt:
            return 130
    results = Results(machine_info(), counts)
    started_at = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="blackhole-bench-") as tmp:
            workdir = Path(tmp)
            cert, key = make_cert(workdir)

            def build() -> list[Server]:
                return [make_server(n, workdir, cert, key, options) for n in options.servers]

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
