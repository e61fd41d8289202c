#!/usr/bin/env python3
"""Blackhole benchmark: Blackhole against Postfix smtp-sink, classic Blackhole and aiosmtpd.

Every server is started on ephemeral 127.0.0.1 ports, driven by Postfix
``smtp-source`` (alternating between servers, several repetitions), and its CPU
time is read from /proc for the whole process tree. Also measured: TLS handshakes
per second on the SMTPS port (parallel ``openssl s_time`` clients, with
``openssl s_server`` on the same certificate as the reference) and memory per
idle session. The classic Blackhole 2.1.19 (PyPI) runs from a private venv the script
builds once. See bench/README.md for the meaning of every column.

    python bench/run.py --quick            # smoke run, under a minute
    python bench/run.py                    # full run with the feature variants, ~15 minutes
    python bench/run.py --only 1k-reuse,tls --servers smtp-sink,blackhole-1w --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from idle import FD_SPARE, MAX_IDLE_SESSIONS, raise_fd_limit
from latency import latency_phase
from phases import idle_phase, throughput_phase, wait_quiet
from report import report
from results import Results, machine_info, to_json
from scenarios import EXTRA_PHASES, SCENARIOS
from servers import (
    ALL_SERVERS,
    BENCH_DIR,
    Server,
    find_tool,
    install_interrupt_handlers,
    make_cert,
    make_server,
    running,
)
from tlssessions import tls_sessions_phase
from variants import FEATURE_SERVERS, parse_variant


def make_servers(options: argparse.Namespace, workdir: Path, cert: Path, key: Path) -> list[Server]:
    """The servers to run, each limited to the phases it takes part in."""
    servers = [make_server(n, workdir, cert, key, options) for n in options.servers]
    for server in servers:
        # A server only --features adds is compared in its scenarios; the
        # floor limits itself (bench/servers.py); the others take part in all.
        server.phases = options.phases.get(server.name, server.phases)
    return servers


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
        help=f"comma list (default {','.join(ALL_SERVERS)}; blackhole-Nw for N workers, "
        "blackhole-Nw[-nocount][+FEATURE...] for variants)",
    )
    parser.add_argument(
        "--features",
        action=argparse.BooleanOptionalAction,
        help="add Blackhole's feature variants in the scenarios they are judged in "
        "(default: on unless --servers is given)",
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
    parser.add_argument(
        "--idle-sessions",
        type=int,
        help="default: as many as the file descriptor limit allows (quick 2000)",
    )
    parser.add_argument(
        "--latency-seconds", type=float, help="each latency load (default 10, quick 3)"
    )
    parser.add_argument("--json", type=Path, help="write raw runs and summary here")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.tls_seconds = args.tls_seconds or (2 if args.quick else 5)
    args.latency_seconds = args.latency_seconds or (3 if args.quick else 10)
    args.idle_sessions = args.idle_sessions or (2_000 if args.quick else MAX_IDLE_SESSIONS)
    known = {s.name for s in SCENARIOS} | set(EXTRA_PHASES)
    args.only = {x for item in args.only for x in item.split(",") if x}
    if args.only - known:
        parser.error(f"unknown --only {sorted(args.only - known)}; known: {sorted(known)}")
    if args.features is None:
        args.features = args.servers is None
    args.servers = [x for x in (args.servers or ",".join(ALL_SERVERS)).split(",") if x]
    for name in args.servers:
        if name.startswith("blackhole"):
            parse_variant(name)  # a bad name stops here, before anything starts
    # Servers named by --servers take part in everything selected; those only
    # --features adds, in the scenarios they are compared in.
    args.phases = {}
    if args.features:
        for name, phases in FEATURE_SERVERS.items():
            if name not in args.servers:
                args.servers.append(name)
                args.phases[name] = frozenset(phases)
    if min(args.repeat, args.scale, args.idle_sessions, args.tls_clients, args.classic_scale) <= 0:
        parser.error(
            "--repeat, --scale, --idle-sessions, --tls-clients and --classic-scale must be positive"
        )
    return args


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
    fd_limit = raise_fd_limit(options.idle_sessions + FD_SPARE)
    if fd_limit < options.idle_sessions + FD_SPARE:
        options.idle_sessions = max(1, fd_limit - FD_SPARE)
        if wanted("idle"):
            print(f"RLIMIT_NOFILE is {fd_limit}: {options.idle_sessions:,} idle sessions")
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
                return make_servers(options, workdir, cert, key)

            extra = [p for p in ("tls", "tls-sessions", "latency") if wanted(p)]
            if scenarios or extra:
                phases = {s.name for s in scenarios} | set(extra)
                # A variant with nothing selected to take part in is not started.
                loaded = [s for s in build() if any(s.takes_part(p) for p in phases)]
                print(f"Throughput phase: {', '.join(s.name for s in loaded)}", flush=True)
                with running(loaded, results.status) as servers:
                    throughput_phase(servers, scenarios, options, results, wanted("tls"))
                    if wanted("tls-sessions"):
                        tls_sessions_phase(
                            [s for s in servers if s.takes_part("tls-sessions")],
                            options,
                            results.tls_sessions,
                            results.note,
                        )
                    if wanted("latency"):
                        latency_phase(
                            [s for s in servers if s.takes_part("latency")],
                            options,
                            results.latency,
                            results.note,
                        )
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
