"""The markdown report: machine, servers, overview, each scenario, TLS, idle, targets."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from typing import Any

from costs import cost_table, kernel_table, process_table
from latency import latency_report
from procstats import NOISY_PCT
from results import Results
from scenarios import REFERENCE, Scenario
from summary import fmt, ratio, summarize, tls_summary
from targets import evaluate_targets
from tlssessions import tls_sessions_report


def overview(
    results: Results,
    load: dict[str, dict[str, dict[str, Any]]],
    tls: dict[str, dict[str, Any]],
    options: argparse.Namespace,
) -> list[str]:
    """One column per server, one row per headline figure, ratios to smtp-sink in brackets."""
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
    out.extend(cost_table(load, scenarios))
    out.extend(kernel_table(load, scenarios))
    out.extend(process_table(load, scenarios))
    if tls:
        s_server_rate = tls.get("s_server", {}).get("rate")
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
                f"| {fmt(ratio(row['rate'], s_server_rate), 2)} | {fmt(row['cpu'])} "
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
        add(
            "New sessions greeted while the idle sessions are open "
            "(`greetprobe.py`, one at a time):"
        )
        add("")
        add("| server | sessions open | probes | greeting ms p50 / p90 / p99 / max "
            "| server µs CPU per new session |")  # fmt: skip
        add("| --- | ---: | ---: | ---: | ---: |")
        for run in results.idle.values():
            for step in run.steps:
                add(
                    f"| {run.server} | {step.sessions:,} | {step.probes} "
                    f"| {fmt(step.greeting_ms_p50, 2)} / {fmt(step.greeting_ms_p90, 2)} "
                    f"/ {fmt(step.greeting_ms_p99, 2)} / {fmt(step.greeting_ms_max, 1)} "
                    f"| {fmt(step.server_us_per_session, 0)} |"
                )
    for line in [*tls_sessions_report(results.tls_sessions), *latency_report(results.latency)]:
        add(line)
    add("")
    add("### Targets (Blackhole; ratios to the named server in the same run)")
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
