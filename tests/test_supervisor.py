"""Supervisor and workers as real processes: titles, restarts, heartbeats, back-off.

Every test starts the real ``python -m blackhole`` on ephemeral ports and
watches its processes in /proc. Heartbeats are 0.2 s so nothing waits long.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from blackhole.supervisor.backoff import Backoff
from blackhole.supervisor.heartbeat import Heartbeat
from blackhole.supervisor.messages import FrameReader, Ping, Pong, encode
from blackhole.supervisor.process import describe_exit
from tests.proctools import MailPump, alive, cmdline, send_mail, tree, wait_until, workers
from tests.serverproc import ServerProcess

BASE = "listen = 127.0.0.1:0\ntimeout = 10\n"

Factory = Callable[..., ServerProcess]
WriteConfig = Callable[[str], Path]


def all_workers(server: ServerProcess, count: int) -> dict[int, int]:
    def complete() -> dict[int, int] | None:
        found = workers(server.pid)
        return found if len(found) == count else None

    return wait_until(complete, what=f"{count} workers of pid {server.pid}")


def replaced(server: ServerProcess, number: int, old_pid: int) -> int:
    def new_pid() -> int | None:
        pid = workers(server.pid).get(number)
        return pid if pid not in (None, old_pid) else None

    return wait_until(new_pid, what=f"a new worker {number}")


# --- without processes ------------------------------------------------------------


def test_frames_survive_any_chunking() -> None:
    data = encode(Ping(1)) + encode(Pong(2)) + encode(Ping(3))
    for size in (1, 2, 7, len(data)):
        reader = FrameReader()
        messages: list[object] = []
        for start in range(0, len(data), size):
            messages += reader.feed(data[start : start + size])
        assert messages == [Ping(1), Pong(2), Ping(3)]


def test_heartbeat_counts_from_the_oldest_unanswered_ping() -> None:
    beat = Heartbeat(interval=1.0, misses=3)
    assert beat.overdue(100.0) is None  # nothing sent: nobody to blame
    seq = beat.sent(100.0)
    beat.sent(101.0)
    assert beat.overdue(102.5) is None
    assert beat.overdue(103.5) == pytest.approx(3.5)
    beat.answered(seq)  # an old answer: a newer ping is still out
    assert beat.overdue(103.5) is not None
    beat.answered(beat.seq)
    assert beat.overdue(200.0) is None


def test_backoff_lets_a_burst_through_then_doubles_up_to_the_cap() -> None:
    backoff = Backoff(burst=3, stable=10.0, base=0.5, cap=4.0)
    delays = [backoff.delay(uptime=0.1) for _ in range(8)]
    assert delays == [0, 0, 0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.delay(uptime=60.0) == 0  # it ran long enough: a fresh start


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


# --- real processes -------------------------------------------------------------


def test_one_supervisor_and_n_named_workers(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    server = server_factory(write_config(BASE + "workers = 3\nheartbeat_interval = 0.2\n"))
    assert cmdline(server.pid) == "blackhole: master"
    found = all_workers(server, 3)
    assert sorted(found) == [1, 2, 3]
    assert all(cmdline(pid) == f"blackhole: worker {n}" for n, pid in found.items())
    text = server.text()
    assert text.count("listening on") == 1  # once, by the supervisor, with the real port
    assert f"smtp://127.0.0.1:{server.port()}" in text
    assert "; 3 workers (pid" in text
    assert send_mail(server.port()) == {}
    assert server.stop() == 0
    assert not any(alive(pid) for pid in found.values())


def test_killed_worker_is_replaced_at_once_while_mail_keeps_flowing(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    # A heartbeat of 30 s: the replacement can only come from the sentinel.
    server = server_factory(write_config(BASE + "workers = 2\nheartbeat_interval = 30\n"))
    before = all_workers(server, 2)
    with MailPump(server.port()) as pump:
        wait_until(lambda: pump.count() >= 3, what="mail flowing")
        os.kill(before[1], signal.SIGKILL)
        new = replaced(server, 1, before[1])
        server.wait_for(rf"worker 1 \(pid {before[1]}\) was killed by SIGKILL.*starting a new one")
        server.wait_for(rf"worker 1 is serving \(pid {new}\)")
        sent = pump.count()
        wait_until(lambda: pump.count() >= sent + 5, what="mail after the restart")
    assert workers(server.pid) == {1: new, 2: before[2]}  # the other one was left alone
    assert pump.count("refused") == 0
    # Only sessions that were on the killed worker at that instant may fail.
    failures = [result for result in pump.results if result != "ok"]
    assert len(failures) <= 3, failures
    assert server.stop() == 0


def test_hung_worker_is_killed_and_replaced(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    server = server_factory(write_config(BASE + "workers = 1\nheartbeat_interval = 0.2\n"))
    old = all_workers(server, 1)[1]
    os.kill(old, signal.SIGSTOP)  # a stuck event loop, as far as anyone can tell
    try:
        server.wait_for(rf"worker 1 \(pid {old}\) did not answer the heartbeat for \d")
        new = replaced(server, 1, old)
        server.wait_for(rf"worker 1 \(pid {old}\) was killed by SIGKILL \(did not answer")
    finally:
        os.kill(old, signal.SIGCONT) if alive(old) else None
    assert not alive(old)
    assert send_mail(server.port()) == {}
    assert workers(server.pid) == {1: new}
    assert server.stop() == 0


def test_restart_storm_is_damped(server_factory: Factory, write_config: WriteConfig) -> None:
    server = server_factory(
        write_config(BASE + "workers = 1\nheartbeat_interval = 0.2\n"),
        env={"BLACKHOLE_WORKER_START": "fork"},  # fast restarts, so the storm is quick
    )
    pid = all_workers(server, 1)[1]
    for _kill in range(3):  # the first three quick deaths are repaired at once
        os.kill(pid, signal.SIGKILL)
        pid = replaced(server, 1, pid)
    os.kill(pid, signal.SIGKILL)
    server.wait_for(rf"worker 1 \(pid {pid}\) .*restarting it in 0.5s \(4 quick exits in a row\)")
    pid = replaced(server, 1, pid)
    assert send_mail(server.port()) == {}
    assert server.stop() == 0


def test_workers_share_the_listening_sockets_bound_once(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    server = server_factory(write_config(BASE + "workers = 2\nheartbeat_interval = 0.2\n"))
    found = all_workers(server, 2)
    # Every process holds the same listening socket (same inode), none bound its own.
    inodes = {
        pid: {str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        for pid in [server.pid, *found.values()]
    }
    listening = _listening_inode(server.port())
    assert all(listening in held for held in inodes.values())
    assert server.stop() == 0


def _listening_inode(port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, st, inode = fields[1], fields[3], fields[9]
        if st == "0A" and int(local.split(":")[1], 16) == port:  # 0A: LISTEN
            return f"socket:[{inode}]"
    raise AssertionError(f"nothing listens on port {port}")


def test_supervisor_gone_makes_workers_drain_and_exit(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    server = server_factory(write_config(BASE + "workers = 2\nheartbeat_interval = 0.2\n"))
    found = all_workers(server, 2)
    server.proc.kill()  # SIGKILL: no chance to tell anyone
    server.proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in found.values()), what="orphans to exit")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port()), timeout=5).close()


def test_a_killed_supervisors_hub_directory_goes_at_the_next_start(
    server_factory: Factory, write_config: WriteConfig, short_tmpdir: Path
) -> None:
    env = {"TMPDIR": str(short_tmpdir)}
    first = server_factory(write_config(BASE), env=env)
    made = list(short_tmpdir.glob("blackhole-hub-*"))
    assert len(made) == 1, made
    assert (made[0] / "hub.sock").is_socket()
    processes = tree(first.pid)
    first.proc.kill()  # SIGKILL: it cannot remove its directory
    first.proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in processes), what="the hub and worker to exit")
    assert made[0].exists()
    second = server_factory(write_config(BASE), env=env)
    assert not made[0].exists(), "the next start kept a dead supervisor's directory"
    [mine] = short_tmpdir.glob("blackhole-hub-*")  # its own, kept while it runs
    assert (mine / "hub.sock").is_socket()
    assert second.stop() == 0
    assert not mine.exists()  # a clean stop removes its own
