"""What a reload (SIGHUP) does to the control API: it keeps its address, and a
token once set; a reload never leaves it open to whoever reaches its port."""

from __future__ import annotations

import http.client
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from tests.serverproc import ServerProcess

TOKEN = "s3cret-token"
Factory = Callable[..., ServerProcess]


def status(port: int, token: str | None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        connection.request("GET", "/stats", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def start(server_factory: Factory, config: Path, text: str) -> tuple[ServerProcess, int]:
    """A server on ``text``; it and its control port."""
    config.write_text(text)
    server = server_factory(config)
    return server, server.control_port()


def reload(server: ServerProcess, config: Path, text: str) -> None:
    """The server's one reload, to ``text``."""
    config.write_text(text)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded")


WITH_TOKEN = f"listen = 127.0.0.1:0\ncontrol_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"


def test_a_reload_without_the_control_keys_keeps_the_api_and_its_token(
    server_factory: Factory, tmp_path: Path
) -> None:
    config = tmp_path / "blackhole.conf"
    server, port = start(server_factory, config, WITH_TOKEN)
    assert status(port, None) == 401
    reload(server, config, "listen = 127.0.0.1:0\n")
    server.wait_for(r"control_listen changed .* that takes a restart")
    server.wait_for(r"no control_token any more")
    assert status(port, None) == 401  # not opened by the reload
    assert status(port, TOKEN) == 200


def test_a_reload_rotates_the_token_and_keeps_the_address(
    server_factory: Factory, tmp_path: Path
) -> None:
    config = tmp_path / "blackhole.conf"
    server, port = start(server_factory, config, WITH_TOKEN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        other = probe.getsockname()[1]
    moved = f"control_listen = 127.0.0.1:{other}\ncontrol_token = new-token\n"
    reload(server, config, "listen = 127.0.0.1:0\n" + moved)
    server.wait_for(r"control_listen changed")
    assert status(port, TOKEN) == 401
    assert status(port, "new-token") == 200


def test_a_token_file_start_up_would_refuse_refuses_the_reload(
    server_factory: Factory, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    config = tmp_path / "blackhole.conf"
    text = f"listen = 127.0.0.1:0\ncontrol_listen = 127.0.0.1:0\ncontrol_token_file = {secret}\n"
    server, port = start(server_factory, config, text)
    secret.write_text("two words\n")
    config.write_text(text + "mode = bounce\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"reload refused: .*must hold one token")
    server.wait_for(r"still serving with the previous configuration")
    assert status(port, TOKEN) == 200
    assert status(port, "two") == 401


def test_a_refused_reload_keeps_the_previous_token(server_factory: Factory, tmp_path: Path) -> None:
    secret, rules = tmp_path / "token", tmp_path / "rules.toml"
    secret.write_text(TOKEN + "\n")
    rules.write_text('[[rule]]\nname = "r"\nat = "rcpt"\nreply = "450 4.2.0 no"\n')
    config = tmp_path / "blackhole.conf"
    text = (
        f"listen = 127.0.0.1:0\ncontrol_listen = 127.0.0.1:0\ncontrol_token_file = {secret}\n"
        f"rules = {rules}\n"
    )
    server, port = start(server_factory, config, text)
    secret.write_text("rotated-token\n")  # a good new token...
    rules.write_text("[[rule]]\nname = broken\n")  # ...in a reload refused for another reason
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"still serving with the previous configuration")
    assert status(port, TOKEN) == 200
    assert status(port, "rotated-token") == 401
