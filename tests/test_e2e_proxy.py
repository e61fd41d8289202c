"""PROXY protocol listeners over real sockets, headers sent by hand.

The client connects from 127.0.0.1 and its header names another address
(127.0.0.5, 2001:db8::5): a rule matching ``client = "127.0.0.5"`` answers
RCPT with a distinctive 451, and the debug log names the client, so a server
that ignored the header cannot pass. HAProxy itself is in test_e2e_haproxy.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import assert_clean_log, running
from tests.proctools import wait_until
from tests.proxyheaders import inet4, inet6, tlv, v2
from tests.serverproc import ServerProcess
from tests.smtpclient import Client, insecure_context
from tests.test_e2e_counting import event_lines

SEEN = "451 4.7.1 proxied client seen"
RULES = f"""
[[rule]]
name = "proxied"
at = "rcpt"
client = "127.0.0.5"
reply = "{SEEN}"
"""
LIMIT = 1  # tls_handshake_timeout: how long a header may take


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy")


@pytest.fixture(scope="module")
def events(directory: Path) -> Path:
    return directory / "events.jsonl"


@pytest.fixture(scope="module")
def server(directory: Path, events: Path, cert_pair: tuple[Path, Path]) -> Iterator[ServerProcess]:
    rules = directory / "rules.toml"
    rules.write_text(RULES)
    cert, key = cert_pair
    text = (
        "listen = 127.0.0.1:0 proxy=yes, 127.0.0.1:0\n"
        "tls_listen = 127.0.0.1:0 proxy=yes\n"
        "lmtp_listen = 127.0.0.1:0 proxy=yes\n"
        f"tls_cert = {cert}\ntls_key = {key}\n"
        f"rules = {rules}\nworkers = 1\ntimeout = 20\ntls_handshake_timeout = {LIMIT}\n"
        f"event_log = {events}\n"
    )
    with running(directory, text, "-d") as server:
        yield server
    assert_clean_log(server)


def session_end(events: Path, line: str) -> object:
    """The event log's ``end`` for the session a log line names ("[w1-7] ...")."""
    found = re.search(r"\[(w\d+-\d+)\]", line)
    assert found is not None, line
    session = found.group(1)

    def ends() -> list[object]:
        records = event_lines(events) if events.exists() else []
        return [r["end"] for r in records if r["type"] == "session" and r["session"] == session]

    logged = wait_until(ends, what=f"session {session} in the event log")
    assert len(logged) == 1, logged
    return logged[0]


def proxied(server: ServerProcess, scheme: str = "smtp") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port(scheme)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def trickle(sock: socket.socket, data: bytes) -> None:
    for i in range(len(data)):
        sock.sendall(data[i : i + 1])


def v1_tcp4(port: int) -> bytes:
    return f"PROXY TCP4 127.0.0.5 127.0.0.1 {port} 25\r\n".encode()


