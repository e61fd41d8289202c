"""Medians over the repetitions, ratios between servers, and how figures are written."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from handshakes import TlsRun
from load import LoadRun

# Column key of a summary row -> attribute of a run.
LOAD_FIELDS = {
    "rate": "msgs_per_s",
    "cpu": "cpu_us_per_msg",
    "user": "user_cpu_us_per_msg",
    "srv": "server_cpu_pct",
    "gen": "generator_cpu_pct",
    "other": "other_cpu_pct",
    "worker": "worker_cpu_us_per_msg",  # Blackhole only (None for the others)
    "hub": "hub_cpu_us_per_msg",
}
TLS_FIELDS = {
    "rate": "per_s",
    "cpu": "cpu_us_per_handshake",
    "client_us": "client_us_per_handshake",
    "srv": "server_cpu_pct",
    "client": "client_cpu_pct",
    "other": "other_cpu_pct",
}


def median_or_none(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def fmt_auto(value: float | None) -> str:
    """Three significant figures or so: 26.1, 263, 10,516."""
    if value is None:
        return "–"
    return fmt(value, 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0)


def _medians(runs: Sequence[LoadRun | TlsRun], fields: Mapping[str, str]) -> dict[str, Any]:
    """One row: each field's median over the successful runs; runs and failures counted."""
    ok = [run for run in runs if run.ok]
    row: dict[str, Any] = {
        key: median_or_none([getattr(run, attr) for run in ok]) for key, attr in fields.items()
    }
    row["runs"] = len(runs)
    row["failed"] = len(runs) - len(ok)
    return row


def summarize(runs: list[LoadRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> server -> medians over successful runs, failures counted."""
    groups: dict[str, dict[str, list[LoadRun]]] = {}
    for run in runs:
        groups.setdefault(run.scenario, {}).setdefault(run.server, []).append(run)
    return {
        scenario: {
            server: {
                **_medians(group, LOAD_FIELDS),
                "drops": sum(run.listen_drops for run in group),
                "scrapes": sum(run.scrapes for run in group),
                "count": group[0].count,
            }
            for server, group in by_server.items()
        }
        for scenario, by_server in groups.items()
    }


def tls_summary(runs: list[TlsRun]) -> dict[str, dict[str, Any]]:
    """server -> medians over successful runs, failures counted."""
    groups: dict[str, list[TlsRun]] = {}
    for run in runs:
        groups.setdefault(run.server, []).append(run)
    return {server: _medians(group, TLS_FIELDS) for server, group in groups.items()}
