"""bench/floor.py, the floor Blackhole's CPU per message is compared with: it must
carry the bench's real load (Postfix smtp-source, with and without connection
reuse, and a pipelined client) to the end, or its figure would be no floor."""

from __future__ import annotations

import shutil
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proctools import wait_until

FLOOR = Path(__file__).resolve().parent.parent / "bench" / "floor.py"


@pytest.fixture(params=["interpreted", "compiled"])
def floor(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    bench_on_path: None,
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The floor as bench/worker_cost.py runs it next to each build of Blackhole."""
    port_file = tmp_path / "port"
    if request.param == "interpreted":
        argv = [sys.executable, str(FLOOR), str(port_file)]
    else:
        from floor_build import compiled_floor_argv

        # Built by mypyc once per test process, into its own temporary root.
        argv = compiled_floor_argv(sys.executable, tmp_path_factory.getbasetemp(), [str(port_file)])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        text = wait_until(
            lambda: port_file.read_text() if port_file.exists() else "", what="the floor's port"
        )
        yield proc, int(text)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize("reuse", [False, True])
def test_smtp_source_delivers_every_message(
    floor: tuple[subprocess.Popen[str], int], reuse: bool
) -> None:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    argv = [source, "-s", "3", "-m", "30", "-l", "3000", "-M", "localhost"]
    argv += ["-d"] if reuse else []
    argv += ["-f", "a@localhost", "-t", "b@localhost", f"127.0.0.1:{floor[1]}"]
    # smtp-source exits non-zero on any reply it did not expect or a lost connection.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_pipelined_commands_and_an_empty_message_get_one_reply_each(
    floor: tuple[subprocess.Popen[str], int],
) -> None:
    with socket.create_connection(("127.0.0.1", floor[1]), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
        assert [reader.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        sock.sendall(b".\r\nQUIT\r\n")  # an empty message, then QUIT in the same read
        assert [reader.readline()[:3] for _ in range(2)] == [b"250", b"221"]
        assert reader.readline() == b""  # closed after 221


def test_a_message_split_inside_its_end_is_still_found(
    floor: tuple[subprocess.Popen[str], int],
) -> None:
    client = smtplib.SMTP("127.0.0.1", floor[1], timeout=10)
    try:
        code, _ = client.docmd("DATA")
        assert code == 354
        client.send(b"Subject: x\r\n\r\nbody\r\n.")
        client.send(b"\r\n")
        assert client.getreply()[0] == 250
    finally:
        client.close()


def test_sigusr1_reports_its_cpu(floor: tuple[subprocess.Popen[str], int]) -> None:
    proc, _port = floor
    proc.send_signal(signal.SIGUSR1)
    assert proc.stdout is not None
    word, total, user = proc.stdout.readline().split()
    assert word == "cpu" and float(total) >= float(user) > 0


@pytest.mark.usefixtures("bench_on_path")
@pytest.mark.parametrize("name", ["floor", "floor@mypyc"])
def test_run_py_serves_the_floor_in_the_smtp_loads_and_latency_only(
    tmp_path: Path, name: str
) -> None:
    from run import make_servers, parse_args
    from servers import make_cert

    cert, key = make_cert(tmp_path)
    options = parse_args(["--servers", f"smtp-sink,{name}"])
    server = make_servers(options, tmp_path, cert, key)[1]
    assert server.has_smtp and not server.has_tls
    assert server.takes_part("1k-new") and server.takes_part("latency")
    assert not server.takes_part("idle") and not server.takes_part("tls-sessions")
    server.start()  # polls until it greets with 220
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert sock.makefile("rb").readline().startswith(b"220")
    finally:
        server.stop()
    assert server.proc is None
    # floor@mypyc is the same script compiled by .venv-mypyc's mypyc.
    assert any(tmp_path.rglob("floor-mypyc/floor.*.so")) == (name == "floor@mypyc")


@pytest.mark.usefixtures("bench_on_path")
def test_the_floor_is_compiled_exactly_when_blackhole_is(tmp_path: Path) -> None:
    from blackhole.server import connection
    from floor_build import floor_argv

    compiled = not connection.__file__.endswith(".py")
    argv, how = floor_argv(tmp_path, ["PORT_FILE"])
    assert how == ("compiled by mypyc" if compiled else "interpreted")
    assert argv[0] == sys.executable and argv[-1] == "PORT_FILE"
    assert any(tmp_path.glob("floor-mypyc/floor.*.so")) == compiled
