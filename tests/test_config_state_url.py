"""The ``state_url`` key: syntax checked by the loader, password never shown."""

from __future__ import annotations

import pytest

from blackhole.config.classic import parse_config
from blackhole.config.stateurl import shown, state_url
from blackhole.errors import ConfigError


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
