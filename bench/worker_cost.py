"""One worker's cost per message, whole: the real adapter on the real uvloop.

``bench/run.py`` measures whole servers (supervisor, hub and workers) side by
side with smtp-sink; ``bench/meter_cost.py`` and ``bench/rules_cost.py`` the
sans-IO core alone. This is in between: one ``server.app.Worker`` (the one a
worker process serves with: accept, the protocol object, the core, counting,
steering) on uvloop in a process of its own, driven over loopback by Postfix
``smtp-source`` with bench/run.py's loads. Only that process is measured, so
the figure is the worker's own, free of the supervisor's and the hub's.

Three ways to measure, for A/B runs of a code change:

- ``cpu`` (default): CPU microseconds per message of the serving process
  (``getrusage``, user + system), the median of ``--repeat`` runs. Noisy on a
  shared machine: alternate A and B and state the load.
- ``callgrind``: instructions per message under ``valgrind --tool=callgrind``
  (exact and independent of the load). The process is run twice, with
  ``--count`` and with twice that, and the difference is divided by
  ``--count``: start-up and shut-down cancel out. ``--keep DIR`` keeps the
  callgrind files for ``callgrind_annotate``.
- ``profile``: cProfile (CPU time) of the serving process over one run, the
  top functions by own time (``--top``), and who calls those matching
  ``--callers``; ``--keep DIR`` keeps the profile for ``pstats``.

The worker observes as a worker process does, so ``BLACKHOLE_BENCH_NO_COUNTING=1``
(bench/README.md) measures it without counting; its rules decide in a
shared-memory region (``hub.sharedstore``), as a supervisor's workers do.
``--eventlog`` turns the event log on (``event_log`` to a file in the serving
process's temporary directory), bench/run.py's ``+eventlog`` variant for one
worker.

``--sink`` runs Postfix smtp-sink under the same load instead (``cpu`` only),
for the ratio. Examples::

    .venv/bin/python bench/worker_cost.py --load 1k-new --rules nomatch20
    .venv/bin/python bench/worker_cost.py --load 1k-reuse --sink
    .venv/bin/python bench/worker_cost.py --load 1k-new --measure callgrind --count 500
    .venv/bin/python bench/worker_cost.py --load 1k-reuse --measure profile --top 30
    .venv/bin/python bench/worker_cost.py --eventlog --measure callgrind --count 200
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from floor_build import FloorBuildError, floor_argv
from rulesets import RULESETS
from scenarios import SCENARIOS, Scenario
from servers import find_tool

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
LOADS = {scenario.name: scenario for scenario in SCENARIOS if scenario.sessions <= 50}


# --- the serving process --------------------------------------------------------------


def _config_text(workdir: Path, rules: str | None) -> str:
    """bench/run.py's Blackhole config, on one plain listener with STARTTLS offered."""
    from blackhole.server.tls import generate_self_signed  # noqa: PLC0415 - serve only

    cert, key = generate_self_signed("localhost", workdir)
    lines = [
        f"listen = {HOST}:0",
        f"tls_cert = {cert}",
        f"tls_key = {key}",
        "timeout = 180",
        "max_message_size = 512000",
    ]
    if rules is not None:
        path = workdir / "rules.toml"
        path.write_text(RULESETS[rules])
        lines.append(f"rules = {path}")
    return "".join(line + "\n" for line in lines)


async def _serve(rules: str | None, eventlog: bool, port_file: Path) -> None:
    from blackhole.config.classic import parse_config  # noqa: PLC0415
    from blackhole.hub.sharedstore import SharedStore  # noqa: PLC0415
    from blackhole.observe.logs import setup_logging  # noqa: PLC0415
    from blackhole.server.app import Worker  # noqa: PLC0415
    from blackhole.server.observing import Observation, listener_labels  # noqa: PLC0415
    from blackhole.server.sockets import bind_listener  # noqa: PLC0415
    from blackhole.server.tls import build_server_context  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        # The -q of bench/run.py's command line: warnings and errors only.
        config = dataclasses.replace(parse_config(_config_text(Path(tmp), rules)), quiet=True)
        setup_logging(config, worker=1)
        listener = config.listeners[0]
        sock = bind_listener(listener)
        assert config.tls_cert is not None and config.tls_key is not None
        context = build_server_context(config.tls_cert, config.tls_key)
        bound = [(listener, sock)]
        # As a worker process observes: BLACKHOLE_BENCH_NO_COUNTING (--nocount) honoured.
        event_log = str(Path(tmp) / "events.jsonl") if eventlog else None
        observation = Observation.for_worker(None, listener_labels(bound), event_log, 0, 1)
        # As a worker process decides: in the region shared by all the
        # supervisor's workers (hub.sharedstore), not in a store of its own.
        store = SharedStore.create()
        worker = Worker(
            config,
            bound,
            "bench.localhost",
            context,
            worker_id=1,
            observation=observation,
            store=store,
        )
        await worker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, _report_usage)
        port_file.write_text(str(sock.getsockname()[1]))
        await stop.wait()
        await worker.stop(1.0)
        store.close()


