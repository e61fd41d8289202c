"""The command line as a user meets it: real processes, real exit codes.

test_cli.py covers main() in-process; these run ``python -m blackhole`` (and
the installed ``blackhole_config`` script) and check what reaches the
terminal: the exact messages, the sysexits(3) codes, and never a traceback.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from blackhole.config.options import OPTION_NAMES, format_options
from tests.e2e import Factory, assert_clean_log, queue_id, start
from tests.proctools import alive, wait_until
from tests.serverproc import start_server
from tests.smtpclient import Client, insecure_context
from tests.tlsclients import dhparams, rsa_cert

EX_OK, EX_USAGE, EX_UNAVAILABLE, EX_NOPERM = 0, 64, 69, 77


def blackhole(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "blackhole", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        **kwargs,
    )


def assert_no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


# --- -t ------------------------------------------------------------------------------


def test_config_test_good(tmp_path: Path, cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    conf = tmp_path / "good.conf"
    conf.write_text(
        "# a classic file with every common key\n"
        "listen = :2525, :::2525 mode=bounce, 127.0.0.1:2526 delay=1-5\n"
        f"tls_listen = :4650\ntls_cert = {cert}\ntls_key = '{key}'  # quoted\n"
        'timeout = 0\ndelay = 2\nmode = "random"\nmax_message_size = 1024000\n'
        "dynamic_switch = false\nworkers = 2\nmailname = mx.test\n"
    )
    done = blackhole("-t", "-c", str(conf))
    assert (done.returncode, done.stdout, done.stderr) == (EX_OK, f"Config OK: {conf}\n", "")


def test_config_test_bad_lists_every_problem_with_line_numbers(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(
        "listen = 127.0.0.1:25x0\n"
        "tiemout = 30\n"
        "# a comment line\n"
        "mode = bounced\n"
        "delay = 61\n"
        "timeout = 500\n"
        "max_message_size = -3\n"
        "dynamic_switch = maybe\n"
        "workers\n"
        "mode = accept\n"
        "tls_listen = :4650\n"
    )
    done = blackhole("-t", "-c", str(conf))
    assert_no_traceback(done)
    assert done.returncode == EX_USAGE
    assert done.stdout == ""
    keys = ", ".join(OPTION_NAMES)
    expected = [
        f"{conf}:1: listen entry '127.0.0.1:25x0': port must be a number from 0 to 65535,"
        " not '25x0'",
        f"{conf}:2: unknown key 'tiemout' (did you mean 'timeout'?); the valid keys are: {keys}",
        f"{conf}:4: mode must be one of accept, bounce, random, not 'bounced'",
        f"{conf}:5: delay 61 seconds is over the maximum of 60",
        f"{conf}:6: timeout must be at most 180 seconds, not 500",
        f"{conf}:7: max_message_size must be 1 byte or more, not -3",
        f"{conf}:8: dynamic_switch must be true or false (or yes/no, on/off, 1/0), not 'maybe'",
        f"{conf}:9: expected 'key = value', found 'workers'",
        f"{conf}:10: mode is set twice, on lines 4 and 10; keep one",
        f"{conf}:11: tls_listen needs tls_cert and tls_key (or cert= and key= on each entry):"
        " a TLS listener cannot start without a certificate",
        "config test failed: 10 problems",
    ]
    assert done.stderr.splitlines() == [f"blackhole: {line}" for line in expected]
    # Without -t the same file stops the start, with the same messages.
    started = blackhole("-c", str(conf))
    assert started.returncode == EX_USAGE
    assert started.stderr.splitlines()[:-1] == done.stderr.splitlines()[:-1]
    assert started.stderr.splitlines()[-1] == "blackhole: 10 problems; not started"


def test_missing_config_file(tmp_path: Path) -> None:
    done = blackhole("-t", "-c", str(tmp_path / "nope.conf"))
    assert_no_traceback(done)
    assert done.returncode == EX_USAGE
    assert "nope.conf: cannot read the config file: No such file or directory" in done.stderr


# --- start-up failures -------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_port_in_use_exits_69(tmp_path: Path, busy_port: int) -> None:
    conf = tmp_path / "busy.conf"
    # The second listener is fine: nothing may stay bound after the failure.
    conf.write_text(f"listen = 127.0.0.1:0, 127.0.0.1:{busy_port}\n")
    done = blackhole("-c", str(conf))
    assert_no_traceback(done)
    assert done.returncode == EX_UNAVAILABLE
    assert done.stdout == ""
    assert done.stderr == (
        f"blackhole: cannot bind smtp://127.0.0.1:{busy_port}: address already in use\n"
    )


def _drop_bind_capability() -> None:
    # Tests run as root, and root's python lives where "nobody" cannot run it;
    # so the server keeps uid 0 but loses CAP_NET_BIND_SERVICE, which is what
    # binding below 1024 needs (capabilities(7); prctl(2) PR_CAPBSET_DROP: an
    # exec'd root process gets only the capabilities in its bounding set).
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_net_bind_service = 24, 10
    if libc.prctl(pr_capbset_drop, cap_net_bind_service, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def test_privileged_port_without_privilege_exits_77(tmp_path: Path) -> None:
    # The sysctl can make every port unprivileged; then port 1 is too, and
    # the check below says why the test cannot hold.
    assert _unprivileged_port_start() > 25, "ip_unprivileged_port_start makes port 25 free"
    conf = tmp_path / "priv.conf"
    conf.write_text("listen = 127.0.0.1:25\n")
    done = blackhole("-c", str(conf), preexec_fn=_drop_bind_capability)
    assert_no_traceback(done)
    assert done.returncode == EX_NOPERM, done.stderr
    assert done.stderr == (
        "blackhole: cannot bind smtp://127.0.0.1:25: permission denied"
        " (ports below 1024 need root or CAP_NET_BIND_SERVICE)\n"
    )


# --- signals ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signals_stop_cleanly(server_factory: Factory, tmp_path: Path, sig: int) -> None:
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\ngrace_period = 5\n")
    with Client.connect(server.port()) as idle:
        idle.expect("EHLO client.test", 250)
        assert queue_id(idle.transaction())
        assert server.stop(sig) == EX_OK
        # An idle session is told, not cut (RFC 5321 section 3.8: 421).
        reply = idle.reply()
        assert str(reply).startswith("421 4.3.2"), reply
        assert idle.closed()
    assert_clean_log(server)
    assert "KeyboardInterrupt" not in server.text()


# --- blackhole_config ----------------------------------------------------------------


def test_blackhole_config_prints_the_option_list() -> None:
    script = Path(sys.executable).with_name("blackhole_config")
    assert script.exists(), "the package is not installed with its scripts"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stderr) == (EX_OK, "")
    assert done.stdout == format_options() + "\n"
    for name in OPTION_NAMES:
        assert f"\n# {name}" in done.stdout, name
    # The output is itself a valid config file (every line a comment).
    assert all(not line or line.startswith("#") for line in done.stdout.splitlines())


# --- no config at all ----------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE, exc
            return False
        return True


def test_no_config_listens_on_loopback_2525_and_4650() -> None:
    assert blackhole("-t").stdout == "Config OK: built-in defaults (no -c given)\n"
    server = start_server(None, ready=False)
    try:
        line = server.wait_for(r"listening on|cannot bind", 20)
        if "cannot bind" in line:
            # Something else on this machine has a default port: then the
            # start must fail cleanly, say which port, and exit 69.
            assert server.proc.wait(10) == EX_UNAVAILABLE
            assert not (_port_free(2525) and _port_free(4650)), line
            assert "Traceback" not in server.text()
            return
        assert "smtp://127.0.0.1:2525 (STARTTLS)" in line
        assert "smtps://127.0.0.1:4650" in line
        assert "self-signed certificate" in server.text()
        with smtplib.SMTP("127.0.0.1", 2525, timeout=10) as client:
            client.starttls(context=insecure_context())
            assert client.sendmail("a@example.com", ["b@example.com"], "Subject: d\r\n\r\n") == {}
        with Client.connect(4650, tls=True) as client:
            client.expect("EHLO client.test", 250)
            assert queue_id(client.transaction())
        assert server.stop() == EX_OK
        assert_clean_log(server)
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL)


# --- -t catches what start-up would --------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("user = no-such-user-here", "user 'no-such-user-here' does not exist on this host"),
        ("group = no-such-group-here", "group 'no-such-group-here' does not exist on this host"),
    ],
)
def test_config_test_refuses_an_unknown_user_or_group(
    tmp_path: Path, line: str, message: str
) -> None:
    # It passed -t, then the start stopped with 64.
    conf = tmp_path / "b.conf"
    conf.write_text(f"listen = 127.0.0.1:0\n{line}\n")
    done = blackhole("-t", "-c", str(conf))
    assert done.returncode == EX_USAGE, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines()[0].startswith(f"blackhole: {message}")
    assert done.stderr.splitlines()[-1] == "blackhole: config test failed: 1 problem"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_config_test_with_dhparams_prints_no_raw_warning(tmp_path: Path, log_format: str) -> None:
    # cryptography's DH API printed a CryptographyDeprecationWarning on stderr.
    cert, key = rsa_cert(tmp_path)
    conf = tmp_path / "dh.conf"
    conf.write_text(
        f"listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\n"
        f"tls_dhparams = {dhparams(tmp_path)}\nlog_format = {log_format}\n"
    )
    done = blackhole("-t", "-c", str(conf))
    assert (done.returncode, done.stdout, done.stderr) == (EX_OK, f"Config OK: {conf}\n", "")


def test_start_with_dhparams_logs_only_json_lines(tmp_path: Path) -> None:
    cert, key = rsa_cert(tmp_path)
    conf = tmp_path / "dh.conf"
    conf.write_text(
        f"listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\n"
        f"tls_dhparams = {dhparams(tmp_path)}\nlog_format = json\n"
    )
    server = start_server(conf)
    assert server.stop() == EX_OK
    text = server.text()
    assert "listening on" in text
    for line in text.splitlines():
        assert isinstance(json.loads(line), dict), line
    assert "Deprecat" not in text


# --- -b with relative paths ----------------------------------------------------------


def test_background_reload_with_relative_paths(
    tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    # The daemon runs in /: a SIGHUP used to re-read "cert.pem" from there and
    # refuse the config. Paths are taken from where blackhole was started.
    cert, key = cert_pair
    (tmp_path / "cert.pem").write_bytes(cert.read_bytes())
    (tmp_path / "key.pem").write_bytes(key.read_bytes())
    (tmp_path / "blackhole.conf").write_text(
        "listen = 127.0.0.1:0\ntls_cert = cert.pem\ntls_key = key.pem\n"
        "pidfile = bh.pid\nlog_file = bh.log\n"
    )
    log = tmp_path / "bh.log"
    done = blackhole("-c", "blackhole.conf", "-b", cwd=tmp_path)
    assert done.returncode == EX_OK, done.stderr
    pid = int((tmp_path / "bh.pid").read_text())
    try:
        # With log_file the command says where the daemon is and where it logs.
        assert done.stderr == f"blackhole: started as pid {pid}, logging to {log}\n"
        assert Path(f"/proc/{pid}/cwd").readlink() == Path("/")
        os.kill(pid, signal.SIGHUP)
        wait_until(
            lambda: (
                "configuration reloaded" in log.read_text() or "reload refused" in log.read_text()
            ),
            what="the reload to finish",
        )
        assert "reload refused" not in log.read_text(), log.read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not alive(pid), what=f"daemon {pid} to exit")
