"""``junk_command_limit`` and ``forbidden_commands``: parsed, checked, and in force."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from blackhole.config.classic import load_config
from blackhole.errors import ConfigError
from blackhole.protocol.settings import FORBIDDEN_COMMANDS
from tests.e2e import running
from tests.serverproc import ServerProcess
from tests.smtpclient import Client


def load(tmp_path: Path, text: str) -> tuple[int, frozenset[str]]:
    path = tmp_path / "blackhole.conf"
    path.write_text(text)
    config = load_config(path)
    return config.junk_command_limit, config.forbidden_commands


def test_defaults_are_postfix_ones(tmp_path: Path) -> None:
    assert load(tmp_path, "") == (100, FORBIDDEN_COMMANDS)
    assert {"CONNECT", "GET", "POST"} == FORBIDDEN_COMMANDS


@pytest.mark.parametrize(
    ("text", "verbs"),
    [
        ("CONNECT GET POST PUT", {"CONNECT", "GET", "POST", "PUT"}),
        ("get, post", {"GET", "POST"}),
        ("none", set()),
    ],
)
def test_forbidden_commands(tmp_path: Path, text: str, verbs: set[str]) -> None:
    assert load(tmp_path, f"forbidden_commands = {text}\n")[1] == verbs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("junk_command_limit = -1", "junk_command_limit must be 0 (no limit) or more, not -1"),
        ("junk_command_limit = many", "junk_command_limit must be a whole number"),
        ("forbidden_commands = GET /", "forbidden_commands must be command verbs"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "blackhole.conf"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = "listen = 127.0.0.1:0\njunk_command_limit = 3\nforbidden_commands = none\n"
    with running(tmp_path_factory.mktemp("limits"), config) as s:
        yield s


def test_a_configured_junk_limit_is_in_force(server: ServerProcess) -> None:
    with Client.connect(server.port()) as client:
        client.send(b"NOOP\r\n" * 4)
        assert [r.code for r in client.replies(4)] == [250, 250, 250, 421]
        assert client.closed()


def test_forbidden_commands_none_lets_http_verbs_be_unknown_commands(server: ServerProcess) -> None:
    with Client.connect(server.port()) as client:
        client.send(b"GET / HTTP/1.1\r\n")
        assert client.replies(1)[0].code == 502
        client.expect("EHLO c", 250)
