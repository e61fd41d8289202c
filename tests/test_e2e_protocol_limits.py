"""Session limits and informational commands over real sockets, with real clients.

Junk commands (Postfix's smtpd_junk_command_limit), HTTP and proxy clients
(smtpd_forbidden_commands), and curl's VRFY/EXPN, which carry SMTPUTF8 when
the server offers it (RFC 6531 section 3.7.4.2).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e import assert_clean_log, running
from tests.serverproc import ServerProcess
from tests.smtpclient import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(tmp_path_factory.mktemp("limits"), "listen = 127.0.0.1:0\n") as s:
        yield s


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n",
        b"POST /form HTTP/1.1\r\nHost: mx.test\r\nContent-Length: 0\r\n\r\n",
        b"CONNECT mx.example:25 HTTP/1.1\r\n\r\n",
        b"Host: mx.test\r\n",
    ],
    ids=["get", "post", "connect", "header"],
)
def test_http_client_is_dropped_without_a_reply(
    server: ServerProcess, request_bytes: bytes
) -> None:
    # A browser tricked into posting to the SMTP port (cross-protocol
    # attack) must get no SMTP answers it could abuse: the server hangs up.
    with Client.connect(server.port()) as client:
        client.send(request_bytes)
        assert client.closed()
        assert bytes(client.buf) == b""  # not a single reply line
    with Client.connect(server.port()) as client:  # the server serves on
        client.expect("EHLO c", 250)
    assert_clean_log(server)


def test_junk_commands_end_the_session(server: ServerProcess) -> None:
    with Client.connect(server.port()) as client:
        client.send(b"NOOP\r\n" * 101)
        replies = client.replies(101)
        assert [r.code for r in replies[:100]] == [250] * 100
        assert (replies[100].code, replies[100].enhanced) == (421, "4.7.0")
        assert client.closed()


def test_a_message_resets_the_junk_count(server: ServerProcess) -> None:
    with Client.connect(server.port()) as client:
        client.expect("EHLO c", 250)
        for _ in range(3):
            client.send(b"RSET\r\n" * 90)
            assert {r.code for r in client.replies(90)} == {250}
            assert client.transaction().code == 250
        client.expect("QUIT", 221)


_UNUSABLE = [
    b"NOOP " + b"x" * 600 + b"\r\n",
    b"x" * 20000 + b"\r\n",
    b"HELO \xff\r\n",
    b"NOOP\x00\r\n",
]
_UNUSABLE_IDS = ["over-512", "over-auth-limit", "not-utf-8", "control-bytes"]


@pytest.mark.parametrize("line", _UNUSABLE, ids=_UNUSABLE_IDS)
def test_lines_answered_500_do_not_count_as_unknown_commands(
    server: ServerProcess, line: bytes
) -> None:
    # SPEC.md: the session survives a line answered 500, and the limit of ten
    # is of unknown commands: nine of them and such lines leave it going.
    with Client.connect(server.port()) as client:
        client.send(line * 5 + b"XYZZY\r\n" * 9)
        replies = client.replies(14)
        assert [r.code for r in replies] == [500] * 5 + [502] * 9, replies
        client.expect("NOOP", 250)
        client.send(b"XYZZY\r\n")
        reply = client.reply()
        assert (reply.code, reply.text.split()[0]) == (421, "4.7.0"), reply
        assert client.closed()


@pytest.mark.parametrize("line", _UNUSABLE[::3], ids=_UNUSABLE_IDS[::3])
def test_lines_answered_500_count_as_junk_commands(server: ServerProcess, line: bytes) -> None:
    # Each costs the client nothing: like a NOOP, the 101st without a message
    # in between ends the session (junk_command_limit), so none can be sent
    # for ever.
    with Client.connect(server.port()) as client:
        client.send(line * 60 + b"NOOP\r\n" * 40 + line)
        replies = client.replies(101)
        assert [r.code for r in replies[:100]] == [500] * 60 + [250] * 40
        assert replies[100].code == 421 and "junk" in replies[100].text, replies[100]
        assert client.closed()


def _curl(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    url = f"smtp://127.0.0.1:{server.port()}/client.test"
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--verbose", "--max-time", "20", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_curl_expn_and_vrfy_with_smtputf8(server: ServerProcess) -> None:
    # curl adds SMTPUTF8 to EXPN/VRFY when EHLO offers it; the classic
    # parameter used to be read as part of the list name or address.
    expn = _curl(server, "--mail-rcpt", "list1", "-X", "EXPN")
    assert expn.returncode == 0, expn.stderr
    assert "> EXPN list1 SMTPUTF8" in expn.stderr
    assert "Low-key Liesmith <low-key.liesmith@mx.test>" in expn.stdout
    # For VRFY, curl adds it to a UTF-8 address only.
    vrfy = _curl(server, "--mail-rcpt", "pass=j\u00f6rg@example.com")
    assert vrfy.returncode == 0, vrfy.stderr
    assert "> VRFY pass=j\u00f6rg@example.com SMTPUTF8" in vrfy.stderr
    assert "250 2.0.0 <pass=j\u00f6rg@example.com> OK" in vrfy.stdout


def test_help_does_not_list_starttls_without_a_certificate(server: ServerProcess) -> None:
    # HELP follows what EHLO offers: no certificate, no STARTTLS in either.
    with Client.connect(server.port()) as client:
        ehlo = client.expect("EHLO c", 250)
        assert "STARTTLS" not in ehlo.lines
        summary = client.expect("HELP", 214)
        assert "STARTTLS" not in summary.text.split()
        assert "AUTH" in summary.text.split()
