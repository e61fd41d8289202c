#!/usr/bin/env python3
"""Transaction latency at half the maximum rate: p50 and p99 of every reply, server by server.

For each repetition: every server's maximum rate is measured first (``txclient.py
closed``: 10 connections, each starting a new transaction as the last ends);
then every server gets the same open-loop load (``txclient.py open``) at half
the LOWEST of those maxima, so that each runs at half its own maximum or
less. Every transaction is a new connection: connect, greeting, EHLO, MAIL,
RCPT, DATA, 1 KB and the dot, QUIT. Reported: medians over the repetitions of
each server's p50 and p99, of the whole transaction (from when it was due)
and of each reply, and their ratio to smtp-sink's.

    python bench/latency.py --servers smtp-sink,blackhole-1w,blackhole-1w+nomatch20
    python bench/run.py --only latency ...      # the same, inside the main benchmark
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from idle import percentile
from scenarios import REFERENCE
from servers import HOST, Server, install_interrupt_handlers, make_cert, make_server, running
from summary import fmt, median_or_none, ratio

CLIENT = Path(__file__).with_name("txclient.py")
CLOSED_SESSIONS = 10
TARGET_RATIO = 2.0  # p50 and p99 of a whole transaction, against smtp-sink's
REPLIES = (
    "total", "start", "connect", "greeting", "EHLO", "MAIL", "RCPT", "DATA", "end of data", "QUIT"
)  # fmt: skip


@dataclass
class LatencyRun:
    server: str
    repetition: int
    how: str  # "closed" (the maximum rate) or "open" (the latency at a fixed rate)
    rate: float  # offered (open) or reached (closed), transactions/s
    ok: bool
    error: str = ""
    done: int = 0
    errors: int = 0
    p50_ms: dict[str, float] = field(default_factory=dict)
    p99_ms: dict[str, float] = field(default_factory=dict)


def drive(server: Server, how: str, amount: float, seconds: float, rep: int) -> LatencyRun:
    count = int(amount * seconds) if how == "open" else 1_000_000
    argv = [sys.executable, str(CLIENT), HOST, str(server.port), how, str(amount)]
    argv += [str(count), str(seconds)]
    run = LatencyRun(server.name, rep, how, amount if how == "open" else 0.0, ok=False)
    try:
        with tempfile.TemporaryDirectory(prefix="blackhole-latency-") as tmp:
            out = Path(tmp) / "answer.json"
            argv.append(str(out))
            proc = subprocess.run(argv, capture_output=True, timeout=seconds + 60, check=False)
            answer = json.loads(out.read_bytes() if out.exists() else b"{}")
    except (subprocess.TimeoutExpired, ValueError) as exc:
        run.error = f"txclient: {exc}"
        return run
    run.done, run.errors = answer.get("done", 0), answer.get("errors", 0)
    if how == "closed" and answer.get("elapsed"):
        run.rate = run.done / answer["elapsed"]
    times: dict[str, list[float]] = answer.get("ms", {})
    for name in REPLIES:
        if times.get(name):
            run.p50_ms[name] = percentile(times[name], 0.5)
            run.p99_ms[name] = percentile(times[name], 0.99)
    if run.errors:
        run.error = f"{run.errors} transactions failed, first: {answer.get('first_error')}"
    elif not run.done:
        run.error = f"no transaction done: {proc.stderr.decode(errors='replace')[-200:]}"
    run.ok = not run.error
    return run


def latency_phase(
    servers: Sequence[Server],
    options: argparse.Namespace,
    runs: list[LatencyRun],
    note: Callable[[str, str, int, str, str], None],
) -> None:
    smtp = [s for s in servers if s.has_smtp]
    seconds = options.latency_seconds
    for rep in range(options.repeat):
        order = smtp[rep % len(smtp) :] + smtp[: rep % len(smtp)]
        maxima = []
        for server in order:
            run = drive(server, "closed", CLOSED_SESSIONS, seconds, rep)
            runs.append(run)
            note("latency max", server.name, rep, run.error, f"{run.rate:,.0f} transactions/s")
            if run.ok:
                maxima.append(run.rate)
        if not maxima:
            return
        rate = round(min(maxima) / 2)
        for server in order:
            run = drive(server, "open", rate, seconds, rep)
            runs.append(run)
            total50, total99 = run.p50_ms.get("total"), run.p99_ms.get("total")
            text = f"at {rate:,}/s: p50 {fmt(total50, 2)} ms, p99 {fmt(total99, 2)} ms"
            note("latency", server.name, rep, run.error, text)


def latency_report(runs: Sequence[LatencyRun]) -> list[str]:
    """Medians over the repetitions of each p50 and p99, and their ratios to smtp-sink's."""
    opened = [r for r in runs if r.how == "open"]
    if not opened:
        return []
    rates = sorted({r.rate for r in opened})
    maxima: dict[str, list[float]] = {}
    for run in runs:
        if run.how == "closed" and run.ok:
            maxima.setdefault(run.server, []).append(run.rate)
    lines = [
        "",
        "### Transaction latency at half the slowest server's maximum rate "
        f"({', '.join(f'{r:,.0f}' for r in rates)} transactions/s, a new connection each)",
        "",
        "Milliseconds, p50 / p99 (medians over the repetitions); in brackets: ÷ smtp-sink.",
        "",
        "| server | max rate/s | " + " | ".join(REPLIES) + " | failed runs |",
        "| --- | ---: | " + " | ".join("---:" for _ in REPLIES) + " | ---: |",
    ]
    by_server: dict[str, list[LatencyRun]] = {}
    for run in opened:
        by_server.setdefault(run.server, []).append(run)

    def medians(name: str, which: str) -> dict[str, float | None]:
        ok = [r for r in by_server.get(name, []) if r.ok]
        return {
            reply: median_or_none(
                [getattr(r, which)[reply] for r in ok if reply in getattr(r, which)]
            )
            for reply in REPLIES
        }

    ref50, ref99 = medians(REFERENCE, "p50_ms"), medians(REFERENCE, "p99_ms")
    for name, group in by_server.items():
        p50, p99 = medians(name, "p50_ms"), medians(name, "p99_ms")
        cells = []
        for reply in REPLIES:
            cell = f"{fmt(p50[reply], 2)} / {fmt(p99[reply], 2)}"
            r50, r99 = ratio(p50[reply], ref50[reply]), ratio(p99[reply], ref99[reply])
            if name != REFERENCE and r50 is not None and r99 is not None:
                cell += f" ({r50:.1f}× / {r99:.1f}×)"
            cells.append(cell)
        failed = sum(1 for r in group if not r.ok)
        top = fmt(median_or_none(maxima.get(name, [])))
        lines.append(f"| {name} | {top} | " + " | ".join(cells) + f" | {failed}/{len(group)} |")
    for name in by_server:
        if not name.startswith("blackhole"):
            continue  # the target is Blackhole's; the others are there to compare with
        t50, t99 = medians(name, "p50_ms")["total"], medians(name, "p99_ms")["total"]
        r50, r99 = ratio(t50, ref50["total"]), ratio(t99, ref99["total"])
        if r50 is not None and r99 is not None:
            verdict = "PASS" if max(r50, r99) <= TARGET_RATIO else "FAIL"
            lines.append(
                f"\nTarget, {name}: transaction p50 and p99 at most {TARGET_RATIO:g}× "
                f"smtp-sink's: {r50:.2f}× / {r99:.2f}×: {verdict}"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="smtp-sink,blackhole-1w")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    # What make_server reads from run.py's options.
    args.idle_sessions, args.classic_scale = 1_000, 0.1
    args.classic_venv = Path(__file__).with_name(".venv-classic")
    install_interrupt_handlers()
    runs: list[LatencyRun] = []

    def note(phase: str, server: str, rep: int, error: str, text: str) -> None:
        print(f"  [{rep + 1}] {phase:<13} {server:<14} {f'FAILED: {error}' if error else text}")

    with tempfile.TemporaryDirectory(prefix="blackhole-latency-") as tmp:
        workdir = Path(tmp)
        cert, key = make_cert(workdir)
        names = [n for n in args.servers.split(",") if n]
        status: dict[str, str] = {}
        with running([make_server(n, workdir, cert, key, args) for n in names], status) as alive:
            latency_phase(alive, args, runs, note)
    print("\n".join(latency_report(runs)))
    return 1 if any(not r.ok for r in runs) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
