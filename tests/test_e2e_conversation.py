"""The SMTP conversation over real sockets, with real clients.

The sans-IO transcripts (test_transcripts.py) pin every reply of the core;
these tests prove the same behaviour survives the trip through the asyncio
adapter, the kernel and clients that were not written for this project:
smtplib, swaks and curl.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import Factory, assert_clean_log, queue_id, rss_kib, shared_server, start
from tests.serverproc import ServerProcess
from tests.smtpclient import Client, insecure_context

QUEUED = r"250 2\.0\.0 OK: queued as [0-9A-F]+"


# Servers shared by the tests of this module that leave them as they found
# them (each test uses its own connections); tests that need a particular
# configuration start their own.


plain = shared_server("listen = 127.0.0.1:0\ntimeout = 10\n")
tls_server = shared_server("timeout = 10\n", tls=True)


# --- greeting and EHLO ----------------------------------------------------------


def test_greeting_names_the_configured_mailname(plain: ServerProcess) -> None:
    with Client.connect(plain.port(), greet=False) as client:
        # RFC 5321 section 4.3.1: the first thing on the wire is the 220.
        assert client.line() == b"220 mx.test ESMTP\r\n"


def test_ehlo_advertises_what_is_implemented(tls_server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", tls_server.port("smtp"), timeout=10) as client:
        code, text = client.ehlo("client.test")
        assert code == 250
        assert text.decode().splitlines()[0] == "mx.test Hello client.test"
        features = client.esmtp_features
        for keyword in (
            "pipelining",
            "8bitmime",
            "smtputf8",
            "enhancedstatuscodes",
            "dsn",
            "chunking",
            "starttls",
            "help",
            "vrfy",
            "etrn",
            "expn",
        ):
            assert keyword in features, (keyword, features)
        assert features["size"] == "512000"  # the default max_message_size
        assert set(features["auth"].split()) == {"PLAIN", "LOGIN", "CRAM-MD5"}
        code, _ = client.helo("client.test")
        assert code == 250


def test_ehlo_size_follows_max_message_size(server_factory: Factory, tmp_path: Path) -> None:
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\nmax_message_size = 10000\n")
    with smtplib.SMTP("127.0.0.1", server.port(), timeout=10) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "10000"
        # Without a certificate STARTTLS is not offered (RFC 3207 section 4).
        assert "starttls" not in client.esmtp_features


# --- whole transactions with real clients -------------------------------------------


def test_smtplib_several_transactions_on_one_connection_get_fresh_ids(
    plain: ServerProcess,
) -> None:
    ids = []
    with smtplib.SMTP("127.0.0.1", plain.port(), timeout=10) as client:
        client.ehlo()
        for n in range(3):
            assert client.mail("a@example.com")[0] == 250
            assert client.rcpt(f"b{n}@example.com")[0] == 250
            assert client.rcpt(f"c{n}@example.com")[0] == 250
            code, text = client.data(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
            assert code == 250, text
            ids.append(text.decode().removeprefix("2.0.0 OK: queued as "))
        # smtplib's own convenience call, on the same connection.
        assert client.sendmail("a@example.com", ["d@example.com"], "Subject: x\r\n\r\nx\r\n") == {}
        assert client.rset()[0] == 250
        assert client.noop()[0] == 250
    # The classic server reused one id for every message on a connection.
    assert len(set(ids)) == 3, ids
    assert_clean_log(plain)


def test_raw_client_two_messages_two_ids(plain: ServerProcess) -> None:
    with Client.connect(plain.port()) as client:
        client.expect("EHLO client.test", 250)
        first = queue_id(client.transaction())
        second = queue_id(client.transaction(b"Subject: 2\r\n\r\nagain\r\n"))
        assert first != second
        assert client.cmd("QUIT").code == 221
        assert client.closed()


def test_swaks_sends_a_message(plain: ServerProcess) -> None:
    server = ["--server", "127.0.0.1", "--port", str(plain.port()), "--timeout", "10"]
    envelope = ["--from", "a@example.com", "--to", "b@example.com", "--ehlo", "client.test"]
    result = subprocess.run(
        ["swaks", *server, *envelope],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  220 mx.test ESMTP" in result.stdout
    assert "<-  250-PIPELINING" in result.stdout
    assert "<-  221 2.0.0" in result.stdout
    assert re.search(r"<-  " + QUEUED, result.stdout), result.stdout


def test_swaks_pipelining_and_tls_on_connect(tls_server: ServerProcess) -> None:
    common = ["--server", "127.0.0.1", "--timeout", "10"]
    common += ["--from", "a@example.com", "--to", "b@example.com"]
    pipelined = subprocess.run(
        ["swaks", *common, "--port", str(tls_server.port("smtp")), "--pipeline"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert pipelined.returncode == 0, pipelined.stdout + pipelined.stderr
    smtps = subprocess.run(
        ["swaks", *common, "--port", str(tls_server.port("smtps")), "--tls-on-connect"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert smtps.returncode == 0, smtps.stdout + smtps.stderr
    assert "<~  220 mx.test ESMTP" in smtps.stdout  # swaks marks TLS lines with ~
    assert "queued as" in smtps.stdout


def _curl(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    message = tmp_path / "message.txt"
    message.write_bytes(b"From: a@example.com\r\nSubject: curl\r\n\r\nhello from curl\r\n")
    envelope = ["--mail-from", "a@example.com", "--mail-rcpt", "b@example.com"]
    envelope += ["--mail-rcpt", "c@example.com", "--upload-file", str(message)]
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--verbose",
            "--max-time",
            "20",
            url,
            *envelope,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_curl_smtp_and_smtps(tls_server: ServerProcess, tmp_path: Path) -> None:
    plain = _curl(f"smtp://127.0.0.1:{tls_server.port('smtp')}/client.test", tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "< 220 mx.test ESMTP" in plain.stderr
    assert "queued as" in plain.stderr
    secure = _curl(f"smtps://127.0.0.1:{tls_server.port('smtps')}/client.test", tmp_path, "-k")
    assert secure.returncode == 0, secure.stderr
    assert "queued as" in secure.stderr
    assert_clean_log(tls_server)


def test_smtps_greets_only_after_the_handshake(tls_server: ServerProcess) -> None:
    # RFC 8314 section 3.3: TLS first, then the 220 inside it.
    with Client.connect(tls_server.port("smtps"), tls=True) as client:
        reply = client.cmd("EHLO client.test")
        assert reply.code == 250
        assert "STARTTLS" not in reply.lines
        assert queue_id(client.transaction())
    with smtplib.SMTP_SSL(
        "127.0.0.1", tls_server.port("smtps"), context=insecure_context(), timeout=10
    ) as client:
        assert client.sendmail("a@example.com", ["b@example.com"], "Subject: s\r\n\r\n.\r\n") == {}


# --- commands ---------------------------------------------------------------------------


def test_pipelined_batch_is_answered_in_order(plain: ServerProcess) -> None:
    with Client.connect(plain.port()) as client:
        client.expect("EHLO client.test", 250)
        # RFC 2920 section 3.1: the whole batch in one write, replies in order.
        client.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            b"RCPT TO:<bad address>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n"
        )
        assert [client.reply().code for _ in range(5)] == [250, 250, 501, 250, 354]
        client.send(b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        assert queue_id(client.reply())
        assert client.reply().code == 250
        assert client.reply().code == 221
        assert client.closed()


def test_order_of_commands_is_enforced(plain: ServerProcess) -> None:
    with Client.connect(plain.port()) as client:
        assert str(client.cmd("MAIL FROM:<a@example.com>")).startswith("503 5.5.1")
        client.expect("HELO client.test", 250)
        assert str(client.cmd("RCPT TO:<b@example.com>")).startswith("503 5.5.1")
        client.expect("MAIL FROM:<a@example.com>", 250)
        assert str(client.cmd("DATA")).startswith("503 5.5.1")
        client.expect("RSET", 250)
        assert str(client.cmd("RCPT TO:<b@example.com>")).startswith("503 5.5.1")


def test_vrfy_without_argument_is_501_and_the_session_survives(plain: ServerProcess) -> None:
    with Client.connect(plain.port()) as client:
        client.expect("EHLO client.test", 250)
        assert str(client.cmd("VRFY")).startswith("501 5.5.4")
        assert str(client.cmd("VRFY user@example.com")).startswith("252 2.0.0")
        assert str(client.cmd("VRFY pass=user@example.com")).startswith("250 2.0.0")
        assert str(client.cmd("VRFY fail=user@example.com")).startswith("550 5.7.1")
        assert queue_id(client.transaction())


def test_expn_lists(plain: ServerProcess) -> None:
    with Client.connect(plain.port()) as client:
        client.expect("EHLO client.test", 250)
        list1 = client.expect("EXPN list1", 250)
        assert len(list1.lines) == 3
        assert all(line.startswith("2.1.5 ") and "@mx.test>" in line for line in list1.lines)
        everyone = client.expect("EXPN all", 250)
        sizes = [len(client.expect(f"EXPN list{n}", 250).lines) for n in (1, 2, 3)]
        assert len(everyone.lines) == sum(sizes)
        assert client.cmd("EXPN nobody").code == 550
        assert client.cmd("EXPN fail=list1").code == 550
        assert client.cmd("ETRN example.com").code == 250
        assert client.cmd("HELP").code == 214
        assert client.cmd("HELP MAIL").code == 214


def test_unknown_commands_502_then_421_on_the_tenth(plain: ServerProcess) -> None:
    with Client.connect(plain.port()) as client:
        for n in range(9):
            assert str(client.cmd(f"XYZZY{n}")).startswith("502 5.5.2")
        # Known commands in between do not reset the budget.
        client.expect("NOOP", 250)
        last = client.cmd("XYZZY9")
        assert last.code == 421, last
        assert client.closed()
    assert_clean_log(plain)


# --- idle timeout -----------------------------------------------------------------------


def test_idle_timeout_421_then_close(server_factory: Factory, tmp_path: Path) -> None:
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\ntimeout = 1\n")
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        started = time.monotonic()
        reply = client.reply()  # nothing sent: the server speaks first
        waited = time.monotonic() - started
        assert str(reply).startswith("421 4.4.2"), reply
        assert 0.5 <= waited < 8, waited  # about 1 s; generous for a loaded CI machine
        assert client.closed()
    # Idle in the middle of a message is idle too (RFC 5321 section 4.5.3.2.6).
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.expect("DATA", 354)
        client.send(b"Subject: half\r\n\r\nhalf a bo")
        reply = client.reply()
        assert str(reply).startswith("421 4.4.2"), reply
        assert client.closed()
    # Activity keeps a session alive past the timeout.
    with Client.connect(server.port()) as client:
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            client.expect("NOOP", 250)
            time.sleep(0.2)
    assert_clean_log(server)


def test_timeout_zero_means_the_default_not_at_once(
    server_factory: Factory, tmp_path: Path
) -> None:
    # Classic bug: timeout = 0 closed every connection as soon as it was made.
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\ntimeout = 0\n")
    with Client.connect(server.port()) as client:
        assert not client.closed(timeout=1.2), "the session was closed at once"
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())


# --- limits ---------------------------------------------------------------------------------


small = shared_server("listen = 127.0.0.1:0\nmax_message_size = 10000\nmax_recipients = 100\n")


def test_size_parameter_over_the_limit_is_refused_at_mail(small: ServerProcess) -> None:
    with Client.connect(small.port()) as client:
        client.expect("EHLO client.test", 250)
        assert str(client.cmd("MAIL FROM:<a@example.com> SIZE=10001")).startswith("552 5.3.4")
        client.expect("MAIL FROM:<a@example.com> SIZE=10000", 250)
    with smtplib.SMTP("127.0.0.1", small.port(), timeout=10) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            # smtplib adds SIZE= itself when the server advertises SIZE.
            client.sendmail("a@example.com", ["b@example.com"], "x" * 20000)
        assert refused.value.smtp_code == 552


def test_message_over_the_limit_is_read_to_the_end_then_552(small: ServerProcess) -> None:
    with Client.connect(small.port()) as client:
        client.expect("EHLO client.test", 250)
        line = b"y" * 98 + b"\r\n"
        reply = client.transaction(b"Subject: big\r\n\r\n" + line * 200)  # 20 KB
        assert str(reply).startswith("552 5.3.4"), reply
        # The rest of the message was not taken for commands: the session goes on.
        assert queue_id(client.transaction())
        client.expect("QUIT", 221)
    assert_clean_log(small)


def test_max_recipients(small: ServerProcess) -> None:
    with Client.connect(small.port()) as client:
        client.expect("EHLO client.test", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        batch = b"".join(b"RCPT TO:<r%d@example.com>\r\n" % n for n in range(101))
        client.send(batch)
        codes = [client.reply() for _ in range(101)]
        assert {r.code for r in codes[:100]} == {250}
        # RFC 5321 section 4.5.3.1.10: too many recipients is 452, not fatal.
        assert str(codes[100]).startswith("452 4.5.3"), codes[100]
        client.expect("DATA", 354)
        client.send(b"Subject: many\r\n\r\n.\r\n")
        assert queue_id(client.reply())


def test_memory_stays_flat_while_a_huge_message_streams(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\nmax_message_size = 10000\n")
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        assert queue_id(client.transaction())  # warm up every code path first
        before = rss_kib(server.pid)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@example.com>", 250)
        client.expect("DATA", 354)
        chunk = (b"z" * 998 + b"\r\n") * 1024  # 1 MiB of legal 1000-octet lines
        peak = before
        for n in range(50):
            client.send(chunk)
            if n % 10 == 9:
                peak = max(peak, rss_kib(server.pid))
        client.send(b".\r\n")
        reply = client.reply()
        assert str(reply).startswith("552 5.3.4"), reply
        peak = max(peak, rss_kib(server.pid))
        # 50 MiB went through; the classic server buffered it all. A bound
        # for correctness (flat, not O(n)), with room for allocator noise.
        assert peak - before < 20 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
        assert queue_id(client.transaction())