def _report_usage() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"cpu {usage.ru_utime + usage.ru_stime:.6f} {usage.ru_utime:.6f}", flush=True)


def serve(rules: str | None, eventlog: bool, port_file: Path, profile: Path | None) -> None:
    from blackhole.server.app import new_event_loop  # noqa: PLC0415

    loop = new_event_loop()
    if profile is None:
        loop.run_until_complete(_serve(rules, eventlog, port_file))
        return
    import cProfile  # noqa: PLC0415

    # CPU time, not wall time: a loopback write wakes the client, which may run first.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    loop.run_until_complete(_serve(rules, eventlog, port_file))
    profiler.disable()
    profiler.dump_stats(str(profile))


# --- the measuring process -------------------------------------------------------------


def _source(load: Scenario, count: int, port: int) -> None:
    tool = find_tool("smtp-source")
    if tool is None:
        raise SystemExit("smtp-source not found: apt-get install postfix (see bench/README.md)")
    argv = [
        tool,
        *(["-d"] if load.reuse else []),
        "-s", str(load.sessions),
        "-m", str(count),
        "-l", str(load.length),
        "-M", "localhost",
        "-f", "bench@localhost",
        "-t", "sink@localhost",
        f"{HOST}:{port}",
    ]  # fmt: skip
    subprocess.run(argv, check=True, timeout=600, stdout=subprocess.DEVNULL)