def rcpt_reply(client: Client) -> str:
    client.expect("EHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    return str(client.cmd("RCPT TO:<b@example.com>"))


def session_of(server: ServerProcess, client_text: str) -> str:
    line = server.wait_for(rf"PROXY v\d header: client {client_text} via 127\.0\.0\.1:")
    return line.split("[w1-")[1].split("]")[0]


HEADERS = {
    "v1 TCP4": (v1_tcp4(40001), "127.0.0.5:40001", True),
    "v1 TCP6": (b"PROXY TCP6 2001:db8::5 ::1 40002 25\r\n", r"\[2001:db8::5\]:40002", False),
    "v2 TCP4": (v2(body=inet4("127.0.0.5", "127.0.0.1", 40003, 25)), "127.0.0.5:40003", True),
    "v2 TCP6": (
        v2(family=2, body=inet6("2001:db8::5", "::1", 40004, 25)),
        r"\[2001:db8::5\]:40004",
        False,
    ),
    "v2 TLVs": (
        v2(
            body=inet4("127.0.0.5", "127.0.0.1", 40005, 25)
            + tlv(0x01, b"smtp")
            + tlv(0x04, b"\0" * 300)
        ),
        "127.0.0.5:40005",
        True,
    ),
}


@pytest.mark.parametrize("how", ["whole", "pipelined", "byte by byte"])
@pytest.mark.parametrize("kind", list(HEADERS))
def test_the_header_client_is_the_session_client(
    server: ServerProcess, kind: str, how: str
) -> None:
    header, shown, matches = HEADERS[kind]
    with proxied(server) as sock:
        if how == "byte by byte":
            trickle(sock, header)
        elif how == "whole":
            sock.sendall(header)
        client = Client(sock)
        if how == "pipelined":
            # The header and a whole transaction's commands in one segment.
            sock.sendall(
                header
                + b"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            )
            replies = client.replies(4)
            assert [r.code for r in replies[:3]] == [220, 250, 250]
            last = str(replies[3])
        else:
            assert client.reply().code == 220
            last = rcpt_reply(client)
    assert (last == SEEN) is matches, last
    session_of(server, shown)


@pytest.mark.parametrize(
    "header",
    [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ::1 ::2 3 4\r\n", v2(command=0, family=0, transport=0)],
)
def test_unknown_and_local_keep_the_real_peer(server: ServerProcess, header: bytes) -> None:
    with proxied(server) as sock:
        sock.sendall(header)
        client = Client(sock)
        assert client.reply().code == 220
        assert rcpt_reply(client).startswith("250 ")
    server.wait_for(r"PROXY v\d header: client none \(the proxy's own\) via 127\.0\.0\.1:")


BAD = {
    "garbage": (b"EHLO c.example\r\n", "not a PROXY protocol header"),
    "tls instead": (b"\x16\x03\x01\x00\x05hello", "not a PROXY protocol header"),
    "oversized": (b"PROXY TCP4 " + b"9" * 120, "no CRLF in its first 107 bytes"),
    "bare LF": (b"PROXY TCP4 127.0.0.5 127.0.0.1 1 25\n", "bare LF"),
    "bad address": (b"PROXY TCP4 127.0.0.500 127.0.0.1 1 25\r\n", "canonical IPv4"),
    "v2 bad command": (v2(command=7), "unknown command 0x7"),
    "v2 short addresses": (v2(body=b"\0" * 4), "fewer than its addresses need"),
}


@pytest.mark.parametrize("how", ["whole", "byte by byte"])
@pytest.mark.parametrize("kind", list(BAD))
def test_an_invalid_header_closes_at_once_without_a_reply(
    server: ServerProcess, events: Path, kind: str, how: str
) -> None:
    data, reason = BAD[kind]
    with proxied(server) as sock:
        peer_port = sock.getsockname()[1]
        started = time.monotonic()
        # Closed before the last byte is sent: the point of refusing early.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            (trickle if how == "byte by byte" else socket.socket.sendall)(sock, data)
        client = Client(sock)
        assert client.closed(timeout=5)
        assert client.buf == b""  # no greeting, no reply: not SMTP yet
        assert time.monotonic() - started < LIMIT  # at once, not at the deadline
    line = server.wait_for(
        rf"no valid PROXY header from 127\.0\.0\.1:{peer_port}, closing: .*{reason}"
    )
    assert session_end(events, line) == "dropped"  # by the server, not the client


@pytest.mark.parametrize("kind", ["silence", "truncated v1", "truncated v2", "slow"])
def test_a_header_that_does_not_come_in_time_is_closed(
    server: ServerProcess, events: Path, kind: str
) -> None:
    with proxied(server) as sock:
        peer_port = sock.getsockname()[1]
        started = time.monotonic()
        header = v1_tcp4(40009)
        if kind == "truncated v1":
            sock.sendall(header[:-2])
        elif kind == "truncated v2":
            sock.sendall(v2(body=inet4("127.0.0.5", "127.0.0.1", 1, 25))[:-3])
        elif kind == "slow":
            # A byte every 0.1 s: each is a sign of life, but the deadline is
            # for the whole header (a slowloris would hold the slot for ever).
            for i in range(len(header) - 1):
                try:
                    sock.sendall(header[i : i + 1])
                except OSError:
                    break
                time.sleep(0.1)  # the client's pace, not a wait for readiness
        client = Client(sock)
        assert client.closed(timeout=LIMIT + 5)
        assert client.buf == b""
        assert time.monotonic() - started >= LIMIT * 0.9
    line = server.wait_for(
        rf"no valid PROXY header from 127\.0\.0\.1:{peer_port}, closing: no PROXY header within 1 s"
    )
    assert session_end(events, line) == "timeout"


def client_hello() -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO, bytes]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = insecure_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return tls, incoming, outgoing, outgoing.read()


def test_smtps_header_and_client_hello_in_one_segment(server: ServerProcess) -> None:
    # What HAProxy does in TCP mode: the bytes after the header are the
    # ClientHello, and they must reach the TLS layer.
    tls, incoming, outgoing, hello = client_hello()
    with proxied(server, "smtps") as sock:
        sock.sendall(v1_tcp4(40010) + hello)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        sock.sendall(outgoing.read())

        def line() -> bytes:
            while True:
                try:
                    return tls.read(4096)
                except ssl.SSLWantReadError:
                    incoming.write(sock.recv(65536))

        assert line().startswith(b"220 mx.test ")
    session_of(server, "127.0.0.5:40010")


@pytest.mark.parametrize("how", ["whole", "byte by byte"])
def test_smtps_behind_a_header_with_a_real_tls_client(server: ServerProcess, how: str) -> None:
    with proxied(server, "smtps") as sock:
        header = v2(body=inet4("127.0.0.5", "127.0.0.1", 40011, 465))
        (trickle if how == "byte by byte" else socket.socket.sendall)(sock, header)
        with insecure_context().wrap_socket(sock, server_hostname="localhost") as wrapped:
            client = Client(wrapped)
            assert client.reply().code == 220
            assert rcpt_reply(client) == SEEN


def test_lmtp_behind_a_header(server: ServerProcess) -> None:
    with proxied(server, "lmtp") as sock:
        sock.sendall(v1_tcp4(40012) + b"LHLO c.example\r\n")
        client = Client(sock)
        assert client.reply().code == 220
        assert client.reply().code == 250
        client.expect("MAIL FROM:<a@example.com>", 250)
        assert str(client.cmd("RCPT TO:<b@example.com>")) == SEEN
    session_of(server, "127.0.0.5:40012")


def test_a_header_on_a_listener_without_the_flag_is_just_bad_smtp(server: ServerProcess) -> None:
    with Client.connect(server.port("smtp", 1)) as client:
        reply = client.cmd(v1_tcp4(40013).rstrip(b"\r\n"))
        assert reply.code == 502 and reply.enhanced == "5.5.2", reply
        assert rcpt_reply(client).startswith("250 ")  # the client is still 127.0.0.1


def test_a_client_that_hangs_up_before_its_header_is_a_debug_line(server: ServerProcess) -> None:
    # Port scans and TCP health checks do this all day: not worth an info line.
    with proxied(server) as sock:
        sock.sendall(b"PROXY TCP4 ")
    line = server.wait_for(r"closed before its PROXY header")
    assert " DEBUG " in line, line
