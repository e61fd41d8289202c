"""Blackhole's performance targets, each judged against a figure of the same run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from idle import IdleRun
from scenarios import REFERENCE
from summary import fmt_auto, ratio


@dataclass(frozen=True)
class Target:
    """One target, judged on the figures of this run."""

    label: str
    server: str
    measure: str  # "cpu" | "rate" (a load scenario), "memory" | "greet" (idle), "tls"
    scenario: str
    threshold: float
    at_most: bool
    reference: str = ""  # judged as a ratio to this server's figure; "" = absolute
    unit: str = ""
    needs_no_failure: bool = False
    listed_if_measured: bool = False  # a row only when the run has the server


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
           "blackhole-1w", "memory", "", 4.0, True, unit="KiB", needs_no_failure=True),
    Target("new session greeted within 5 ms with every idle session open (p99)",
           "blackhole-1w", "greet", "", 5.0, True, unit="ms", needs_no_failure=True),
    Target("TLS handshakes/s, 1 worker, vs classic Blackhole 1 worker", "blackhole-1w", "tls",
           "", 1.0, False, "classic-1w", "/s"),
    Target("TLS handshakes/s, 2 workers, vs classic Blackhole 2 workers", "blackhole-2w", "tls",
           "", 1.0, False, "classic-2w", "/s"),
    # With the features a load test uses (bench/variants.py): counting (always
    # on) and 20 rules that match nothing, against the C sink.
    Target("features on: server CPU/msg, 1 KB reused, 1 worker, counting + 20 rules",
           "blackhole-1w+nomatch20", "cpu", "1k-reuse", 1.5, True, REFERENCE, "µs"),
    Target("features on: server CPU/msg, 1 KB new connection, 1 worker, counting + 20 rules",
           "blackhole-1w+nomatch20", "cpu", "1k-new", 1.0, True, REFERENCE, "µs"),
    Target("features on: server CPU/msg, 100 KB reused, 1 worker, counting + 20 rules",
           "blackhole-1w+nomatch20", "cpu", "100k-reuse", 0.8, True, REFERENCE, "µs"),
    # What each feature costs, against the same server without it.
    Target("counting (always on): server CPU/msg, 1 KB reused, 1 worker",
           "blackhole-1w", "cpu", "1k-reuse", 1.05, True, "blackhole-1w-nocount", "µs"),
    Target("counting (always on): server CPU/msg, 1 KB new connection, 1 worker",
           "blackhole-1w", "cpu", "1k-new", 1.05, True, "blackhole-1w-nocount", "µs"),
    Target("event log on: server CPU/msg, 1 KB reused, 1 worker",
           "blackhole-1w+eventlog", "cpu", "1k-reuse", 1.30, True, "blackhole-1w", "µs"),
    Target("event log on: server CPU/msg, 1 KB new connection, 1 worker",
           "blackhole-1w+eventlog", "cpu", "1k-new", 1.30, True, "blackhole-1w", "µs"),
    # "Changes nothing measurable": within 3 %, about the spread of the medians
    # of a quiet machine. The whole tree: the hub that answers is included.
    Target("GET /metrics every second: server CPU/msg, 1 KB reused, 1 worker",
           "blackhole-1w+scrape", "cpu", "1k-reuse", 1.03, True, "blackhole-1w", "µs"),
    # No rules: a server whose rules machinery is in place with no rule in it
    # (an empty rules file) pays what one without rules pays.
    Target("no rules: server CPU/msg, 1 KB reused, 1 worker, an empty rules file",
           "blackhole-1w+empty", "cpu", "1k-reuse", 1.03, True, "blackhole-1w", "µs"),
    Target("no rules: server CPU/msg, 100 KB reused, 1 worker, an empty rules file",
           "blackhole-1w+empty", "cpu", "100k-reuse", 1.03, True, "blackhole-1w", "µs"),
    Target("server CPU/msg, 1 KB reused, 1 worker, 20 rules that match nothing",
           "blackhole-1w+nomatch20", "cpu", "1k-reuse", 1.10, True, "blackhole-1w", "µs"),
    Target("server CPU/msg, 1 KB reused, 2 workers, 20 rules that match nothing",
           "blackhole-2w+nomatch20", "cpu", "1k-reuse", 1.10, True, "blackhole-2w", "µs"),
    Target("server CPU/msg, 1 KB reused, 2 workers, greylist on every recipient (shared memory)",
           "blackhole-2w+greylist", "cpu", "1k-reuse", 1.25, True, "blackhole-2w", "µs"),
)  # fmt: skip

# The same CPU budgets, judged on the compiled build too (README,
# "Development") when the run has its variants (blackhole-...@mypyc).
COMPILED = "@mypyc"
TARGETS += tuple(
    replace(
        target,
        label=f"{target.label}, compiled",
        server=target.server + COMPILED,
        reference=target.reference + COMPILED
        if target.reference.startswith("blackhole")
        else target.reference,
        listed_if_measured=True,
    )
    for target in TARGETS
    if target.measure == "cpu"
)


def _target_figures(
    target: Target,
    server: str,
    load: dict[str, dict[str, dict[str, Any]]],
    tls: dict[str, dict[str, Any]],
    idle: dict[str, IdleRun],
) -> tuple[float | None, str]:
    """A server's figure for a target and a failure note ("" when none)."""
    if target.measure in ("cpu", "rate", "tls"):
        if target.measure == "tls":
            row, key = tls.get(server), "rate"
        else:
            row, key = load.get(target.scenario, {}).get(server), target.measure
        if row is None:
            return None, ""
        failed = f"{row['failed']}/{row['runs']} runs failed" if row["failed"] else ""
        return row[key], failed
    run = idle.get(server)
    if run is None or not run.opened:
        return None, (run.error if run is not None else "")
    if target.measure == "greet":
        return run.greeting_ms_p99, run.error
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
        if target.listed_if_measured and value is None and not failure:
            continue
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
