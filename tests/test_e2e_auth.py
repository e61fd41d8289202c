"""AUTH (RFC 4954) with PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195), end to end.

Blackhole checks no password: ``fail=`` in the credentials gets 535 5.7.8,
``pass=`` forces 235 2.7.0, anything else succeeds. CRAM-MD5 sends only the
user name and an HMAC, so there only the user name can carry ``fail=``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import smtplib
from pathlib import Path

import pytest

from tests.e2e import shared_server
from tests.serverproc import ServerProcess
from tests.smtpclient import HOST, insecure_context
from tests.tlsclients import (
    Factory,
    Smtp,
    WriteConfig,
    b64,
    server_replies,
    start,
    swaks,
    tool,
)

# One plain (STARTTLS) and one SMTPS listener, shared by this module's tests.
server = shared_server(tls=True)


MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
# PLAIN responses (RFC 4616: authzid NUL authcid NUL passwd), base64.
OK = b64("\0alice\0secret")
FAIL = b64("\0fail=1\0secret")
FAIL_AUTHZ = b64("authz\0fail=x\0pw")
TRANSPORTS = {
    "plain": ("smtp", ()),
    "starttls": ("smtp", ("--tls",)),
    "smtps": ("smtps", ("--tlsc",)),
}


def _swaks_auth(
    server: ServerProcess, transport: str, mechanism: str, user: str, password: str
) -> tuple[int, list[str], str]:
    scheme, tls = TRANSPORTS[transport]
    result = swaks(
        server.port(scheme),
        *tls,
        *("--auth", mechanism, "--auth-user", user, "--auth-password", password),
    )
    return result.returncode, server_replies(result.stdout), result.stdout


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_swaks_auth_succeeds(server: ServerProcess, mechanism: str, transport: str) -> None:
    code, replies, out = _swaks_auth(server, transport, mechanism, "alice", "secret")
    assert code == 0, out
    assert "235 2.7.0 Authentication successful" in replies, out
    assert any(r.startswith("250 2.0.0 OK: queued as") for r in replies), out
    if mechanism == "LOGIN":
        assert "334 VXNlcm5hbWU6" in replies and "334 UGFzc3dvcmQ6" in replies, out


@pytest.mark.parametrize(
    ("mechanism", "user", "password"),
    [
        ("PLAIN", "alice", "fail=yes"),
        ("PLAIN", "fail=yes", "secret"),
        ("LOGIN", "alice", "fail=yes"),
        ("LOGIN", "fail=yes", "secret"),
        # CRAM-MD5: the password never crosses the wire, the user name does.
        ("CRAM-MD5", "fail=x", "secret"),
    ],
)
@pytest.mark.parametrize("transport", ["plain", "starttls", "smtps"])
def test_swaks_auth_fail(
    server: ServerProcess, transport: str, mechanism: str, user: str, password: str
) -> None:
    code, replies, out = _swaks_auth(server, transport, mechanism, user, password)
    assert code != 0, out
    assert "535 5.7.8 Authentication credentials invalid" in replies, out


def test_cram_md5_cannot_see_fail_in_the_password(server: ServerProcess) -> None:
    # Documented limitation: only HMAC-MD5(password) is sent, so fail= there is invisible.
    code, replies, out = _swaks_auth(server, "plain", "CRAM-MD5", "alice", "fail=yes")
    assert code == 0, out
    assert "235 2.7.0 Authentication successful" in replies, out


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_pass_wins_over_fail(server: ServerProcess, mechanism: str) -> None:
    user = "pass=1 fail=2" if mechanism == "CRAM-MD5" else "pass=1"
    code, replies, out = _swaks_auth(server, "starttls", mechanism, user, "fail=2")
    assert code == 0, out
    assert "235 2.7.0 Authentication successful" in replies, out


# --- the exchanges byte by byte --------------------------------------------------


def test_plain_with_and_without_initial_response(server: ServerProcess) -> None:
    token = b64("\0alice\0secret")
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect(f"AUTH PLAIN {token}", 235, "2.7.0")
        c.expect(f"AUTH PLAIN {token}", 503, "5.5.1")  # RFC 4954 section 4: once only
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        reply = c.expect("AUTH PLAIN", 334)
        assert reply.lines == [""]  # an empty challenge
        c.expect(token, 235, "2.7.0")
        c.mail_rcpt()
        assert c.data().code == 250
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect(f"AUTH PLAIN {FAIL_AUTHZ}", 535, "5.7.8")
        # A failed AUTH may be retried (RFC 4954 section 4).
        c.expect("AUTH PLAIN", 334)
        c.expect(b64("\0bob\0pw"), 235)


def test_login_prompts(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        reply = c.expect("AUTH LOGIN", 334)
        assert base64.b64decode(reply.lines[0]) == b"Username:"
        reply = c.expect(b64("alice"), 334)
        assert base64.b64decode(reply.lines[0]) == b"Password:"
        c.expect(b64("secret"), 235, "2.7.0")
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        # The user name as initial response: straight to the password prompt.
        reply = c.expect(f"AUTH LOGIN {b64('alice')}", 334)
        assert base64.b64decode(reply.lines[0]) == b"Password:"
        c.expect(b64("fail=1"), 535, "5.7.8")


def test_cram_md5_challenge_and_response(server: ServerProcess) -> None:
    challenges = set()
    for user, expected in (("alice", 235), ("fail=x", 535)):
        with Smtp.connect(server.port("smtp")) as c:
            c.ehlo()
            reply = c.expect("AUTH CRAM-MD5", 334)
            challenge = base64.b64decode(reply.lines[0], validate=True)
            # RFC 2195 section 2: a msg-id like "<digits.timestamp@hostname>".
            assert re.fullmatch(rb"<[0-9]+\.[0-9]+@[^>\s]+>", challenge), challenge
            challenges.add(challenge)
            digest = hmac.new(b"secret", challenge, hashlib.md5).hexdigest()
            c.expect(b64(f"{user} {digest}"), expected)
    assert len(challenges) == 2  # a fresh challenge each time


@pytest.mark.parametrize(
    ("command", "prompts"),
    [("AUTH PLAIN", 0), ("AUTH LOGIN", 0), ("AUTH LOGIN", 1), ("AUTH CRAM-MD5", 0)],
)
def test_star_cancels(server: ServerProcess, command: str, prompts: int) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect(command, 334)
        for _ in range(prompts):
            c.expect(b64("alice"), 334)
        reply = c.expect("*", 501)
        assert reply.enhanced is not None and reply.enhanced.startswith("5.")
        # Back to commands, not authenticated: AUTH may start again.
        c.expect("NOOP", 250)
        c.expect(f"AUTH PLAIN {OK}", 235)


def test_auth_errors(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.expect(f"AUTH PLAIN {OK}", 503, "5.5.1")  # before EHLO
        c.ehlo()
        c.expect("AUTH DIGEST-MD5", 504, "5.5.4")
        c.expect("AUTH XOAUTH2 dG9rZW4=", 504, "5.5.4")
        c.expect("AUTH", 501, "5.5.4")
        c.expect("AUTH PLAIN", 334)
        c.expect("%%% not base64 %%%", 501)
        c.expect("AUTH CRAM-MD5 dXNlcg==", 501, "5.5.4")  # CRAM-MD5 has no initial response
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect(f"AUTH PLAIN {OK}", 503, "5.5.1")  # inside a transaction
        c.expect("RSET", 250)
        c.expect(f"AUTH PLAIN {OK}", 235)
        c.expect(f"AUTH LOGIN {b64('a')}", 503, "5.5.1")  # twice


@pytest.mark.parametrize("response", [b"\xff\xfe", b"\x00", b"dXNlcg==\x7f"])
def test_a_response_that_is_not_text_is_not_decodable(
    server: ServerProcess, response: bytes
) -> None:
    """RFC 4954 section 4: a SASL response that cannot be decoded gets 501
    5.5.2. It is no command, so not the 500 a command of such bytes gets."""
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect("AUTH LOGIN", 334)
        c.expect(response, 501, "5.5.2")
        c.expect("NOOP", 250)  # the exchange is over; commands again
        c.expect(f"AUTH PLAIN {OK}", 235)


def test_auth_then_starttls_forgets_it(server: ServerProcess) -> None:
    # RFC 3207 section 4.2: everything learnt before TLS is discarded, AUTH too.
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect(f"AUTH PLAIN {OK}", 235)
        c.starttls()
        c.ehlo()
        c.expect(f"AUTH PLAIN {OK}", 235)  # not "503 already authenticated"


# --- other real clients -----------------------------------------------------------


@pytest.mark.parametrize("login", ["AUTH=PLAIN", "AUTH=LOGIN", "AUTH=CRAM-MD5"])
@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_curl_ssl_reqd_user(server: ServerProcess, tmp_path: Path, scheme: str, login: str) -> None:
    message = tmp_path / "message.eml"
    message.write_bytes(b"From: a@example.com\r\nTo: b@example.com\r\nSubject: curl\r\n\r\nhi\r\n")
    base = [
        "curl",
        "--silent",
        "--show-error",
        "--verbose",
        "--insecure",
        "--max-time",
        "20",
        f"{scheme}://{HOST}:{server.port(scheme)}",
        "--mail-from",
        "a@example.com",
        "--mail-rcpt",
        "b@example.com",
        "--upload-file",
        str(message),
        "--login-options",
        login,
    ]
    if scheme == "smtp":
        base.append("--ssl-reqd")  # STARTTLS or fail
    ok = tool([*base, "--user", "alice:secret"])
    assert ok.returncode == 0, ok.stdout
    assert "< 235 2.7.0" in ok.stdout, ok.stdout
    assert re.search(r"< 250 2\.0\.0 OK: queued as \S+", ok.stdout), ok.stdout
    if scheme == "smtp":
        assert "STARTTLS" in ok.stdout and "TLSv1.3" in ok.stdout, ok.stdout
    failing = "fail=x:secret" if login == "AUTH=CRAM-MD5" else "alice:fail=x"
    bad = tool([*base, "--user", failing])
    assert bad.returncode == 67, bad.stdout  # CURLE_LOGIN_DENIED
    assert "< 535 5.7.8" in bad.stdout, bad.stdout


def test_smtplib_login(server: ServerProcess) -> None:
    with smtplib.SMTP(HOST, server.port("smtp"), timeout=10) as client:
        client.starttls(context=insecure_context())
        client.ehlo()
        assert client.has_extn("auth")
        assert client.login("alice", "secret") == (235, b"2.7.0 Authentication successful")
        assert client.sendmail("a@example.com", ["b@example.com"], b"\r\nhi\r\n") == {}
    with smtplib.SMTP_SSL(HOST, server.port("smtps"), context=insecure_context(), timeout=10) as c:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            c.login("fail=x", "secret")  # smtplib tries CRAM-MD5 first
        assert err.value.smtp_code == 535
        c.ehlo()
        c.user, c.password = "alice", "fail=x"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.auth("PLAIN", c.auth_plain)
        c.password = "secret"
        assert c.auth("LOGIN", c.auth_login) == (235, b"2.7.0 Authentication successful")


# --- configuration ----------------------------------------------------------------


def test_auth_required(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path]
) -> None:
    server = start(server_factory, write_config, cert_pair, "auth_required = true\n")
    for scheme, tls in (("smtp", False), ("smtps", True)):
        with Smtp.connect(server.port(scheme), tls=tls) as c:
            assert "AUTH" in c.ehlo()
            c.expect("MAIL FROM:<a@example.com>", 530, "5.7.0")
            c.expect(f"AUTH PLAIN {FAIL}", 535)
            c.expect("MAIL FROM:<a@example.com>", 530, "5.7.0")
            c.expect(f"AUTH PLAIN {OK}", 235)
            c.mail_rcpt()
            assert c.data().code == 250
    no_auth = swaks(server.port("smtp"), "--tls")
    assert no_auth.returncode != 0
    assert any(r.startswith("530 5.7.0") for r in server_replies(no_auth.stdout)), no_auth.stdout
    with_auth = swaks(
        server.port("smtp"), "--tls", "--auth", "LOGIN", "--auth-user", "u", "--auth-password", "p"
    )
    assert with_auth.returncode == 0, with_auth.stdout


def test_auth_tls_only(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path]
) -> None:
    server = start(server_factory, write_config, cert_pair, "auth_tls_only = true\n")
    with Smtp.connect(server.port("smtp")) as c:
        offered = c.ehlo()
        assert "AUTH" not in offered and "STARTTLS" in offered
        c.expect(f"AUTH PLAIN {OK}", 538, "5.7.11")  # RFC 4954 section 6
        c.mail_rcpt()  # AUTH is not required, only kept behind TLS
        assert c.data().code == 250
        c.starttls()
        assert "AUTH" in c.ehlo()
        c.expect(f"AUTH PLAIN {OK}", 235)
    with Smtp.connect(server.port("smtps"), tls=True) as c:
        assert "AUTH" in c.ehlo()
        c.expect("AUTH LOGIN", 334)
    plain = swaks(
        server.port("smtp"), "--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p"
    )
    assert plain.returncode != 0, plain.stdout  # AUTH not advertised
    tls = swaks(
        server.port("smtp"), "--tls", "--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p"
    )
    assert tls.returncode == 0, tls.stdout


def test_auth_required_and_tls_only(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path]
) -> None:
    server = start(
        server_factory, write_config, cert_pair, "auth_required = true\nauth_tls_only = true\n"
    )
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 530, "5.7.0")
        c.starttls()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 530, "5.7.0")
        c.expect("AUTH LOGIN", 334)
        c.expect(b64("u"), 334)
        c.expect(b64("p"), 235)
        c.mail_rcpt()
        assert c.data().code == 250


# --- secrecy ------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_credentials_never_logged(
    server_factory: Factory, write_config: WriteConfig, cert_pair: tuple[Path, Path], workers: int
) -> None:
    # With workers, sessions run in child processes whose log goes through the
    # supervisor: the same guarantee must hold there.
    user, password = "zorro-user-7f3a", "Sw0rdf1sh-9e1c-secret"
    server = start(server_factory, write_config, cert_pair, f"workers = {workers}\n", "-d")
    port = server.port("smtp")
    transports = (("smtp", ()), ("smtp", ("--tls",)), ("smtps", ("--tlsc",)))
    for mechanism, (scheme, tls) in zip(MECHANISMS, transports, strict=True):
        args = ("--auth", mechanism, "--auth-user", user, "--auth-password", password)
        assert swaks(server.port(scheme), *tls, *args).returncode == 0
    failed = swaks(
        port, "--auth", "PLAIN", "--auth-user", user, "--auth-password", "fail=" + password
    )
    assert failed.returncode != 0, failed.stdout
    with Smtp.connect(port) as c:
        c.ehlo()
        c.expect(f"AUTH PLAIN pass={password}", 235)  # the classic clear-text convention
        c.expect("QUIT", 221)
    with Smtp.connect(port) as c:
        c.ehlo()
        c.expect(f"AUTH LOGIN fail={password}", 334)  # the user name, in clear
        c.expect(b64("x"), 535)
        c.expect("QUIT", 221)
    with Smtp.connect(port) as c:
        c.ehlo()
        c.expect("AUTH LOGIN", 334)
        c.expect(b64(user), 334)
        c.expect("*", 501)
        c.expect(f"AUTH LOGIN {b64(user)}", 334)
        c.send(b64(password).encode() + b"\xff\r\n")  # a broken line mid-exchange
        c.reply()
    server.wait_for(r"message of")
    assert server.stop() == 0
    log = server.text()
    assert "DEBUG" in log  # -d really logged at debug level
    secrets = {
        user,
        password,
        b64(user),
        b64(password),
        b64(f"\0{user}\0{password}"),
        b64(f"\0{user}\0fail={password}"),
        base64.b64encode(password.encode())[:-4].decode(),
    }
    for secret in secrets:
        assert secret not in log, f"{secret!r} in the log:\n{log}"
