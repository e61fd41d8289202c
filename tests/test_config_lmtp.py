"""The ``lmtp_listen`` key: listen's syntax and flags, for LMTP listeners."""

from __future__ import annotations

from pathlib import Path

from blackhole.config.classic import parse_config
from blackhole.config.model import Listener
from blackhole.policy.modes import Mode
from tests.test_config_classic import LISTEN_FLAGS, problems


def test_lmtp_listen_makes_lmtp_listeners() -> None:
    config = parse_config("listen = :25\nlmtp_listen = 127.0.0.1:24 mode=bounce, [::1]:24\n")
    assert config.listeners == (
        Listener("0.0.0.0", 25),
        Listener("127.0.0.1", 24, mode=Mode.BOUNCE, lmtp=True),
        Listener("::1", 24, lmtp=True),
    )
    assert [str(listener) for listener in config.listeners[1:]] == [
        "lmtp://127.0.0.1:24",
        "lmtp://[::1]:24",
    ]


def test_lmtp_listen_alone_replaces_the_default_listeners() -> None:
    config = parse_config("lmtp_listen = 127.0.0.1:2424\n")
    assert config.listeners == (Listener("127.0.0.1", 2424, lmtp=True),)


def test_lmtp_listen_problems_are_reported_like_listen(tmp_path: Path) -> None:
    assert problems(
        tmp_path, "listen = 127.0.0.1:2525\nlmtp_listen = 127.0.0.1:2525, :1 fast=1, :x\n"
    ) == [
        f"FILE:2: lmtp_listen entry ':1 fast=1': unknown flag 'fast'; {LISTEN_FLAGS}",
        "FILE:2: lmtp_listen entry ':x': port must be a number from 0 to 65535, not 'x'",
        "FILE:2: lmtp_listen repeats 127.0.0.1:2525, already in listen on line 1; an address"
        " and port can have only one listener",
    ]
