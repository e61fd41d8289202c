"""The control API's config keys: control_listen, control_token, control_token_file."""

from __future__ import annotations

from pathlib import Path

import pytest

from blackhole.config.classic import load_config
from blackhole.config.model import Config
from blackhole.errors import ConfigError
from blackhole.supervisor.hubsockets import load_token


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "blackhole.conf"
    path.write_text(text)
    return load_config(path, base=tmp_path)


def _problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return str(caught.value)


def test_loopback_without_token_is_fine(tmp_path: Path) -> None:
    for address, host in (("127.0.0.1:8025", "127.0.0.1"), ("[::1]:0", "::1")):
        config = _load(tmp_path, f"control_listen = {address}\n")
        assert config.control_listen is not None
        assert config.control_listen[0] == host


@pytest.mark.parametrize("address", [":8025", "0.0.0.0:8025", "10.1.2.3:80", "mail.test:8025"])
def test_non_loopback_without_token_is_an_error(tmp_path: Path, address: str) -> None:
    assert "is not a loopback address" in _problems(tmp_path, f"control_listen = {address}\n")


def test_non_loopback_with_a_token_is_fine(tmp_path: Path) -> None:
    config = _load(tmp_path, "control_listen = :8025\ncontrol_token = s3cret\n")
    assert load_token(config) == "s3cret"


def test_token_file_is_resolved_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    config = _load(tmp_path, "control_listen = :0\ncontrol_token_file = token\n")
    assert config.control_token_file == str(tmp_path / "token")
    assert load_token(config) == "from-a-file"


def test_token_problems_are_named(tmp_path: Path) -> None:
    assert "control_token must be one word" in _problems(tmp_path, "control_token = a b\n")
    assert "does not exist" in _problems(tmp_path, "control_token_file = missing\n")
    (tmp_path / "token").write_text("x")
    both = _problems(tmp_path, "control_token = x\ncontrol_token_file = token\n")
    assert "choose one" in both
    assert "port must be" in _problems(tmp_path, "control_listen = 127.0.0.1:99999\n")


def test_an_empty_token_file_is_refused_when_read(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    config = _load(tmp_path, "control_token_file = token\n")
    with pytest.raises(ConfigError, match="must hold one token"):
        load_token(config)


def test_control_listen_on_a_smtp_listeners_port_is_a_clash(tmp_path: Path) -> None:
    text = "listen = 127.0.0.1:2525\nlmtp_listen = [::1]:2424\ncontrol_listen = [::1]:2424\n"
    assert _problems(tmp_path, text).endswith(
        "blackhole.conf:3: control_listen [::1]:2424 is already in lmtp_listen on line 2;"
        " the control API needs a port of its own"
    )
    # A wildcard takes every address of its family (each family binds apart).
    assert "control_listen 127.0.0.1:25 is already in listen on line 1" in _problems(
        tmp_path, "listen = :25\ncontrol_listen = 127.0.0.1:25\n"
    )
    assert "is already in listen" in _problems(
        tmp_path, "listen = 127.0.0.1:25\ncontrol_listen = 0.0.0.0:25\ncontrol_token = t\n"
    )
    assert _load(tmp_path, "listen = [::]:25\ncontrol_listen = 127.0.0.1:25\n").control_listen
    # Port 0 is any free port: never a clash.
    assert _load(tmp_path, "listen = 127.0.0.1:0\ncontrol_listen = 127.0.0.1:0\n").control_listen