def _wait_port(port_file: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 300  # valgrind starts Python slowly
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text():
            return int(port_file.read_text())
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        time.sleep(0.02)  # polling for the port file
    raise SystemExit("the server did not start")


@dataclasses.dataclass(frozen=True)
class Served:
    """What the serving process runs: Blackhole's worker, or the floor (bench/floor.py)."""

    rules: str | None = None
    eventlog: bool = False
    floor: bool = False

    def argv(self, port_file: Path, extra: list[str]) -> list[str]:
        if self.floor:
            return floor_argv(port_file.parent, [str(port_file)])[0]
        argv = [sys.executable, __file__, "--serve", str(port_file), *extra]
        if self.rules is not None:
            argv += ["--rules", self.rules]
        if self.eventlog:
            argv.append("--eventlog")
        return argv

    def name(self) -> str:
        if self.floor:
            return "floor"
        return (
            "worker"
            + (f"+{self.rules}" if self.rules else "")
            + ("+eventlog" if self.eventlog else "")
        )


def _start(
    prefix: list[str], served: Served, workdir: Path, extra: list[str]
) -> tuple[subprocess.Popen[bytes], int]:
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    argv = [*prefix, *served.argv(port_file, extra)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    return proc, _wait_port(port_file, proc)


def _usage(proc: subprocess.Popen[bytes]) -> tuple[float, float]:
    """(CPU seconds, of which in user space) the serving process has used."""
    proc.send_signal(signal.SIGUSR1)
    assert proc.stdout is not None
    fields = proc.stdout.readline().decode().split()
    return float(fields[1]), float(fields[2])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)


def measure_cpu(
    load: Scenario, count: int, served: Served, repeat: int, workdir: Path
) -> list[tuple[float, float]]:
    """(CPU, user CPU) microseconds per message, per run."""
    proc, port = _start([], served, workdir, [])
    try:
        _source(load, max(50, count // 10), port)  # warm up: imports, caches, allocator
        figures = []
        for _ in range(repeat):
            cpu, user = _usage(proc)
            _source(load, count, port)
            cpu_after, user_after = _usage(proc)
            figures.append(((cpu_after - cpu) / count * 1e6, (user_after - user) / count * 1e6))
        return figures
    finally:
        _stop(proc)


def measure_sink(load: Scenario, count: int, repeat: int) -> list[tuple[float, float]]:
    sink = find_tool("smtp-sink")
    if sink is None:
        raise SystemExit("smtp-sink not found: apt-get install postfix")
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([sink, *as_user, "-m", "1000", f"{HOST}:{port}", "4096"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex((HOST, port)) == 0:
                    break
            time.sleep(0.01)
        figures = []
        for _ in range(repeat):
            cpu, user = _ticks(proc.pid)
            _source(load, count, port)
            cpu_after, user_after = _ticks(proc.pid)
            figures.append(((cpu_after - cpu) / count * 1e6, (user_after - user) / count * 1e6))
        return figures
    finally:
        proc.terminate()
        proc.wait()


def _ticks(pid: int) -> tuple[float, float]:
    """(CPU seconds, of which in user space) of a process not ours to signal (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + system) / tick, user / tick


def _callgrind_run(
    load: Scenario, count: int, served: Served, workdir: Path, keep: Path | None
) -> int:
    out = (keep or workdir) / f"callgrind.{load.name}.{served.name()}.{count}.out"
    prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    proc, port = _start(prefix, served, workdir, [])
    try:
        _source(load, count, port)
    finally:
        _stop(proc)
    match = re.search(rb"^summary: (\d+)", out.read_bytes(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"no summary in {out}")
    return int(match.group(1))


def measure_callgrind(
    load: Scenario, count: int, served: Served, workdir: Path, keep: Path | None
) -> float:
    one = _callgrind_run(load, count, served, workdir, keep)
    two = _callgrind_run(load, 2 * count, served, workdir, keep)
    return (two - one) / count


def measure_profile(
    load: Scenario,
    count: int,
    served: Served,
    workdir: Path,
    *,
    top: int,
    callers: str | None,
    keep: Path | None,
) -> None:
    import pstats  # noqa: PLC0415

    stats_file = (keep or workdir) / f"profile.{load.name}.{served.name()}.out"
    proc, port = _start([], served, workdir, ["--profile", str(stats_file)])
    try:
        _source(load, count, port)
    finally:
        _stop(proc)
    stats = pstats.Stats(str(stats_file))
    stats.sort_stats("tottime").print_stats(top)
    if callers:
        stats.print_callers(callers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", choices=sorted(LOADS), default="1k-reuse")
    parser.add_argument("--rules", choices=sorted(RULESETS))
    parser.add_argument("--measure", choices=("cpu", "callgrind", "profile"), default="cpu")
    parser.add_argument("--count", type=int, help="messages per run (default: 5000; callgrind 300)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--sessions",
        type=int,
        help="parallel smtp-source sessions (default: the load's; callgrind 1, which makes "
        "the loop's wake-ups, and so the count, the same from run to run)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sink", action="store_true", help="measure smtp-sink instead")
    which.add_argument(
        "--floor", action="store_true", help="measure bench/floor.py instead (cpu, callgrind)"
    )
    which.add_argument(
        "--compare",
        action="store_true",
        help="cpu: smtp-sink, the floor and the worker in turn, --repeat rounds, as ratios",
    )
    parser.add_argument(
        "--eventlog", action="store_true", help="the worker writes the event log to a file"
    )
    parser.add_argument(
        "--keep", type=Path, help="callgrind, profile: keep their files in this directory"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--callers", help="profile: also show who calls functions matching this")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.rules, args.eventlog, args.serve, args.profile)
        return 0
    load = LOADS[args.load]
    sessions = args.sessions or (1 if args.measure == "callgrind" else load.sessions)
    load = dataclasses.replace(load, sessions=sessions)
    count = args.count or (300 if args.measure == "callgrind" else 5000)
    served = Served(args.rules, args.eventlog, args.floor)
    if (args.sink or args.compare) and args.measure != "cpu":
        parser.error("--sink and --compare measure cpu only")
    if args.floor and args.measure == "profile":
        parser.error("--floor: cpu or callgrind")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.floor or args.compare:
            try:
                print(f"the floor: bench/floor.py, {floor_argv(workdir, [])[1]}")
            except FloorBuildError as error:
                raise SystemExit(str(error)) from None
        if args.compare:
            _compare(load, count, served, args.repeat, workdir)
        elif args.sink:
            _print(f"{load.name} smtp-sink", measure_sink(load, count, args.repeat))
        elif args.measure == "cpu":
            figures = measure_cpu(load, count, served, args.repeat, workdir)
            _print(f"{load.name} {served.name()}", figures)
        elif args.measure == "callgrind":
            per = measure_callgrind(load, count, served, workdir, args.keep)
            print(f"{load.name} {served.name()}: {per:,.0f} instructions/msg")
        else:
            measure_profile(
                load, count, served, workdir, top=args.top, callers=args.callers, keep=args.keep
            )
    return 0


def _print(label: str, figures: list[tuple[float, float]]) -> None:
    runs = " ".join(f"{f:.1f}/{u:.1f}" for f, u in figures)
    cpu = statistics.median(f for f, _ in figures)
    user = statistics.median(u for _, u in figures)
    print(f"{label}: {cpu:.1f} us/msg CPU, {user:.1f} in user space")
    print(f"  runs (total/user): {runs}")


def _compare(load: Scenario, count: int, served: Served, repeat: int, workdir: Path) -> None:
    """smtp-sink, the floor and the worker, one run each per round, as ratios to smtp-sink.

    Rounds alternate the three so that a change in the machine's load falls
    on all of them; the medians are taken per server.
    """
    floor = dataclasses.replace(served, floor=True)
    runs: dict[str, list[tuple[float, float]]] = {"smtp-sink": [], "floor": [], served.name(): []}
    for _ in range(repeat):
        runs["smtp-sink"] += measure_sink(load, count, 1)
        runs["floor"] += measure_cpu(load, count, floor, 1, workdir)
        runs[served.name()] += measure_cpu(load, count, served, 1, workdir)
    sink = statistics.median(f for f, _ in runs["smtp-sink"])
    sink_user = statistics.median(u for _, u in runs["smtp-sink"])
    print(f"{load.name}, {count} messages x {repeat} rounds: us/msg CPU (user), ratio to smtp-sink")
    for name, figures in runs.items():
        cpu = statistics.median(f for f, _ in figures)
        user = statistics.median(u for _, u in figures)
        print(
            f"  {name:<28} {cpu:7.1f} ({user:5.1f})  {cpu / sink:5.2f}x"
            f"  user {user / sink_user if sink_user else float('nan'):5.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
