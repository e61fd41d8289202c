"""The ``state_url`` key: syntax checked by the loader, password never shown."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from blackhole.config.classic import parse_config
from blackhole.config.preflight import preflight
from blackhole.config.stateurl import shown, state_url
from blackhole.errors import EX_OK, EX_USAGE, ConfigError


def blackhole(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blackhole", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "redis://:s3cret@[::1]:7000/3",
        "redis://user:pw@redis.example/15",
        "rediss://redis.example:6380",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=2",
    ],
)
def test_good_urls_are_kept_as_written(url: str) -> None:
    assert state_url(url) == url
    assert parse_config(f"state_url = {url}\n").state_url == url


def test_default_is_none() -> None:
    assert parse_config("").state_url is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:6379", "redis://, rediss:// or unix://"),
        ("127.0.0.1:6379", "redis://, rediss:// or unix://"),
        ("redis://", "names no host"),
        ("redis://127.0.0.1:99999", "bad port"),
        ("redis://127.0.0.1:0", "bad port"),
        ("redis://127.0.0.1:6379/x", "bad database number"),
        ("unix://relative.sock", "absolute socket path"),
        ("unix:///run/redis.sock?db=x", "bad database number"),
    ],
)
def test_bad_urls_are_refused_with_the_line(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"mode = accept\nstate_url = {url}\n", "b.conf")
    assert "b.conf:2: state_url" in str(caught.value)
    assert why in str(caught.value)


def test_password_never_in_messages() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("state_url = redis://:hunter2@host:bad/0\n")
    assert "hunter2" not in str(caught.value)
    assert shown("redis://u:hunter2@host:1/0") == "redis://u:***@host:1/0"
    assert shown("redis://host/0") == "redis://host/0"


def test_config_test_checks_the_syntax_not_the_reachability(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    # Nothing listens on port 1: -t must not try to connect.
    good.write_text("listen = 127.0.0.1:0\nstate_url = redis://127.0.0.1:1/0\n")
    done = blackhole("-t", "-c", str(good))
    assert (done.returncode, done.stderr) == (EX_OK, "")
    bad = tmp_path / "bad.conf"
    bad.write_text("state_url = redis://127.0.0.1:6379/zero\n")
    done = blackhole("-t", "-c", str(bad))
    assert done.returncode == EX_USAGE
    assert f"{bad}:1: state_url has a bad database number" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_redis_package_is_a_config_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    config = parse_config("state_url = redis://127.0.0.1/0\n")
    assert preflight(config) == [
        "state_url needs the redis package: pip install 'blackhole[redis]'"
    ]
    assert preflight(parse_config("")) == []
