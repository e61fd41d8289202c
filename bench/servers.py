"""The servers under test: how each one is started, probed and stopped.

Each server runs in a session and process group of its own on ephemeral
loopback ports, and is stopped by process group in ``finally`` blocks, on
Ctrl-C and on SIGTERM alike.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from classic_venv import CLASSIC_VERSION, VenvError, classic_env, classic_python
from floor_build import FloorBuildError, compiled_floor_argv, interpreted_floor_argv
from procstats import event_loop_of, group_alive
from scenarios import CLASSIC_SLOW, SCENARIOS, Scenario
from variants import FEATURES, NO_COUNTING_ENV, Variant, parse_variant

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HOST = "127.0.0.1"  # every byte of load goes to loopback, nowhere else
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
ALL_SERVERS = (
    "smtp-sink",
    "floor",
    "floor@mypyc",
    "s_server",
    "aiosmtpd",
    "classic-1w",
    "classic-2w",
    "blackhole-1w",
    "blackhole-2w",
)
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
    kind: str  # "smtp-sink" | "floor" | "s_server" | "aiosmtpd" | "classic" | "blackhole"
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
    variant: Variant | None = None  # Blackhole's features (bench/variants.py)
    # The scenarios and phases ("tls", "idle") it takes part in; None: all selected.
    phases: frozenset[str] | None = None
    control_port: int = 0  # the control API's, when a feature wants it
    # Blackhole and the floor: the interpreter, by default this one;
    # blackhole-1w@mypyc and floor@mypyc run REPO/.venv-mypyc's (the compiled
    # build next to the pure one).
    python: str = sys.executable

    def takes_part(self, phase: str) -> bool:
        return self.phases is None or phase in self.phases

    @property
    def scrapes(self) -> bool:
        """GET /metrics every second during each load (the ``scrape`` feature)."""
        return self.variant is not None and any(
            FEATURES[name].scrape for name in self.variant.features
        )

    @property
    def has_tls(self) -> bool:
        return self.kind not in ("smtp-sink", "floor")

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
        if self.kind == "floor":
            # bench/floor.py: the least a Python sink on uvloop costs (bench/README.md);
            # floor@mypyc compiled first (bench/floor_build.py).
            args = ["--listen", f"{HOST}:{self.port}"]
            if self.name != "floor@mypyc":
                return interpreted_floor_argv(self.python, args), env
            self._check_python()
            try:
                return compiled_floor_argv(self.python, self.workdir, args), env
            except FloorBuildError as error:
                raise ServerError(str(error)) from None
        if self.kind == "s_server":
            # The TLS reference of this machine: OpenSSL's own server on the same key and
            # defaults. -www: answer and close each connection, never read stdin.
            argv = ["openssl", "s_server", "-accept", f"{HOST}:{self.tls_port}"]
            argv += ["-cert", str(self.cert), "-key", str(self.key), "-quiet", "-www"]
            return argv, env
        if self.kind == "classic":
            python = classic_python(self.classic_venv)
            # No user/group: as root it only warns, like this checkout's Blackhole it
            # runs as the caller. No dhparams and no -ls: an ECDSA certificate uses
            # ECDHE, and -ls only drops OP_SINGLE_(EC)DH_USE, which OpenSSL >= 1.1
            # ignores. A pidfile of its own: the default /tmp/blackhole.pid would be
            # shared by two classic servers.
            conf = self.write_config(
                f"classic Blackhole {CLASSIC_VERSION} format",
                f"pidfile = {self.workdir / (self.name + '.pid')}",
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
        extra = []
        variant = self.variant or Variant(self.workers, True, ())
        for name in variant.features:
            feature = FEATURES[name]
            extra += feature.config(self.workdir, self.name)
            env.update(feature.env)
        if self.control_port:
            extra.append(f"control_listen = {HOST}:{self.control_port}")
        if not variant.counting:
            env[NO_COUNTING_ENV] = "1"  # read by each worker at start
        else:
            env.pop(NO_COUNTING_ENV, None)
        conf = self.write_config("Blackhole", *extra)
        if self.python != sys.executable:
            self._check_python()
        elif not module_available("blackhole"):
            src = str(REPO_DIR / "src")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        return [self.python, "-m", "blackhole", "-c", str(conf), "-q"], env

    def _check_python(self) -> None:
        """An @build server's interpreter (REPO/.venv-BUILD) must have been made."""
        if not Path(self.python).is_file():
            raise ServerError(f"{self.python} not found (see bench/README.md)")

    def write_config(self, flavour: str, *extra: str) -> Path:
        """A config file for either Blackhole: both read the same keys.

        The timeout is at classic's maximum (180 s) so that no idle session is
        dropped while 10,000 are being opened.
        """
        conf = self.workdir / f"{self.name}.conf"
        lines = [
            f"# written by bench/run.py ({flavour})",
            f"listen = {HOST}:{self.port}",
            f"tls_listen = {HOST}:{self.tls_port}",
            f"tls_cert = {self.cert}",
            f"tls_key = {self.key}",
            f"workers = {self.workers}",
            "timeout = 180",
            "max_message_size = 512000",
            *extra,
        ]
        conf.write_text("".join(line + "\n" for line in lines))
        return conf

    def start(self, timeout: float = 20.0) -> None:
        self.port = free_port() if self.has_smtp else 0
        self.tls_port = free_port() if self.has_tls else 0
        wants_control = self.variant is not None and any(
            FEATURES[name].control for name in self.variant.features
        )
        self.control_port = free_port() if wants_control else 0
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
    if name.startswith("blackhole"):
        variant = parse_variant(name)  # blackhole-2w+greylist, blackhole-1w-nocount...
        server = Server(name, "blackhole", workdir, cert, key, variant.workers, capacity, **extra)
        server.variant = variant
        if variant.build:
            server.python = str(REPO_DIR / f".venv-{variant.build}" / "bin" / "python")
        return server
    if name.startswith("classic"):
        match = re.fullmatch(r"classic(?:-(\d+)w)?", name)
        if match is None:
            raise SystemExit(f"bad server name {name!r}: use classic-Nw")
        workers = int(match.group(1) or 1)
        return Server(name, "classic", workdir, cert, key, workers, capacity, **extra)
    if name in ("floor", "floor@mypyc"):
        # The SMTP loads and the latency phase: its script knows no TLS, and
        # idle sessions would only measure uvloop's transports.
        floor = Server(name, "floor", workdir, cert, key, 1, capacity, **extra)
        if name == "floor@mypyc":
            floor.python = str(REPO_DIR / ".venv-mypyc" / "bin" / "python")
        floor.phases = frozenset([*(s.name for s in SCENARIOS), "latency"])
        return floor
    if name in ("smtp-sink", "aiosmtpd", "s_server"):
        return Server(name, name, workdir, cert, key, 1, capacity, **extra)
    raise SystemExit(f"unknown server {name!r}; known: {', '.join(ALL_SERVERS)}")


@contextlib.contextmanager
def running(servers: Sequence[Server], status: dict[str, str]) -> Iterator[list[Server]]:
    """Start what starts (recording why the others did not), stop them all at the end."""
    started: list[Server] = []
    try:
        for server in servers:
            try:
                server.start()
            except (ServerError, VenvError, OSError) as exc:
                status[server.name] = f"did not start: {exc}"
                print(f"  {server.name}: did not start: {exc}", flush=True)
                server.stop()
                continue
            started.append(server)
            if server.kind in ("floor", "aiosmtpd", "classic", "blackhole"):
                status.setdefault(server.name, f"ok, {event_loop_of(server.pid)}")
            else:
                status.setdefault(server.name, "ok")
        yield started
    finally:
        for server in servers:
            server.stop()
