"""The report's "cost of each feature", "user space and kernel" and "where
Blackhole's CPU goes" tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scenarios import Scenario
from summary import fmt, ratio
from variants import feature_costs

Load = dict[str, dict[str, dict[str, Any]]]


def _change(value: float | None, reference: float | None) -> str:
    share = ratio(value, reference)
    return "–" if share is None else f"{(share - 1) * 100:+.1f} %"


def _having(
    load: Load, scenarios: Sequence[Scenario], field: str
) -> tuple[list[Scenario], list[str]]:
    """The scenarios with a figure for ``field``, and the servers that have it there."""
    shown = [
        s
        for s in scenarios
        if any(row.get(field) is not None for row in load.get(s.name, {}).values())
    ]
    names = dict.fromkeys(
        name
        for s in shown
        for name, row in load.get(s.name, {}).items()
        if row.get(field) is not None
    )
    return shown, list(names)


def cost_table(load: Load, scenarios: Sequence[Scenario]) -> list[str]:
    """Per feature: µs CPU/msg with and without it, and the difference in %."""
    names = list(dict.fromkeys(name for rows in load.values() for name in rows))
    costs = feature_costs(names)
    shown = [s for s in scenarios if any(c.with_ in load.get(s.name, {}) for c in costs)]
    if not costs or not shown:
        return []
    out = [
        "",
        "### Cost of each feature (server µs CPU/msg, medians: with / without, and the change)",
        "",
        "| feature | with | without | " + " | ".join(s.name for s in shown) + " |",
        "| --- | --- | --- |" + " ---: |" * len(shown),
    ]
    for cost in costs:
        cells = []
        for scenario in shown:
            rows = load.get(scenario.name, {})
            with_, without = rows.get(cost.with_), rows.get(cost.without)
            if with_ is None or without is None:
                cells.append("–")
                continue
            cells.append(
                f"{fmt(with_['cpu'], 1)} / {fmt(without['cpu'], 1)} "
                f"({_change(with_['cpu'], without['cpu'])})"
            )
        head = f"| {cost.feature} | {cost.with_} | {cost.without} | "
        out.append(head + " | ".join(cells) + " |")
    return out


def process_table(load: Load, scenarios: Sequence[Scenario]) -> list[str]:
    """Blackhole's CPU per message by process: its workers, its hub (control API, shared
    rule state), and the rest of the tree (the supervisor)."""
    shown, names = _having(load, scenarios, "hub")
    if not shown:
        return []
    out = [
        "",
        "### Where Blackhole's CPU goes (µs CPU/msg, medians: workers / hub / whole tree)",
        "",
        "| server | " + " | ".join(s.name for s in shown) + " | GET /metrics answered |",
        "| --- |" + " ---: |" * (len(shown) + 1),
    ]
    for name in names:
        cells = []
        scrapes = 0
        for scenario in shown:
            row = load.get(scenario.name, {}).get(name)
            if row is None:
                cells.append("–")
                continue
            scrapes += row.get("scrapes", 0)
            cells.append(f"{fmt(row['worker'], 1)} / {fmt(row['hub'], 1)} / {fmt(row['cpu'], 1)}")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {scrapes or '–'} |")
    return out


def kernel_table(load: Load, scenarios: Sequence[Scenario]) -> list[str]:
    """Every server's CPU per message split into user space and the kernel: on
    loopback the kernel's part (system calls, and the TCP work of both ends that
    a sender's writes run) is much the same for any server speaking the same
    SMTP, so the user-space part is where servers differ."""
    shown, names = _having(load, scenarios, "user")
    if not shown:
        return []
    out = [
        "",
        "### User space and kernel (server µs CPU/msg, medians: user / kernel)",
        "",
        "| server | " + " | ".join(s.name for s in shown) + " |",
        "| --- |" + " ---: |" * len(shown),
    ]
    for name in names:
        cells = []
        for scenario in shown:
            row = load.get(scenario.name, {}).get(name)
            if row is None or row.get("user") is None or row.get("cpu") is None:
                cells.append("–")
                continue
            cells.append(f"{fmt(row['user'], 1)} / {fmt(row['cpu'] - row['user'], 1)}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out
