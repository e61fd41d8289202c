"""The tls_handshake_timeout key: parsed, bounded, listed, and used by the server."""

from __future__ import annotations

import pytest

from blackhole.config.classic import parse_config
from blackhole.config.model import Config, Listener
from blackhole.config.options import OPTION_NAMES
from blackhole.errors import ConfigError
from blackhole.server.context import build_context


def test_default_is_ten_seconds() -> None:
    assert Config().tls_handshake_timeout == 10.0
    assert parse_config("").tls_handshake_timeout == 10.0


@pytest.mark.parametrize(("text", "seconds"), [("1", 1.0), ("2.5", 2.5), ("60", 60.0)])
def test_accepted_values(text: str, seconds: float) -> None:
    assert parse_config(f"tls_handshake_timeout = {text}\n").tls_handshake_timeout == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "tls_handshake_timeout must be 1 to 60 seconds, not 0"),
        ("0.5", "tls_handshake_timeout must be 1 to 60 seconds, not 0.5"),
        ("61", "tls_handshake_timeout must be 1 to 60 seconds, not 61"),
        ("-1", "tls_handshake_timeout cannot be negative"),
        ("soon", "tls_handshake_timeout must be a number of seconds, not 'soon'"),
    ],
)
def test_refused_values(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"tls_handshake_timeout = {text}\n")


def test_listed_for_blackhole_config() -> None:
    assert "tls_handshake_timeout" in OPTION_NAMES


def test_sessions_get_it() -> None:
    config = parse_config("tls_handshake_timeout = 3\n")
    context = build_context(config, Listener("127.0.0.1", 0, tls=True), "x.test", None)
    assert context.tls_handshake_timeout == 3.0
