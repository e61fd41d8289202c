"""UNIX-socket listeners (``unix:/path`` in listen and lmtp_listen), end to end:
real servers, real clients (smtplib.LMTP, a raw socket client) over the socket file.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import Factory, config_file, start
from tests.serverproc import start_server
from tests.smtpclient import Client


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 107 bytes a socket address holds.
    directory = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def unix_client(path: Path) -> Client:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    client = Client(sock)
    assert client.reply().code == 220
    return client


def test_lmtp_over_a_unix_socket_with_smtplib(server_factory: Factory, sockdir: Path) -> None:
    path = sockdir / "lmtp.sock"
    server = start(server_factory, sockdir, f"lmtp_listen = unix:{path}\n")
    assert f"lmtp://unix:{path}" in server.text()
    with smtplib.LMTP(str(path), timeout=10) as lmtp:
        code, _ = lmtp.ehlo("client.test")  # smtplib.LMTP sends LHLO
        assert code == 250
        refused = lmtp.sendmail("a@example.com", ["b@example.com"], b"Subject: t\r\n\r\nhi\r\n")
        assert refused == {}
    assert server.stop() == 0


def test_lmtp_answers_each_recipient_over_a_unix_socket(
    server_factory: Factory, sockdir: Path
) -> None:
    path = sockdir / "lmtp.sock"
    start(server_factory, sockdir, f"lmtp_listen = unix:{path}\n")
    with unix_client(path) as client:
        client.expect("LHLO client.test", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.expect("RCPT TO:<c@example.com>", 250)
        client.expect("DATA", 354)
        client.send(b"Subject: t\r\n\r\nhi\r\n.\r\n")
        assert [reply.code for reply in client.replies(2)] == [250, 250]


def test_smtp_over_a_unix_socket_beside_tcp(server_factory: Factory, sockdir: Path) -> None:
    path = sockdir / "smtp.sock"
    server = start(server_factory, sockdir, f"listen = unix:{path}, 127.0.0.1:0 mode=bounce\n")
    with unix_client(path) as client:
        client.expect("EHLO client.test", 250)
        assert client.transaction().code == 250
        client.expect("QUIT", 221)
    with Client.connect(server.port()) as client:  # the TCP listener keeps its own flags
        client.expect("EHLO client.test", 250)
        assert client.transaction().code >= 400  # bounce: a 4xx or 5xx


def test_socket_mode_is_applied(server_factory: Factory, sockdir: Path) -> None:
    shared, private = sockdir / "shared.sock", sockdir / "private.sock"
    start(
        server_factory,
        sockdir,
        f"lmtp_listen = unix:{shared} socket_mode=0666, unix:{private} socket_mode=0600\n",
    )
    assert stat.S_IMODE(shared.stat().st_mode) == 0o666
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_a_stale_socket_file_is_replaced(server_factory: Factory, sockdir: Path) -> None:
    path = sockdir / "lmtp.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays; connecting to it is refused
    assert stat.S_ISSOCK(path.lstat().st_mode)
    start(server_factory, sockdir, f"lmtp_listen = unix:{path}\n")
    with unix_client(path) as client:
        client.expect("LHLO client.test", 250)


def test_a_live_socket_is_address_in_use(sockdir: Path) -> None:
    path = sockdir / "lmtp.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen()
        config = config_file(sockdir, f"mailname = mx.test\nlmtp_listen = unix:{path}\n")
        server = start_server(config, ready=False)
        assert server.proc.wait(timeout=30) == 69
        assert "address already in use" in server.text()
        assert path.exists()  # the other server's socket is left alone


def test_the_socket_file_is_removed_at_exit(server_factory: Factory, sockdir: Path) -> None:
    path = sockdir / "smtp.sock"
    server = start(server_factory, sockdir, f"listen = unix:{path}\n")
    assert path.exists()
    assert server.stop() == 0
    assert not path.exists()


def test_sighup_keeps_an_unchanged_socket_and_applies_new_flags(
    server_factory: Factory, sockdir: Path
) -> None:
    path = sockdir / "smtp.sock"
    config = config_file(sockdir, f"mailname = mx.test\nlisten = unix:{path}\n")
    server = server_factory(config)
    inode = path.stat().st_ino
    before = unix_client(path)  # a session open across the reload
    config.write_text(f"mailname = mx.test\nlisten = unix:{path} mode=bounce\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\)")
    assert path.stat().st_ino == inode  # the same socket, never unbound
    with unix_client(path) as client:
        client.expect("EHLO client.test", 250)
        assert client.transaction().code >= 400  # bounce: a 4xx or 5xx
    with before:
        before.expect("EHLO client.test", 250)
        assert before.transaction().code == 250  # it started under the old flags
    assert server.stop() == 0
    assert not path.exists()


def test_sighup_applies_a_new_socket_mode(server_factory: Factory, sockdir: Path) -> None:
    path = sockdir / "lmtp.sock"
    config = config_file(
        sockdir, f"mailname = mx.test\nlmtp_listen = unix:{path} socket_mode=0600\n"
    )
    server = server_factory(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config.write_text(f"mailname = mx.test\nlmtp_listen = unix:{path} socket_mode=0660\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\)")
    assert stat.S_IMODE(path.stat().st_mode) == 0o660


def test_sighup_dropping_a_socket_removes_its_file(server_factory: Factory, sockdir: Path) -> None:
    kept, dropped = sockdir / "kept.sock", sockdir / "dropped.sock"
    config = config_file(sockdir, f"mailname = mx.test\nlisten = unix:{kept}, unix:{dropped}\n")
    server = server_factory(config)
    config.write_text(f"mailname = mx.test\nlisten = unix:{kept}\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\)")
    assert not dropped.exists()
    with unix_client(kept) as client:
        client.expect("EHLO client.test", 250)


def test_rules_never_take_a_unix_client_for_an_ip(server_factory: Factory, sockdir: Path) -> None:
    rules = sockdir / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "no-ipv4"\nat = "connect"\nclient = "0.0.0.0/0"\n'
        'reply = "554 5.7.1 Go away"\n'
    )
    path = sockdir / "smtp.sock"
    server = start(server_factory, sockdir, f"listen = unix:{path}, 127.0.0.1:0\nrules = {rules}\n")
    with unix_client(path) as client:  # greeted with 220: the rule did not hold
        client.expect("EHLO client.test", 250)
    with Client.connect(server.port(), greet=False) as client:
        assert client.reply().code == 554


@pytest.mark.skipif(os.geteuid() != 0, reason="handing the socket to a user needs root")
def test_the_socket_belongs_to_the_configured_user(server_factory: Factory, sockdir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    sockdir.chmod(0o755)
    path = sockdir / "lmtp.sock"
    start(server_factory, sockdir, f"user = nobody\nlmtp_listen = unix:{path} socket_mode=0660\n")
    assert path.stat().st_uid == nobody.pw_uid
    assert path.stat().st_gid == nobody.pw_gid
    with unix_client(path) as client:  # root may connect whatever the mode
        client.expect("LHLO client.test", 250)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("unix:/nonexistent-dir/x.sock", "directory '/nonexistent-dir' does not exist"),
        ("unix:{dir}/x.sock socket_mode=0999", "socket_mode must be octal permission bits"),
        ("unix:{dir}/file", "exists and is not a socket"),
    ],
)
def test_a_bad_socket_entry_fails_the_config_test(sockdir: Path, entry: str, message: str) -> None:
    (sockdir / "file").write_text("not a socket")
    config = config_file(sockdir, f"lmtp_listen = {entry.format(dir=sockdir)}\n")
    result = subprocess.run(
        [sys.executable, "-m", "blackhole", "-t", "-c", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 64, result
    assert message in result.stdout + result.stderr
