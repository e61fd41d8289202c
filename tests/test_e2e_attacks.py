"""Hostile and broken clients over real sockets: one test per attack class.

Each test checks three things: the reply the attack gets, that the session
(or the server) goes on serving, and that nothing was logged as a crash.
Where the classic server spun the event loop (EOF in DATA, overlong lines) the
server's CPU time is read from /proc over an idle window afterwards.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from pathlib import Path

import pytest

from tests.e2e import (
    Factory,
    assert_clean_log,
    assert_no_spin,
    connections,
    queue_id,
    rss_kib,
    shared_server,
    start,
)
from tests.proctools import wait_until
from tests.serverproc import ServerProcess
from tests.smtpclient import Client
from tests.test_e2e_counting import event_lines

# One server takes every attack in turn, as a real one would; tests that
# need their own configuration start their own.
server = shared_server("listen = 127.0.0.1:0\ntimeout = 10\n")


def _reset(client: Client) -> None:
    """Close with a TCP RST rather than a FIN (SO_LINGER 0, socket(7))."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"],
    ids=["LF.LF", "CR.CR", "LF.CRLF", "CRLF.LF", "CR.CRLF"],
)
def test_smtp_smuggling_bare_lf_dot_does_not_end_data(
    server: ServerProcess, fake_end: bytes
) -> None:
    # SMTP smuggling (CVE-2023-51764 class): only <CRLF>.<CRLF> ends DATA
    # (RFC 5321 section 4.1.1.4), so a second message hidden behind a bare
    # <LF>.<LF> is body text, never a new transaction.
    with Client.connect(server.port()) as client:
        client.into_data()
        client.send(
            b"Subject: outer\r\n\r\nfirst part"
            + fake_end
            + b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.com>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nsecond\r\n"
        )
        # No reply may come for the smuggled commands: the server is still in DATA.
        client.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.reply()
        client.sock.settimeout(10)
        client.send(b".\r\nQUIT\r\n")
        assert queue_id(client.reply())
        assert client.reply().code == 221
        assert client.closed()
    assert_clean_log(server)


def test_overlong_command_line(server: ServerProcess) -> None:
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        # Classic bug: a line over 64 KiB killed the session.
        client.send(b"MAIL FROM:<" + b"a" * 100_000 + b"@example.com>\r\n")
        reply = client.reply()
        assert str(reply).startswith("500 5.5.2"), reply
        # One reply for the one line, not one per buffer-full.
        client.expect("NOOP", 250)
        assert queue_id(client.transaction())
        # A 100 KB line that never ends is dropped as it comes, and then ends.
        client.send(b"X" * 100_000)
        assert_no_spin(server.pid, window=0.7)
        client.send(b"\r\n")
        assert str(client.reply()).startswith("500 5.5.2")
        client.expect("NOOP", 250)
    assert_no_spin(server.pid, window=0.7)
    assert_clean_log(server)


def test_overlong_text_line_in_data(server: ServerProcess) -> None:
    # RFC 5321 section 4.5.3.1.6: 1000 octets per text line.
    with Client.connect(server.port()) as client:
        client.into_data()
        client.send(b"Subject: long\r\n\r\n" + b"w" * 5000 + b"\r\n.\r\n")
        assert str(client.reply()).startswith("500 5.5.2")
        assert queue_id(client.transaction())


@pytest.mark.parametrize(
    "line",
    [b"EHLO \xff\xfe\xfd", b"MAIL FROM:<a\x00b@example.com>", b"\x00\x00\x00", b"NOOP\x1b[2J"],
    ids=["latin1", "nul-in-path", "nuls", "escape"],
)
def test_non_utf8_and_nul_bytes(server: ServerProcess, line: bytes) -> None:
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        reply = client.cmd(line)
        assert str(reply).startswith("500 5.5.2"), reply
        client.expect("NOOP", 250)
        assert queue_id(client.transaction())
    assert_clean_log(server)


def test_eof_in_data(server: ServerProcess) -> None:
    # Classic bug: EOF in the middle of DATA spun the loop at 100% CPU.
    for close in ("fin", "rst", "half"):
        client = Client.connect(server.port())
        client.into_data()
        client.send(b"Subject: cut\r\n\r\npart of a body\r\n.")
        if close == "fin":
            client.close()
        elif close == "rst":
            _reset(client)
        else:
            # Half-close: the client stops writing but would still read.
            client.sock.shutdown(socket.SHUT_WR)
            assert client.closed(), "the server kept a half-closed session open"
            client.close()
    assert_no_spin(server.pid)
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    assert_clean_log(server)


