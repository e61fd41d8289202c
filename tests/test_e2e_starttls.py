"""STARTTLS (RFC 3207) and the TLS settings, driven by real clients.

openssl s_client, swaks and smtplib upgrade a plain session; raw sockets send
what no well-behaved client sends (the CVE-2011-0411 injection, garbage
instead of a ClientHello). The certificate is made in the test run.
"""

from __future__ import annotations

import queue
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess
from tests.smtpclient import HOST, insecure_context
from tests.test_e2e_counting import event_lines
from tests.tlsclients import (
    Factory,
    Smtp,
    WriteConfig,
    dhparams,
    rsa_cert,
    running,
    server_replies,
    start,
    swaks,
    tool,
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, cert_pair: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    """One plain (STARTTLS) and one SMTPS listener, shared by this module's tests."""
    with running(tmp_path_factory.mktemp("server"), cert_pair) as server:
        yield server


def _s_client(port: int, *args: str, script: str = "QUIT\n") -> tuple[int, str]:
    result = tool(
        ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-crlf", "-ign_eof", *args],
        stdin=script.encode(),
    )
    return result.returncode, result.stdout


# --- the normal path ------------------------------------------------------------


def test_openssl_s_client_starttls_smtp(server: ServerProcess) -> None:
    # s_client sends EHLO and STARTTLS itself; what follows is typed inside TLS.
    script = "EHLO inside.test\nMAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\nQUIT\n"
    code, out = _s_client(server.port("smtp"), "-starttls", "smtp", script=script)
    assert code == 0, out
    assert "New, TLSv1.3" in out, out  # TLS 1.3 is on and preferred by both ends
    # Inside TLS: a fresh EHLO reply without STARTTLS (RFC 3207 section 4.2).
    ehlo = out[out.index("250-localhost Hello inside.test") :]
    assert "250-STARTTLS" not in ehlo and "250 STARTTLS" not in ehlo
    assert "250-AUTH PLAIN LOGIN CRAM-MD5" in ehlo
    assert "250 2.1.0" in ehlo and "250 2.1.5" in ehlo and "221 2.0.0" in ehlo


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_tls_12_and_13_are_offered(server: ServerProcess, scheme: str, version: str) -> None:
    args = ["-starttls", "smtp"] if scheme == "smtp" else []
    code, out = _s_client(server.port(scheme), version, *args)
    assert code == 0, out
    expected = "TLSv1.2" if version == "-tls1_2" else "TLSv1.3"
    assert f"New, {expected}" in out, out


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_below_tls_12_is_refused(server: ServerProcess, scheme: str, version: str) -> None:
    # SECLEVEL=0 lets the client offer the old versions, so a failure is the server's.
    args = ["-starttls", "smtp"] if scheme == "smtp" else []
    code, out = _s_client(server.port(scheme), version, "-cipher", "DEFAULT@SECLEVEL=0", *args)
    assert code != 0, out
    assert (
        "New, (NONE), Cipher is (NONE)" in out
        or "handshake failure" in out
        or ("alert protocol version" in out)
    ), out
    # The server is unharmed.
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()


def test_weak_tls12_ciphers_are_refused(server: ServerProcess) -> None:
    # Only forward-secret AEAD suites (RFC 9325 section 4.2): no CBC, no RSA kx.
    for cipher in ("AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256"):
        code, out = _s_client(server.port("smtps"), "-tls1_2", "-cipher", cipher)
        assert code != 0, (cipher, out)
    code, out = _s_client(
        server.port("smtps"), "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"
    )
    assert code == 0, out


def test_server_cipher_preference(server: ServerProcess) -> None:
    # The client lists the weaker AEAD suite first; the server's order wins.
    order = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
    code, out = _s_client(server.port("smtps"), "-tls1_2", "-cipher", order)
    assert code == 0, out
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in out, out
    order = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"
    code, out = _s_client(server.port("smtps"), "-tls1_2", "-cipher", order)
    assert code == 0, out
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in out, out


def test_no_tls_compression(server: ServerProcess) -> None:
    code, out = _s_client(server.port("smtps"), "-tls1_2")
    assert code == 0, out
    assert "Compression: NONE" in out, out


def test_swaks_tls_starttls(server: ServerProcess) -> None:
    result = swaks(server.port("smtp"), "--tls")
    assert result.returncode == 0, result.stdout
    assert "=== TLS started with cipher TLSv1.3" in result.stdout, result.stdout
    replies = server_replies(result.stdout)
    assert "220 2.0.0 Ready to start TLS" in replies
    assert any(r.startswith("250 2.0.0 OK: queued as ") for r in replies), replies


def test_swaks_tlsc_smtps(server: ServerProcess) -> None:
    result = swaks(server.port("smtps"), "--tlsc")
    assert result.returncode == 0, result.stdout
    assert "=== TLS started with cipher TLSv1.3" in result.stdout, result.stdout
    replies = server_replies(result.stdout)
    assert not any("STARTTLS" in r for r in replies), replies
    assert any(r.startswith("250 2.0.0 OK: queued as ") for r in replies), replies


def test_smtplib_starttls_and_send(server: ServerProcess) -> None:
    with smtplib.SMTP(HOST, server.port("smtp"), timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        code, text = client.starttls(context=insecure_context())
        assert (code, text) == (220, b"2.0.0 Ready to start TLS")
        client.ehlo()
        assert not client.has_extn("starttls")
        assert (
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: t\r\n\r\nhi\r\n") == {}
        )
        # Several transactions inside one TLS session.
        assert (
            client.sendmail("a@example.com", ["c@example.com"], b"Subject: 2\r\n\r\nhi\r\n") == {}
        )


# --- the session after the upgrade ----------------------------------------------


def test_session_resets_after_starttls(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        assert "STARTTLS" in c.ehlo()
        c.starttls()
        # RFC 3207 section 4.2: back to the state right after the greeting.
        c.expect("MAIL FROM:<a@example.com>", 503, "5.5.1")
        offered = c.ehlo()
        assert "STARTTLS" not in offered
        assert {"AUTH", "PIPELINING", "CHUNKING", "SMTPUTF8"} <= set(offered)
        c.expect("STARTTLS", 503, "5.5.1")  # twice
        c.mail_rcpt()
        assert c.data().code == 250
        c.expect("QUIT", 221, "2.0.0")


def test_starttls_inside_a_transaction_is_503(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("STARTTLS", 503, "5.5.1")
        c.expect("RCPT TO:<b@example.com>", 250)
        c.expect("STARTTLS", 503, "5.5.1")
        # The transaction is intact and the session still plaintext.
        assert c.data().code == 250
        c.starttls()
        c.ehlo()


def test_starttls_before_ehlo_and_with_argument(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.expect("STARTTLS", 503, "5.5.1")
        c.ehlo()
        c.expect("STARTTLS now", 501, "5.5.4")
        c.starttls()
        assert "STARTTLS" not in c.ehlo()


def test_starttls_on_smtps_is_503(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtps"), tls=True) as c:
        assert "STARTTLS" not in c.ehlo()
        c.expect("STARTTLS", 503, "5.5.1")
        c.expect("NOOP", 250)


# Run inside a fresh network namespace: bring its loopback up (SIOCGIFFLAGS,
# SIOCSIFFLAGS with IFF_UP; no iproute2 needed), then become `blackhole -d`.
_LO_UP_THEN_BLACKHOLE = """
import fcntl, os, socket, struct, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
os.execv(sys.executable, [sys.executable, "-m", "blackhole", "-d"])
"""


def test_self_signed_default_certificate(tmp_path: Path) -> None:
    """No config file: STARTTLS and SMTPS on a certificate made at start-up.

    That mode listens on the fixed ports 2525 and 4650, so the server and its
    clients run in a network namespace of their own: no clash with anything
    else on the machine, however the tests are run.
    """
    proc = subprocess.Popen(
        ["unshare", "--net", "--", sys.executable, "-c", _LO_UP_THEN_BLACKHOLE],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    server = ServerProcess(proc, lines)
    try:
        ready = server.wait_for("listening on", timeout=20)
        assert "smtp://127.0.0.1:2525 (STARTTLS)" in ready and "smtps://127.0.0.1:4650" in ready
        netns = ["nsenter", f"--net=/proc/{proc.pid}/ns/net"]
        for port, args in ((2525, ["-starttls", "smtp"]), (4650, [])):
            result = tool(
                [
                    *(*netns, "openssl", "s_client", "-connect", f"{HOST}:{port}"),
                    *("-crlf", "-ign_eof", *args),
                ],
                stdin=b"QUIT\n",
            )
            assert result.returncode == 0, result.stdout
            assert "O = Blackhole self-signed" in result.stdout, result.stdout
            assert "221 2.0.0" in result.stdout, result.stdout
        for port, mode in ((2525, "--tls"), (4650, "--tlsc")):
            result = tool(
                [
                    *(*netns, "swaks", "-s", HOST, "-p", str(port), mode, "-t", "b@example.com"),
                    *("--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p"),
                ]
            )
            assert result.returncode == 0, result.stdout
            assert "=== TLS started with cipher TLSv1.3" in result.stdout, result.stdout
            assert "235 2.7.0" in result.stdout, result.stdout
    finally:
        assert server.stop() == 0
    assert "self-signed certificate" in server.text()


def test_no_certificate_no_starttls(server_factory: Factory, write_config: WriteConfig) -> None:
    server = start(server_factory, write_config, None, listen="listen = 127.0.0.1:0\n")
    with Smtp.connect(server.port("smtp")) as c:
        assert "STARTTLS" not in c.ehlo()
        c.expect("STARTTLS", 502, "5.5.1")
        c.mail_rcpt()
        assert c.data().code == 250


# --- attacks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "injected",
    [
        b"RSET\r\n",
        b"MAIL FROM:<evil@attacker.test>\r\n",
        b"NOOP\r\nMAIL FROM:<evil@x.test>\r\n",
        # More than one read's worth: the adapter feeds the core in slices.
        b"NOOP\r\n" * 5000 + b"MAIL FROM:<evil@x.test>\r\n",
    ],
    ids=["rset", "mail", "noop-mail", "30kb"],
)
@pytest.mark.parametrize("ehlo_first", [True, False], ids=["ehlo", "no-ehlo"])
def test_starttls_command_injection(
    server: ServerProcess, injected: bytes, ehlo_first: bool
) -> None:
    """CVE-2011-0411: plaintext pipelined behind STARTTLS is never executed."""
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"STARTTLS\r\n" + injected)  # one write: the attacker's bytes ride along
        reply = c.reply()
        assert (reply.code, reply.enhanced) == (220, "2.0.0"), reply
        # Nothing answered the injected commands in plaintext either.
        assert c.buf == b"", c.buf
        try:
            c.upgrade()
        except (ssl.SSLError, ConnectionError):
            # Plaintext the server had not read yet when it answered 220 goes
            # to the handshake, which fails: dropping the connection is the
            # other allowed answer (RFC 3207 section 6), never executing it.
            assert len(injected) > 8192, "a small injection must not break TLS"
            assert c.closed(), "the failed handshake left the connection open"
            return
        if ehlo_first:
            # The first reply inside TLS must be the one to our EHLO.
            c.send(b"EHLO inside.test\r\n")
            first = c.reply()
            assert first.code == 250 and first.lines[0].endswith("Hello inside.test"), first
            # The injected MAIL did not start a transaction: RCPT is out of sequence.
            c.expect("RCPT TO:<b@example.com>", 503, "5.5.1")
        else:
            # Even before EHLO: a NOOP's 250 comes first, not an answer to RSET/MAIL.
            first = c.cmd("NOOP")
            assert (first.code, first.enhanced) == (250, "2.0.0"), first
            c.expect("MAIL FROM:<a@example.com>", 503, "5.5.1")  # state was reset
            c.ehlo()
        c.mail_rcpt()
        assert c.data().code == 250
        c.expect("QUIT", 221)


def test_starttls_injection_with_smtplib_normal_path_unaffected(server: ServerProcess) -> None:
    # The same server, right after the attack, still serves an honest client.
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        assert c.reply().code == 220
        c.upgrade()
        assert c.cmd("EHLO x").code == 250
    test_smtplib_starttls_and_send(server)


def test_garbage_instead_of_client_hello_closes_quietly(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path]
) -> None:
    server = start(server_factory, write_config, cert_pair, "", "-d")
    port = server.port("smtp")
    with Smtp.connect(port) as c:
        c.ehlo()
        c.expect("STARTTLS", 220)
        c.send(b"EHLO this is not a ClientHello\r\n")
        # Well before the 20 s handshake timeout.
        assert c.closed(timeout=10), "the server kept a failed handshake open"
    # A client that hangs up mid-handshake.
    with Smtp.connect(port) as c:
        c.ehlo()
        c.expect("STARTTLS", 220)
        c.send(b"\x16\x03\x01\x00")  # half a TLS record header
    # Others are not disturbed.
    with smtplib.SMTP(HOST, port, timeout=10) as client:
        client.starttls(context=insecure_context())
        assert client.sendmail("a@example.com", ["b@example.com"], b"\r\nhi\r\n") == {}
    server.wait_for(r"TLS handshake failed")
    assert server.stop() == 0
    log = server.text()
    assert "Traceback" not in log, log
    assert " ERROR " not in log and "internal error" not in log, log


def test_silent_client_during_handshake_is_dropped(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path]
) -> None:
    # A client that asks for TLS and then never sends a ClientHello costs a
    # connection for `timeout` seconds at most, on both kinds of listener.
    server = start(server_factory, write_config, cert_pair, "timeout = 1\n")
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect("STARTTLS", 220)
        assert c.closed(timeout=15), "a silent STARTTLS client was kept open"
    with _connect(server.port("smtps")) as sock:
        assert _closed(sock, timeout=15), "a silent SMTPS client was kept open"
    with smtplib.SMTP(HOST, server.port("smtp"), timeout=10) as client:
        client.starttls(context=insecure_context())
        assert client.noop()[0] == 250


def test_smtps_plaintext_client_is_closed_at_once(server: ServerProcess) -> None:
    # Plaintext sent to the SMTPS port as soon as the connection is up: the
    # server must see it as a failed handshake, not wait out the timeout.
    for payload in (b"EHLO x\r\n", b"EHLO " + b"x" * 40 + b"\r\n", b"\x16\x03\x01\x00\x05hello"):
        with _connect(server.port("smtps")) as sock:
            sock.sendall(payload)
            assert _closed(sock, timeout=10), payload


def test_smtps_client_hello_sent_at_once(server: ServerProcess) -> None:
    # A ClientHello that arrives with the connection must start the handshake.
    context = insecure_context()
    for _ in range(20):
        with _connect(server.port("smtps")) as sock:
            tls = context.wrap_socket(sock, server_hostname="localhost")
            tls.settimeout(10)
            assert tls.recv(100).startswith(b"220 ")
            tls.sendall(b"QUIT\r\n")
            assert tls.recv(100).startswith(b"221 ")


def test_many_concurrent_starttls_sessions(server: ServerProcess) -> None:
    errors: list[BaseException] = []

    def session(i: int) -> None:
        try:
            with smtplib.SMTP(HOST, server.port("smtp"), timeout=10) as client:
                client.starttls(context=insecure_context())
                refused = client.sendmail(f"a{i}@example.com", ["b@example.com"], b"\r\nhi\r\n")
                assert refused == {}
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


# --- failed handshakes: the alert, the reason, the limit ----------------------------

# What `openssl s_server` with the same policy (TLS 1.2+, AEAD suites only)
# makes s_client print: the alert number of RFC 8446 section 6.
_REFUSALS = {
    # TLS 1.1 only; SECLEVEL=0 lets a modern OpenSSL offer it at all.
    "tls1.1 only": (("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"), "alert protocol version", 70),
    # TLS 1.2 with CBC suites only (Lucky13, RFC 9325 section 4.2).
    "cbc only": (("-tls1_2", "-cipher", "AES128-SHA:AES256-SHA256"), "alert handshake failure", 40),
}


@pytest.fixture(scope="module")
def debug_server(
    tmp_path_factory: pytest.TempPathFactory, cert_pair: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    """Like ``server``, with debug logs (where failed handshakes are reported)."""
    with running(tmp_path_factory.mktemp("debug"), cert_pair, "", "-d") as server:
        yield server


@pytest.mark.parametrize("refusal", sorted(_REFUSALS))
@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_refused_handshake_sends_its_alert(
    debug_server: ServerProcess, scheme: str, refusal: str
) -> None:
    # Asyncio's and uvloop's SSL layers drop the alert OpenSSL wrote when the
    # handshake failed: the client saw "unexpected eof" and could not say why.
    args, alert, number = _REFUSALS[refusal]
    starttls = ["-starttls", "smtp"] if scheme == "smtp" else []
    code, out = _s_client(debug_server.port(scheme), *args, *starttls)
    assert code != 0, out
    assert alert in out and f"SSL alert number {number}" in out, out
    assert "unexpected eof" not in out, out
    reason = "unsupported protocol" if number == 70 else "no shared cipher"
    debug_server.wait_for(rf"TLS handshake failed: {reason}")


def test_plaintext_on_smtps_port_is_named_in_the_log(debug_server: ServerProcess) -> None:
    with _connect(debug_server.port("smtps")) as sock:
        sock.sendall(b"EHLO plaintext.test\r\n")
        assert _closed(sock, timeout=10)
    debug_server.wait_for(
        r"TLS handshake failed: wrong version number \(plaintext on a TLS port\?\)"
    )
    assert "TLS handshake failed: None" not in debug_server.text()


def test_handshake_has_its_own_time_limit(
    server_factory: Factory,
    write_config: WriteConfig,
    cert_pair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    # A plaintext client on the SMTPS port waits for a greeting that never
    # comes; it used to be held for the whole idle timeout (here 60 s).
    events = tmp_path / "events.jsonl"
    limits = f"timeout = 60\ntls_handshake_timeout = 1\nevent_log = {events}\n"
    server = start(server_factory, write_config, cert_pair, limits, "-d")
    with _connect(server.port("smtps")) as sock:
        assert _closed(sock, timeout=30), "a silent SMTPS client was kept open"
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect("STARTTLS", 220)
        assert c.closed(timeout=30), "a silent STARTTLS client was kept open"
    server.wait_for(r"TLS handshake failed: timed out after 1 s")
    assert server.stop() == 0
    assert "Traceback" not in server.text()
    # The server ended both (OBSERVE.md's session ends), not the clients.
    ends = [line["end"] for line in event_lines(events) if line["type"] == "session"]
    assert ends == ["timeout", "timeout"]


# --- tls_dhparams and -ls ----------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_and_dh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """An RSA certificate and key (DHE suites need one) and RFC 7919 ffdhe2048."""
    directory = tmp_path_factory.mktemp("dhe")
    cert, key = rsa_cert(directory)
    return cert, key, dhparams(directory)


def test_tls_dhparams_enables_dhe(
    server_factory: Factory, write_config: WriteConfig, rsa_and_dh: tuple[Path, Path, Path]
) -> None:
    cert, key, dh = rsa_and_dh
    dhe = "DHE-RSA-AES128-GCM-SHA256"
    with_dh = start(server_factory, write_config, (cert, key), f"tls_dhparams = {dh}\n")
    for scheme in ("smtp", "smtps"):
        args = ["-starttls", "smtp"] if scheme == "smtp" else []
        code, out = _s_client(with_dh.port(scheme), "-tls1_2", "-cipher", dhe, *args)
        assert code == 0, out
        assert f"Cipher is {dhe}" in out, out
        assert "Server Temp Key: DH, 2048 bits" in out, out
    with_dh.stop()
    # Without tls_dhparams there is no DH group, so no DHE suite (ECDHE only).
    without = start(server_factory, write_config, (cert, key))
    code, out = _s_client(without.port("smtps"), "-tls1_2", "-cipher", dhe)
    assert code != 0, out
    ecdhe = "ECDHE-RSA-AES128-GCM-SHA256"
    code, out = _s_client(without.port("smtps"), "-tls1_2", "-cipher", ecdhe)
    assert code == 0, out


def test_bad_dhparams_is_a_config_error(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not dh params\n")
    config = write_config(
        f"listen = 127.0.0.1:0\ntls_cert = {cert_pair[0]}\ntls_key = {cert_pair[1]}\n"
        f"tls_dhparams = {bogus}\n"
    )
    result = tool([sys.executable, "-m", "blackhole", "-c", str(config), "-t"])
    assert result.returncode == 64, result.stdout
    assert str(bogus) in result.stdout, result.stdout


def test_less_secure_flag_keeps_tls_working(
    server_factory: Factory, write_config: WriteConfig, rsa_and_dh: tuple[Path, Path, Path]
) -> None:
    # -ls (classic): skip single-use DH keys. Modern OpenSSL always uses fresh
    # ephemeral keys, so the visible contract is that it is accepted and TLS
    # (ECDHE and, with tls_dhparams, DHE) works as before.
    cert, key, dh = rsa_and_dh
    server = start(server_factory, write_config, (cert, key), f"tls_dhparams = {dh}\n", "-ls")
    for cipher in ("DHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"):
        code, out = _s_client(server.port("smtps"), "-tls1_2", "-cipher", cipher)
        assert code == 0, out
    result = swaks(server.port("smtp"), "--tls")
    assert result.returncode == 0, result.stdout
    config = write_config(f"listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\n")
    checked = tool([sys.executable, "-m", "blackhole", "-c", str(config), "--less-secure", "-t"])
    assert checked.returncode == 0, checked.stdout


# --- helpers --------------------------------------------------------------------


def _connect(port: int) -> closing[socket.socket]:
    return closing(socket.create_connection((HOST, port), timeout=10))


def _closed(sock: socket.socket, timeout: float) -> bool:
    """True once the server closed the connection without sending anything back."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    # A TLS alert may come first; a plaintext SMTP reply never may.
    assert not data.startswith((b"220", b"250", b"5")), data
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        return False
    return True


def test_starttls_no_on_a_listener_offers_none_with_a_certificate(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path]
) -> None:
    # As the classic server: a client that upgrades whenever STARTTLS is
    # offered, and checks the certificate, would fail on a self-signed one.
    listen = "listen = 127.0.0.1:0 starttls=no, 127.0.0.1:0\n"
    server = start(server_factory, write_config, cert_pair, listen=listen)
    with smtplib.SMTP(HOST, server.port("smtp", 0), timeout=10) as plain:
        plain.ehlo()
        assert not plain.has_extn("starttls")
        assert plain.docmd("STARTTLS")[0] == 502
    with smtplib.SMTP(HOST, server.port("smtp", 1), timeout=10) as other:
        other.ehlo()
        assert other.has_extn("starttls")  # the flag is this listener's alone
