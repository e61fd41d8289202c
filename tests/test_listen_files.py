"""The file-naming parts of listener entries (unix:, socket_mode=, cert=, key=)
and the UNIX socket binding rules, without a running server."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from blackhole.config.classic import parse_config
from blackhole.config.listen import ListenError, parse_listen
from blackhole.config.listenfiles import socket_mode
from blackhole.config.model import Config, Listener
from blackhole.errors import ConfigError, Unavailable
from blackhole.server.app import listener_keys
from blackhole.server.sockets import bind_listener, describe
from blackhole.server.unixsock import release


@pytest.fixture
def pem(tmp_path: Path) -> tuple[str, str]:
    """PEM-looking files: parsing sniffs the armour; loading them is start-up's."""
    (tmp_path / "c.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "k.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    return "c.pem", "k.pem"


def test_unix_entry_resolves_relative_paths_from_base(tmp_path: Path) -> None:
    (listener,) = parse_listen(
        "unix:lmtp.sock socket_mode=0660 name=local", lmtp=True, base=tmp_path
    )
    assert listener.path == str(tmp_path / "lmtp.sock")
    assert (listener.host, listener.port, listener.socket_mode) == ("unix", 0, 0o660)
    assert str(listener) == f"lmtp://unix:{tmp_path / 'lmtp.sock'}"


def test_cert_and_key_flags_resolve_from_base(tmp_path: Path, pem: tuple[str, str]) -> None:
    (listener,) = parse_listen(f":465 cert={pem[0]} key={pem[1]}", tls=True, base=tmp_path)
    assert (listener.cert, listener.key) == (str(tmp_path / pem[0]), str(tmp_path / pem[1]))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (":25 cert=c.pem", "cert= and key= go together"),
        (":25 key=k.pem", "cert= and key= go together"),
        (":25 cert=k.pem key=k.pem", "does not look like a PEM certificate"),
        (":25 cert=c.pem key=c.pem", "does not look like a PEM private key"),
        (":25 cert=missing.pem key=k.pem", "does not exist"),
        (":25 socket_mode=0600", "socket_mode= is for unix: listeners only"),
        ("unix:", "needs a path after unix:"),
        ("unix:nowhere/x.sock", "does not exist"),
        ("unix:.", "is a directory"),
        ("unix:" + "x" * 120, "longer than 107 bytes"),
    ],
)
def test_bad_flags_are_reported(
    tmp_path: Path, pem: tuple[str, str], value: str, problem: str
) -> None:
    with pytest.raises(ListenError) as caught:
        parse_listen(value, base=tmp_path)
    assert any(problem in text for text in caught.value.problems), caught.value.problems


def test_starttls_is_a_plain_listeners_flag(tmp_path: Path) -> None:
    (listener,) = parse_listen(":25 starttls=no", base=tmp_path)
    assert listener.starttls is False
    assert parse_listen(":25", base=tmp_path)[0].starttls is True
    with pytest.raises(ListenError) as caught:
        parse_listen(":465 starttls=no", tls=True, base=tmp_path)
    assert caught.value.problems == [
        "entry ':465 starttls=no': starttls= is for plain listeners (this one is TLS already)"
    ]


@pytest.mark.parametrize(("text", "mode"), [("0660", 0o660), ("600", 0o600), ("0o777", 0o777)])
def test_socket_mode_is_octal(text: str, mode: int) -> None:
    assert socket_mode(text) == mode


@pytest.mark.parametrize("text", ["", "0999", "1777", "rw-rw----", "0x1ff"])
def test_socket_mode_refuses_what_is_not_permission_bits(text: str) -> None:
    with pytest.raises(ValueError, match=r"octal|at most 0777"):
        socket_mode(text)


def test_tls_listen_needs_no_tls_cert_when_each_entry_has_its_own(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    config = parse_config(f"tls_listen = :465 cert={pem[0]} key={pem[1]}\n", base=tmp_path)
    pair = (str(tmp_path / pem[0]), str(tmp_path / pem[1]))
    assert config.listener_tls == (pair,)
    assert not config.tls_needed  # no shared context: the listener has its own
    with pytest.raises(ConfigError, match="tls_listen needs tls_cert and tls_key"):
        parse_config(f"tls_listen = :465 cert={pem[0]} key={pem[1]}, :466\n", base=tmp_path)


def test_listener_tls_lists_each_pair_once(tmp_path: Path, pem: tuple[str, str]) -> None:
    flags = f"cert={pem[0]} key={pem[1]}"
    config = parse_config(f"listen = :25 {flags}, :26 {flags}, :27\n", base=tmp_path)
    assert len(config.listener_tls) == 1
    assert not config.tls_needed  # :27 offers no STARTTLS: there is no tls_cert


def test_one_socket_path_cannot_have_two_listeners(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lmtp_listen repeats unix:"):
        parse_config(f"listen = unix:{tmp_path}/a.sock\nlmtp_listen = unix:{tmp_path}/a.sock\n")


def test_listener_keys_tell_socket_paths_apart() -> None:
    a = Listener("unix", 0, path="/run/a.sock")
    b = Listener("unix", 0, path="/run/b.sock")
    assert listener_keys([a, b]) == [("/run/a.sock", 0, False, 0), ("/run/b.sock", 0, False, 0)]


def _short_dir(tmp_path: Path) -> Path:
    # Socket addresses hold 107 bytes; pytest's directories can be longer.
    return tmp_path if len(str(tmp_path)) < 80 else Path("/tmp")


def test_bind_replaces_a_stale_socket_and_release_removes_it(tmp_path: Path) -> None:
    path = _short_dir(tmp_path) / f"bh-stale-{id(tmp_path)}.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    listener = Listener("unix", 0, path=str(path), socket_mode=0o640)
    sock = bind_listener(listener)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert describe(listener, sock) == f"smtp://unix:{path}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(str(path))  # ours now: it accepts
    finally:
        release(listener)
        sock.close()
    assert not path.exists()


def test_bind_refuses_a_live_socket_and_a_file(tmp_path: Path) -> None:
    path = _short_dir(tmp_path) / f"bh-live-{id(tmp_path)}.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(Unavailable, match="address already in use"):
            bind_listener(Listener("unix", 0, path=str(path)))
        assert path.exists()
    path.unlink()
    path.write_text("a file")
    with pytest.raises(Unavailable, match="exists and is not a socket"):
        bind_listener(Listener("unix", 0, path=str(path)))
    path.unlink()


def test_default_config_has_no_listener_tls() -> None:
    assert Config().listener_tls == ()
