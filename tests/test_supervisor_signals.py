"""Signals to the real supervisor: TERM/INT drain, a second TERM, HUP reloads.

Mid-DATA sessions are driven by hand with smtplib's low-level calls, so that
a signal can arrive between two parts of one message.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import smtplib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.certs import self_signed
from tests.jsonlines import written_records
from tests.proctools import MailPump, send_mail, wait_until, workers
from tests.serverproc import ServerProcess
from tests.smtpclient import insecure_context

Factory = Callable[..., ServerProcess]
WriteConfig = Callable[[str], Path]

COMMON = "timeout = 10\nheartbeat_interval = 0.2\n"
BASE = "listen = 127.0.0.1:0\n" + COMMON
# RFC 3463: X.3.2 "system not accepting network messages" (we are stopping).
SHUTDOWN = (421, "4.3.2")


def open_transaction(port: int) -> smtplib.SMTP:
    """A session in the middle of DATA: 354 received, half the message sent."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo()
    assert client.mail("a@example.com")[0] == 250
    assert client.rcpt("b@example.com")[0] == 250
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    return client


def finish_transaction(client: smtplib.SMTP) -> tuple[int, bytes]:
    client.send(b"second half\r\n.\r\n")
    return client.getreply()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def final_reply(port: int) -> int:
    """The code of the final reply to a whole message (mode decides it)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        return client.data(b"Subject: t\r\n\r\nhi\r\n")[0]


# --- TERM / INT ----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_lets_the_message_in_flight_finish_and_tells_idle_sessions(
    server_factory: Factory, write_config: WriteConfig, signum: int
) -> None:
    # One worker, so that both sessions are on the one that is stopping.
    server = server_factory(write_config(BASE + "workers = 1\ngrace_period = 20\n"))
    port = server.port()
    busy = open_transaction(port)
    idle = smtplib.SMTP("127.0.0.1", port, timeout=10)
    idle.ehlo()
    server.proc.send_signal(signum)
    code, text = idle.getreply()  # unsolicited: idle sessions are told at once
    assert (code, text[:5].decode()) == SHUTDOWN
    wait_until(lambda: refused(port), what="the port to stop accepting")
    assert finish_transaction(busy)[0] == 250  # the message in flight was taken
    code, text = busy.getreply()  # and then the session is closed politely
    assert (code, text[:5].decode()) == SHUTDOWN
    assert server.proc.wait(15) == 0
    name = signal.Signals(signum).name
    assert f"{name}: stopping; sessions in flight have up to 20s" in server.text()


def test_term_to_the_whole_process_group_still_drains(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    # `timeout`, `kill -- -PGID` and systemd's control-group kill send SIGTERM
    # to every process at once: the workers must drain like on a forwarded
    # TERM, and their exit must not be read as a crash.
    config = write_config(BASE + "workers = 2\ngrace_period = 20\n")
    server = server_factory(config, new_session=True)
    busy = open_transaction(server.port())
    os.killpg(server.pid, signal.SIGTERM)
    server.wait_for("SIGTERM: stopping")
    assert finish_transaction(busy)[0] == 250
    assert server.proc.wait(15) == 0
    log = server.text()
    assert "killed by SIGTERM" not in log
    assert "during start-up" not in log
    assert log.count("exited with code 0") == 2


def test_term_during_start_up_is_a_clean_stop(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    config = write_config(BASE + "workers = 2\n")
    server = server_factory(config, new_session=True, ready=False)
    server.wait_for("running as root|WARNING|INFO")  # the supervisor is up, workers starting
    os.killpg(server.pid, signal.SIGTERM)
    assert server.proc.wait(15) == 0
    assert "during start-up" not in server.text()


def test_a_transaction_still_open_when_the_grace_period_ends_is_told_421(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    server = server_factory(write_config(BASE + "workers = 1\ngrace_period = 1\n"))
    busy = open_transaction(server.port())  # mid-DATA, and it never finishes
    server.proc.send_signal(signal.SIGTERM)
    code, text = busy.getreply()  # not a bare EOF: RFC 5321 3.8 allows 421 at any time
    assert (code, text[:5].decode()) == SHUTDOWN
    assert server.proc.wait(15) == 0
    busy.close()


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (proc(5)), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _draining(
    server_factory: Factory, write_config: WriteConfig, settings: str
) -> tuple[ServerProcess, smtplib.SMTP]:
    """A server with a transaction in flight, stopping: it has said so."""
    server = server_factory(write_config(BASE + settings))
    busy = open_transaction(server.port())
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for("SIGTERM: stopping")
    return server, busy


def test_the_supervisor_waits_out_the_grace_period_without_spinning(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    # With a heartbeat due in the past, its poll returned at once for the
    # whole grace period: a CPU at 100 % doing nothing.
    server, busy = _draining(server_factory, write_config, "workers = 1\ngrace_period = 2\n")
    start = _cpu_seconds(server.pid)
    assert start is not None
    last = start
    while (now := _cpu_seconds(server.pid)) is not None and server.proc.poll() is None:
        last = now
        busy.sock.settimeout(0.1)  # a pace for reading /proc, not a wait for readiness
        with contextlib.suppress(OSError):
            busy.sock.recv(100)
    assert server.proc.wait(15) == 0
    assert last - start < 0.5  # of a 2 s wait: no busy loop
    busy.close()


def test_second_term_during_the_grace_period_stops_at_once(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    server, busy = _draining(server_factory, write_config, "workers = 2\ngrace_period = 600\n")
    server.proc.send_signal(signal.SIGTERM)
    # Far below the 600 s of grace: the second signal cut it short.
    assert server.proc.wait(15) == 0
    assert "SIGTERM again: stopping now" in server.text()
    busy.close()


# --- HUP ------------------------------------------------------------------------------


def test_hup_applies_a_new_mode_to_new_sessions_without_refusing_any(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    config = write_config(BASE + "workers = 2\nmode = accept\n")
    server = server_factory(config)
    port = server.port()
    before = workers(server.pid)
    in_flight = open_transaction(port)
    with MailPump(port) as pump:
        wait_until(lambda: pump.count() >= 2, what="mail flowing")
        config.write_text(BASE + "workers = 2\nmode = bounce\n")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(r"configuration reloaded \(generation 2\).*mode bounce")
        wait_until(lambda: pump.count("bounced") >= 3, what="new sessions bounced")
    assert final_reply(port) >= 400
    # The session that started before the reload ends under the old mode.
    assert finish_transaction(in_flight)[0] == 250
    in_flight.quit()
    assert pump.count("refused") == 0
    assert set(pump.results) <= {"ok", "bounced"}, pump.results
    assert workers(server.pid) == before  # applied in place: no restart
    assert server.stop() == 0


def test_hup_with_a_broken_config_keeps_the_old_one(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    config = write_config(BASE + "workers = 1\n")
    server = server_factory(config)
    config.write_text(BASE + "workers = 1\nmode = loud\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"reload refused: .*blackhole.conf:5: mode must be one of")
    server.wait_for("still serving with the previous configuration")
    assert final_reply(server.port()) == 250
    assert server.stop() == 0


def test_hup_with_a_new_listener_binds_it_and_keeps_the_old_port(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    config = write_config(BASE + "workers = 2\n")
    server = server_factory(config)
    port = server.port()
    with MailPump(port) as pump:
        wait_until(lambda: pump.count() >= 2, what="mail flowing")
        config.write_text(COMMON + "workers = 2\nlisten = 127.0.0.1:0, 127.0.0.1:0 mode=bounce\n")
        server.proc.send_signal(signal.SIGHUP)
        line = server.wait_for(r"configuration reloaded \(generation 2\)")
        sent = pump.count()
        wait_until(lambda: pump.count() >= sent + 3, what="mail after the reload")
    ports = [int(p) for p in re.findall(r"smtp://127\.0\.0\.1:(\d+)", line)]
    assert ports[0] == port and len(ports) == 2
    assert final_reply(ports[1]) >= 400  # the new listener has its own flags
    assert final_reply(port) == 250
    assert pump.count("refused") == 0
    assert set(pump.results) == {"ok"}, pump.results
    assert server.stop() == 0


def _certificate(directory: Path, name: str) -> tuple[Path, Path, bytes]:
    cert_path, key_path = self_signed(directory, common_name=name, san=False)
    return cert_path, key_path, ssl.PEM_cert_to_DER_cert(cert_path.read_text())


def _served_certificate(port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        insecure_context().wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_hup_rereads_the_certificate(
    server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    cert, key, first = _certificate(tmp_path, "first.test")
    text = BASE + f"workers = 2\ntls_listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\n"
    server = server_factory(write_config(text))
    port = server.port("smtps")
    assert _served_certificate(port) == first
    _cert, _key, second = _certificate(tmp_path, "second.test")  # same paths, new pair
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\)")
    assert all(_served_certificate(port) == second for _ in range(4))  # every worker
    assert server.stop() == 0


def test_hup_reopens_the_log_file_for_logrotate(
    server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    log = tmp_path / "blackhole.log"
    config = write_config(BASE + f"workers = 1\nlog_file = {log}\nlog_format = json\n")
    server = server_factory(config, "-d", ready=False)
    wait_until(lambda: log.exists() and "listening on" in log.read_text(), what="start-up line")
    log.rename(tmp_path / "blackhole.log.1")  # what logrotate does
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: log.exists() and "configuration reloaded" in log.read_text(), what="reopen")
    found = re.search(r"smtp://127\.0\.0\.1:(\d+)", (tmp_path / "blackhole.log.1").read_text())
    assert found is not None
    port = int(found.group(1))
    assert send_mail(port) == {}
    # The worker writes to the new file too, and says which worker it is.
    entries = wait_until(
        lambda: [e for e in written_records(log.read_text()) if e.get("worker")],
        what="a worker's line in the new file",
    )
    assert {entry["worker"] for entry in entries} == {1}
    assert server.stop() == 0


def test_hup_changes_the_number_of_workers(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    config = write_config(BASE + "workers = 1\n")
    server = server_factory(config)
    first = wait_until(lambda: workers(server.pid), what="worker 1")
    config.write_text(BASE + "workers = 3\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\).*; 3 workers")
    grown = wait_until(lambda: len(w := workers(server.pid)) == 3 and w, what="3 workers")
    assert grown[1] == first[1]  # the one that was there stays
    config.write_text(BASE + "workers = 2\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 3\).*; 2 workers")
    wait_until(lambda: workers(server.pid) == {1: grown[1], 2: grown[2]}, what="worker 3 gone")
    assert send_mail(server.port()) == {}
    assert server.stop() == 0
