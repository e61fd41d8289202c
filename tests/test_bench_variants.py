"""bench/run.py's Blackhole variants: names, what each starts, what --features adds, the pairs
of "cost of each feature"."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("bench_on_path")


def test_names_and_their_features() -> None:
    from variants import Variant, parse_variant

    assert parse_variant("blackhole") == Variant(1, True, ())
    assert parse_variant("blackhole-2w-nocount") == Variant(2, False, ())
    assert parse_variant("blackhole-1w+nomatch20+eventlog") == Variant(
        1, True, ("nomatch20", "eventlog")
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("blackhole-1w+nosuch", "unknown feature 'nosuch'"),
        ("blackhole-1w+scrape+scrape", "named twice"),
        ("blackhole-1w+nomatch20+greylist", "one rules file"),
        ("blackhole-1w-nocount+eventlog", "eventlog needs counting"),
        ("blackhole-0w", "bad server name"),
        ("blackhole-1w-counting", "bad server name"),
    ],
)
def test_bad_names_are_refused_with_the_reason(name: str, why: str) -> None:
    from variants import parse_variant

    with pytest.raises(SystemExit, match=why):
        parse_variant(name)


def test_a_variant_is_configured_as_named(tmp_path: Path) -> None:
    import run
    from servers import make_server
    from variants import NO_COUNTING_ENV

    options = run.parse_args(["--servers", "blackhole-2w+nomatch20+eventlog,blackhole-1w-nocount"])
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    both = make_server("blackhole-2w+nomatch20+eventlog", tmp_path, cert, key, options)
    argv, env = both.command()
    config = Path(argv[argv.index("-c") + 1]).read_text()
    assert "workers = 2\n" in config
    assert f"rules = {tmp_path / 'blackhole-2w+nomatch20+eventlog.rules.toml'}" in config
    assert "event_log = " in config and "control_listen" not in config
    assert NO_COUNTING_ENV not in env
    bare = make_server("blackhole-1w-nocount", tmp_path, cert, key, options)
    _argv, env = bare.command()
    assert env[NO_COUNTING_ENV] == "1"


def test_features_are_added_unless_servers_are_named() -> None:
    import run

    default = run.parse_args([])
    assert "blackhole-1w-nocount" in default.servers
    assert default.phases["blackhole-2w+greylist"] == {"1k-reuse"}
    assert "blackhole-1w" not in default.phases  # named by default: takes part in everything
    named = run.parse_args(["--servers", "smtp-sink,blackhole-1w"])
    assert named.servers == ["smtp-sink", "blackhole-1w"] and named.phases == {}
    with pytest.raises(SystemExit):
        run.parse_args(["--servers", "blackhole-1w+nosuch"])


def test_cost_pairs() -> None:
    from variants import feature_costs

    names = [
        "smtp-sink",
        "blackhole-1w",
        "blackhole-1w-nocount",
        "blackhole-1w+eventlog",
        "blackhole-1w+nomatch20+eventlog",
        "blackhole-2w+greylist",  # no blackhole-2w in this run: no pair
    ]
    pairs = [(c.with_, c.without) for c in feature_costs(names)]
    assert pairs == [
        ("blackhole-1w", "blackhole-1w-nocount"),
        ("blackhole-1w+eventlog", "blackhole-1w"),
        ("blackhole-1w+nomatch20+eventlog", "blackhole-1w"),
        ("blackhole-1w+nomatch20+eventlog", "blackhole-1w-nocount"),
    ]
