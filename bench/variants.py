"""Blackhole's variants: the same server with features switched on or off.

A variant is named ``blackhole-Nw[-nocount][+FEATURE...]``:

- ``-nocount``: counting off. Counting is always on in the product; this sets
  the benchmark switch ``BLACKHOLE_BENCH_NO_COUNTING=1`` (read once by each
  worker at start, ``blackhole.observe.uncounted``), so that its cost shows.
- ``+FEATURE``: one of ``FEATURES`` (a rules file of ``rulesets.py``, the event
  log, a ``/metrics`` scrape every second...), in any number, each at most once.

A new feature is one entry in ``FEATURES``: the config lines it adds, the
environment it sets, whether it needs the control API or a scraper.
``FEATURE_SERVERS`` is what ``--features`` adds to a run, each with the
scenarios it is needed for, and ``feature_costs`` the pairs the report's
"cost of each feature" table compares.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rulesets import RULESETS

NO_COUNTING_ENV = "BLACKHOLE_BENCH_NO_COUNTING"  # blackhole.observe.uncounted's


@dataclass(frozen=True)
class Feature:
    """What one ``+NAME`` adds to a Blackhole server."""

    name: str
    title: str
    # Extra lines of the server's config, given its work directory and name.
    config: Callable[[Path, str], list[str]] = lambda _workdir, _name: []
    env: dict[str, str] = field(default_factory=dict)
    control: bool = False  # control_listen on a free loopback port
    scrape: bool = False  # GET /metrics every second during each load (bench/scraper.py)
    needs_counting: bool = False  # told of messages by the meter: no -nocount


def _rules(name: str) -> Callable[[Path, str], list[str]]:
    def config(workdir: Path, server: str) -> list[str]:
        path = workdir / f"{server}.rules.toml"
        path.write_text(RULESETS[name])
        return [f"rules = {path}"]

    return config


def _event_log(workdir: Path, server: str) -> list[str]:
    return [f"event_log = {workdir / (server + '.events.jsonl')}"]


RULE_TITLES = {
    "nomatch20": "20 rules that match nothing",
    "greylist": "greylist on every recipient",
    "empty": "an empty rules file",
}
FEATURES: dict[str, Feature] = {
    **{name: Feature(name, RULE_TITLES[name], _rules(name)) for name in RULESETS},
    # The event log is told of each message by the meter: it needs counting.
    "eventlog": Feature("eventlog", "event log to a file", _event_log, needs_counting=True),
    "scrape": Feature("scrape", "GET /metrics every second", control=True, scrape=True),
}


@dataclass(frozen=True)
class Variant:
    workers: int
    counting: bool
    features: tuple[str, ...]
    # ``@NAME``: Blackhole run with REPO/.venv-NAME's interpreter (another
    # build, e.g. the mypyc-compiled one); "" for this one.
    build: str = ""

    @property
    def rules(self) -> list[str]:
        return [name for name in self.features if name in RULESETS]


def parse_variant(name: str) -> Variant:
    """``blackhole-2w-nocount+nomatch20`` -> Variant(2, False, ("nomatch20",))."""
    match = re.fullmatch(
        r"blackhole(?:-(\d+)w)?(-nocount)?((?:\+[a-z0-9]+)*)(?:@(\w[\w.-]*))?", name
    )
    hint = f"use blackhole-Nw[-nocount][+FEATURE...][@BUILD], FEATURE one of {', '.join(FEATURES)}"
    if match is None or int(match.group(1) or 1) < 1:
        raise SystemExit(f"bad server name {name!r}: {hint}")
    features = tuple(x for x in match.group(3).split("+") if x)
    unknown = [x for x in features if x not in FEATURES]
    if unknown:
        raise SystemExit(f"bad server name {name!r}: unknown feature {unknown[0]!r}; {hint}")
    if len(set(features)) != len(features):
        raise SystemExit(f"bad server name {name!r}: a feature is named twice")
    variant = Variant(
        int(match.group(1) or 1), match.group(2) is None, features, match.group(4) or ""
    )
    if len(variant.rules) > 1:
        raise SystemExit(f"bad server name {name!r}: one rules file at most")
    if not variant.counting:
        needy = [x for x in features if FEATURES[x].needs_counting]
        if needy:
            raise SystemExit(f"bad server name {name!r}: {needy[0]} needs counting (no -nocount)")
    return variant


def base_name(workers: int, counting: bool = True, *features: str, build: str = "") -> str:
    return (
        f"blackhole-{workers}w"
        + ("" if counting else "-nocount")
        + "".join("+" + x for x in features)
        + (f"@{build}" if build else "")
    )


# What --features adds to a run: each variant with the load scenarios it is
# compared in (none of them takes part in the TLS or idle phases).
_THREE = ("1k-reuse", "1k-new", "100k-reuse")
FEATURE_SERVERS: dict[str, tuple[str, ...]] = {
    "blackhole-1w": _THREE,  # the reference of the 1-worker variants
    "blackhole-1w-nocount": _THREE,
    "blackhole-1w+empty": ("1k-reuse", "100k-reuse"),
    "blackhole-1w+nomatch20": _THREE,
    "blackhole-1w+eventlog": _THREE,
    "blackhole-1w+scrape": _THREE,
    "blackhole-1w+nomatch20+eventlog": _THREE,  # every feature of a load test at once
    "blackhole-2w": ("1k-reuse",),
    "blackhole-2w+nomatch20": ("1k-reuse",),
    "blackhole-2w+greylist": ("1k-reuse",),
}


@dataclass(frozen=True)
class Cost:
    """One row of "cost of each feature": a server with it against one without."""

    feature: str
    with_: str
    without: str


def feature_costs(names: list[str]) -> list[Cost]:
    """The pairs to compare among the Blackhole servers ``names`` of a run.

    Each variant with features against the same server without them; the
    plain server against its ``-nocount`` twin (the cost of counting); and a
    variant with counting and several features against ``-nocount`` too (the
    cost of them all). Only pairs whose both servers ran.
    """
    present = set(names)
    costs = []
    for name in names:
        if not name.startswith("blackhole"):
            continue
        variant = parse_variant(name)
        plain = base_name(variant.workers, variant.counting, build=variant.build)
        bare = base_name(variant.workers, False, build=variant.build)
        titles = [FEATURES[x].title for x in variant.features]
        if not titles:
            if variant.counting and bare in present:
                costs.append(Cost("counting", name, bare))
            continue
        if plain in present:
            costs.append(Cost(" + ".join(titles), name, plain))
        if variant.counting and len(titles) > 1 and bare in present:
            costs.append(Cost(" + ".join(["counting", *titles]), name, bare))
    return costs
