"""Privilege drop: bind as root, then run as ``user``/``group`` with no root id left.

CI runs the suite as root, which is what these tests need: they start the
real server as root with ``user = nobody`` and read every process's ids
from /proc/PID/status.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blackhole.errors import ConfigError, PermissionDenied
from blackhole.supervisor.privileges import drop_privileges, resolve_target
from tests.proctools import status, wait_until, workers
from tests.serverproc import ServerProcess

Factory = Callable[..., ServerProcess]
WriteConfig = Callable[[str], Path]
BASE = "listen = 127.0.0.1:0\nheartbeat_interval = 0.2\n"

NOBODY = pwd.getpwnam("nobody")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def ids(pid: int) -> tuple[list[int], list[int], list[int]]:
    """(real, effective, saved, fs uids), (the same gids), supplementary groups."""
    info = status(pid)
    return (
        [int(x) for x in info["Uid"].split()],
        [int(x) for x in info["Gid"].split()],
        [int(x) for x in info["Groups"].split()],
    )


def run_blackhole(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blackhole", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_resolve_nobody() -> None:
    target = resolve_target("nobody", None)
    assert target is not None
    assert (target.uid, target.gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert set(target.groups) == set(os.getgrouplist("nobody", NOBODY.pw_gid))
    assert resolve_target(None, None) is None


def test_unknown_user_or_group_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="user 'no-such-user-here' does not exist"):
        resolve_target("no-such-user-here", None)
    with pytest.raises(ConfigError, match="group 'no-such-group-here' does not exist"):
        resolve_target("nobody", "no-such-group-here")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("user = no-such-user-here", "user 'no-such-user-here' does not exist on this host"),
        ("group = no-such-group-here", "group 'no-such-group-here' does not exist on this host"),
    ],
)
def test_server_refuses_an_unknown_user_or_group(
    write_config: WriteConfig, key: str, message: str
) -> None:
    done = run_blackhole(write_config(BASE + key + "\n"))
    assert done.returncode == 64
    assert f"blackhole: {message}" in done.stderr


def test_switching_user_without_root_is_refused_with_77() -> None:
    target = resolve_target("root", None)
    assert target is not None
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgroups([NOBODY.pw_gid])
                os.setresgid(NOBODY.pw_gid, NOBODY.pw_gid, NOBODY.pw_gid)
                os.setresuid(NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_uid)
            drop_privileges(target)
        except PermissionDenied as exc:
            code = exc.exit_code if "only root can" in str(exc) else 2
        finally:
            os._exit(code)
    _pid, wait_status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 77


@as_root
def test_supervisor_and_workers_run_as_nobody_with_no_root_group(
    server_factory: Factory,
    write_config: WriteConfig,
    cert_pair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    cert, key = cert_pair
    root_only = tmp_path / "root-only-key.pem"
    root_only.write_bytes(key.read_bytes())
    root_only.chmod(0o600)  # as /etc/ssl/private keys are: the workers read a copy
    text = (
        BASE + "workers = 2\nuser = nobody\ntls_listen = 127.0.0.1:0\n"
        f"tls_cert = {cert}\ntls_key = {root_only}\n"
    )
    # The config is in a directory only root may enter (pytest's tmp_path).
    config = write_config(text)
    server = server_factory(config)
    found = wait_until(lambda: len(w := workers(server.pid)) == 2 and w, what="2 workers")
    uid, gid = NOBODY.pw_uid, NOBODY.pw_gid
    expected_groups = sorted(set(os.getgrouplist("nobody", gid)))
    for pid in [server.pid, *found.values()]:
        uids, gids, groups = ids(pid)
        assert uids == [uid] * 4 and gids == [gid] * 4, (pid, uids, gids)
        assert sorted(groups) == expected_groups
        assert 0 not in groups
    assert "running as user nobody" in server.text()
    # Only the supervisor keeps anything of root: two narrow capabilities.
    assert int(status(server.pid)["CapEff"], 16) == (1 << 2) | (1 << 10)
    for pid in found.values():
        assert int(status(pid)["CapPrm"], 16) == int(status(pid)["CapEff"], 16) == 0
    # Mail flows, over TLS too, with the key only root could read.
    context = ssl.create_default_context(cafile=str(cert))
    with smtplib.SMTP_SSL("localhost", server.port("smtps"), context=context, timeout=10) as c:
        assert c.sendmail("a@example.com", ["b@example.com"], "Subject: t\r\n\r\nhi\r\n") == {}
    # A replacement worker is no more privileged than the first.
    os.kill(found[1], signal.SIGKILL)
    new = wait_until(
        lambda: (p := workers(server.pid).get(1)) not in (None, found[1]) and p, what="worker 1"
    )
    assert ids(new)[0] == [uid] * 4
    assert int(status(new)["CapPrm"], 16) == 0  # forked or spawned: no capability
    # SIGHUP re-reads the root-only config and key as the unprivileged supervisor.
    config.write_text(text + "mode = bounce\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\).*mode bounce")
    with smtplib.SMTP_SSL("localhost", server.port("smtps"), context=context, timeout=10) as c:
        c.ehlo()
        c.mail("a@example.com")
        c.rcpt("b@example.com")
        assert c.data(b"Subject: t\r\n\r\nhi\r\n")[0] >= 400
    assert server.stop() == 0


@as_root
def test_group_alone_drops_every_other_group(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    nogroup = grp.getgrgid(NOBODY.pw_gid).gr_name
    server = server_factory(write_config(BASE + f"group = {nogroup}\n"))
    found = wait_until(lambda: workers(server.pid), what="a worker")
    for pid in [server.pid, *found.values()]:
        _uids, gids, groups = ids(pid)
        assert gids == [NOBODY.pw_gid] * 4
        assert groups == [NOBODY.pw_gid]  # root's group 0 is gone
    assert "running as root: set 'user'" in server.text()  # no user: still root, say so
    assert server.stop() == 0


@as_root
def test_log_file_the_user_cannot_write_is_refused(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # pytest's temporary directories are root's and 0700: nobody cannot get in.
    log = tmp_path / "bh.log"
    done = run_blackhole(write_config(BASE + f"user = nobody\nlog_file = {log}\n"))
    assert done.returncode == 77
    assert "cannot be opened: Permission denied (as user nobody)" in done.stderr


@as_root
def test_root_without_user_is_warned_about(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    server = server_factory(write_config(BASE))
    assert "WARNING blackhole.supervisor.privileges: running as root" in server.text()
    assert server.stop() == 0


def _wait_gone(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(0.02)
    return not path.exists()


@as_root
@pytest.mark.parametrize("where", ["root-only", "sticky"])
def test_pidfile_the_user_cannot_remove_is_removed_by_the_janitor(
    server_factory: Factory, write_config: WriteConfig, tmp_path: Path, where: str
) -> None:
    # "root-only": like /run, nobody may not write the directory at all.
    # "sticky": like /tmp (mode 1777), but the root-owned file may only be
    # removed by its owner. Either way the root janitor removes it at exit.
    directory = tmp_path / where
    directory.mkdir()
    if where == "sticky":
        directory.chmod(0o1777)
        tmp_path.chmod(0o755)
    pidfile = directory / "bh.pid"
    config = write_config(BASE + f"user = nobody\npidfile = {pidfile}\n")
    first = server_factory(config)
    assert pidfile.read_text() == f"{first.pid}\n"
    assert first.stop() == 0
    assert _wait_gone(pidfile), "the pidfile stayed behind after a clean stop"
    assert "cannot remove pidfile" not in first.text()  # no false warning either
    second = server_factory(config)
    assert pidfile.read_text() == f"{second.pid}\n"
    second.proc.kill()  # even after SIGKILL of the supervisor
    second.proc.wait()
    assert _wait_gone(pidfile), "the pidfile stayed behind after SIGKILL"