def test_slow_client(server_factory: Factory, tmp_path: Path) -> None:
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\ntimeout = 1\n")
    with Client.connect(server.port()) as client:
        # One byte at a time, each well inside the idle timeout.
        for byte in b"EHLO slow.client.test\r\n":
            client.send(bytes([byte]))
            time.sleep(0.01)
        assert client.reply().code == 250
        client.expect("QUIT", 221)
    with Client.connect(server.port()) as client:
        # Slowloris: a byte now and then, never a whole line. RFC 5321
        # section 4.5.3.2.7 times the wait for the next *command*, so bytes of
        # a command that never ends do not keep the session alive.
        client.send(b"MAIL FROM:<")
        started = time.monotonic()
        client.sock.settimeout(0.25)
        reply = None
        for _ in range(40):  # 10 s at most
            try:
                reply = client.reply()
                break
            except TimeoutError:
                client.send(b"a")
        assert reply is not None, "the slowloris was never cut"
        assert str(reply).startswith("421 4.4.2"), reply
        assert time.monotonic() - started < 8
        assert client.closed()
    assert_clean_log(server)


def test_plaintext_on_smtps_port(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    cert, key = cert_pair
    server = start(
        server_factory,
        tmp_path,
        f"tls_listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\ntimeout = 10\n",
        "-d",  # debug logging: even then, no traceback
    )
    port = server.port("smtps")
    for payload in (
        b"EHLO client.test\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"\x16\x03\x01\x00\x05zzzzz",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(payload)
            sock.settimeout(10)
            data = b""
            # The server closes; it never answers in plaintext.
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass
            assert b"220" not in data and b"ESMTP" not in data, data
    with Client.connect(port, tls=True) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    assert_clean_log(server)
    assert "Exception" not in server.text()


def test_client_disconnects_mid_handshake(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    cert, key = cert_pair
    server = start(
        server_factory,
        tmp_path,
        f"listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\ntls_cert = {cert}\n"
        f"tls_key = {key}\ntimeout = 10\ngrace_period = 20\n",
        "-d",
    )
    port = server.port("smtps")
    # Connect and go before saying anything; and go right after the ClientHello.
    for _ in range(3):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = ssl.create_default_context().wrap_bio(
            ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost"
        )
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(outgoing.read())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    # Mid-handshake on the plain port too: greeting, then gone.
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port("smtp")), timeout=10)
        sock.close()
    with Client.connect(port, tls=True) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    with Client.connect(server.port("smtp")) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    assert_no_spin(server.pid, window=0.5)
    # Sessions that died mid-handshake are gone: nothing holds the stop up
    # for the grace period (they once stayed registered forever).
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    assert_clean_log(server)


def test_client_that_never_reads_its_replies(server_factory: Factory, tmp_path: Path) -> None:
    # Reply amplification: "EHLO c" is 8 bytes in and over 200 out. A client
    # that pipelines it and never reads once made the server buffer every
    # reply (20 MB in, 1 GB of memory). Flow control must stop reading instead.
    # (EHLO, not EXPN: EXPN is a junk command, and 100 of them end the session.)
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\ntimeout = 1\n")
    greedy = socket.create_connection(("127.0.0.1", server.port()), timeout=10)
    assert greedy.recv(100).startswith(b"220 ")
    before = rss_kib(server.pid)
    greedy.setblocking(False)
    batch = b"EHLO c\r\n" * 10_000
    sent, stalled_since = 0, time.monotonic()
    while sent < 16_000_000 and time.monotonic() - stalled_since < 0.5:
        try:
            sent += greedy.send(batch)
            stalled_since = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    grown = rss_kib(server.pid) - before
    assert grown < 20 * 1024, f"RSS grew by {grown // 1024} MiB after {sent // 1000} KB sent"
    assert sent < 16_000_000, "the server read everything: it never pushed back"
    # Meanwhile everyone else is served, and the greedy client costs no CPU.
    with Client.connect(server.port()) as other:
        other.expect("EHLO client.test", 250)
        assert queue_id(other.transaction())
    assert_no_spin(server.pid, window=0.5)
    # It is idle (timeout 1 s); its 421 cannot be delivered either, so after
    # another timeout the connection is dropped rather than kept for ever.
    deadline = time.monotonic() + 10
    dropped = False
    while not dropped and time.monotonic() < deadline:
        try:
            greedy.send(b"x")
        except BlockingIOError:
            pass
        except OSError:
            dropped = True
        time.sleep(0.05)
    greedy.close()
    assert dropped, "a client that never reads kept its connection"
    assert_clean_log(server)


def test_slow_reader_gets_every_reply_in_order(server: ServerProcess) -> None:
    with Client.connect(server.port()) as client:
        # 16,000 pipelined commands (128 KB), 3 MB of replies read only once
        # all are sent: more than the socket buffers hold, so the server
        # pauses and resumes; nothing may be lost or reordered. (EHLO and
        # HELO, not EXPN: 100 junk commands in a row end the session.)
        client.send(b"EHLO c\r\n" * 12000 + b"NOOP\r\n" + b"HELO c\r\n" * 4000)
        for _ in range(12000):
            assert len(client.reply().lines) == 14
        assert client.reply().code == 250
        for _ in range(4000):
            assert client.reply().lines == ["mx.test Hello c"]
        client.expect("QUIT", 221)


def session_ends(events: Path) -> list[object]:
    lines = event_lines(events) if events.exists() else []
    return [line["end"] for line in lines if line["type"] == "session"]


def test_smtps_silent_and_stalled_handshakes_time_out(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    cert, key = cert_pair
    server = start(
        server_factory,
        tmp_path,
        f"tls_listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\ntimeout = 1\n"
        f"event_log = {tmp_path / 'events.jsonl'}\n",
    )
    port = server.port("smtps")
    # A client that connects and says nothing, one that stops half-way
    # through its ClientHello, and one that finishes the handshake and then
    # idles: all three are let go after the timeout, none holds a slot.
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost"
    )
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    stalled.sendall(outgoing.read()[:20])
    with Client.connect(port, tls=True) as idle:
        assert str(idle.reply()).startswith("421 4.4.2")
        assert idle.closed()
    for sock in (silent, stalled):
        with sock:
            assert sock.recv(100) == b""  # closed, without a word in plaintext
    assert_clean_log(server)

    # The idle timeout ended all three, handshake or not (the event log's end).
    def three() -> list[object] | None:
        ends = session_ends(tmp_path / "events.jsonl")
        return ends if len(ends) == 3 else None

    assert wait_until(three, what="three session lines") == ["timeout"] * 3


def test_reset_right_after_starttls_costs_nothing(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    # A client that sends STARTTLS (or connects to SMTPS) and resets at once
    # is gone before the handshake starts. The handshake used to start anyway
    # and wait out the whole timeout holding ~30 KiB of buffers: a thousand
    # such clients held 30 MB for a minute.
    cert, key = cert_pair
    server = start(
        server_factory,
        tmp_path,
        f"listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\ntls_cert = {cert}\n"
        f"tls_key = {key}\ntimeout = 60\n",
    )
    with Client.connect(server.port("smtp")) as warm:  # every code path loaded
        warm.expect("EHLO client.test", 250)
        warm.expect("STARTTLS", 220)
    before = rss_kib(server.pid)
    for n in range(1000):
        tls = n % 4 == 0
        sock = socket.create_connection(
            ("127.0.0.1", server.port("smtps" if tls else "smtp")), timeout=10
        )
        if not tls:
            assert sock.recv(100).startswith(b"220 ")
            sock.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with Client.connect(server.port("smtp")) as client:  # all of them were seen
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    grown = rss_kib(server.pid) - before
    assert grown < 12 * 1024, f"RSS grew by {grown // 1024} MiB for 1000 vanished clients"
    assert_clean_log(server)


def test_many_connections_burst(server: ServerProcess) -> None:
    # A load test opens hundreds of connections at once; none may be refused
    # or left without a greeting (the classic backlog of 100 dropped SYNs).
    count = 500
    with connections(server.port(), count) as socks:
        greeted = 0
        for sock in socks:
            sock.settimeout(10)
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(100)
                if not chunk:
                    break
                data += chunk
            assert data == b"220 mx.test ESMTP\r\n", data
            greeted += 1
        assert greeted == count
        # Every one of them is a live session.
        for sock in socks[:: count // 10]:
            sock.sendall(b"NOOP\r\n")
            assert sock.recv(100).startswith(b"250 ")
    # They are all gone; the server still serves and did not leak them.
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())
    assert_clean_log(server)
