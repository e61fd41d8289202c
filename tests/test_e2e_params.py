"""ESMTP parameters and extensions over real sockets and smtplib.

SIZE (RFC 1870), BODY= 8BITMIME (RFC 6152) and BINARYMIME (RFC 3030),
SMTPUTF8 (RFC 6531), DSN's RET/ENVID/NOTIFY/ORCPT (RFC 3461) and the enhanced
status codes (RFC 2034, RFC 3463) that every reply but a few must carry.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e import running, shared_server, tls_config
from tests.serverproc import ServerProcess
from tests.smtpclient import HOST, Reply, insecure_context
from tests.tlsclients import Smtp, b64

LIMIT = 100_000


server = shared_server(f"max_message_size = {LIMIT}\n", tls=True)


@pytest.fixture
def session(server: ServerProcess) -> Iterator[Smtp]:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        yield c


def test_ehlo_offers_what_is_implemented(session: Smtp) -> None:
    lines = session.ehlo_lines()
    assert lines == [
        "PIPELINING",
        f"SIZE {LIMIT}",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "CHUNKING",
        "BINARYMIME",
        "STARTTLS",
        "AUTH PLAIN LOGIN CRAM-MD5",
        "HELP",
        "VRFY",
        "ETRN",
        "EXPN",
    ]


# (MAIL parameters, expected code, expected enhanced code)
MAIL_CASES = [
    ("SIZE=1000", 250, "2.1.0"),
    ("SIZE=0", 250, "2.1.0"),
    (f"SIZE={LIMIT}", 250, "2.1.0"),
    (f"SIZE={LIMIT + 1}", 552, "5.3.4"),  # RFC 1870 section 6: refused at once
    ("SIZE=99999999999999999999", 552, "5.3.4"),
    ("SIZE=abc", 555, "5.5.4"),
    ("SIZE", 555, "5.5.4"),
    ("SIZE=-1", 555, "5.5.4"),
    ("BODY=7BIT", 250, "2.1.0"),
    ("BODY=8BITMIME", 250, "2.1.0"),
    ("body=8bitmime", 250, "2.1.0"),  # keywords and values are case-insensitive
    ("BODY=BINARYMIME", 250, "2.1.0"),
    ("BODY=9BIT", 555, "5.5.4"),
    ("BODY", 555, "5.5.4"),
    ("SMTPUTF8", 250, "2.1.0"),
    ("SMTPUTF8=yes", 555, "5.5.4"),
    ("RET=FULL", 250, "2.1.0"),
    ("RET=HDRS", 250, "2.1.0"),
    ("RET=NONE", 555, "5.5.4"),
    ("RET", 555, "5.5.4"),
    ("ENVID=QQ314159", 250, "2.1.0"),
    ("ENVID=abc+2Bdef+3D", 250, "2.1.0"),  # xtext: "+" and "=" as +XX
    ("ENVID=abc+zz", 555, "5.5.4"),  # "+" not followed by two upper-case hex digits
    ("ENVID=abc+2b", 555, "5.5.4"),
    ("ENVID=" + "x" * 101, 555, "5.5.4"),  # RFC 3461 section 4.4: at most 100
    ("ENVID=" + "x" * 100, 250, "2.1.0"),
    ("ENVID", 555, "5.5.4"),
    ("AUTH=<>", 250, "2.1.0"),  # RFC 4954 section 5
    ("AUTH=alice+40example.com", 250, "2.1.0"),
    ("SIZE=10 BODY=8BITMIME RET=HDRS ENVID=x SMTPUTF8", 250, "2.1.0"),
    ("SIZE=10 SIZE=20", 555, "5.5.4"),  # a contradiction
    ("RET=FULL ret=HDRS", 555, "5.5.4"),
    ("SMTPUTF8 BODY=8BITMIME SMTPUTF8", 250, "2.1.0"),  # a repetition (smtplib does it)
    ("FOO=bar", 555, "5.5.4"),  # RFC 5321 4.1.1.11: unrecognised parameter
    ("XFOO", 555, "5.5.4"),
    ("NOTIFY=NEVER", 555, "5.5.4"),  # a RCPT parameter, not a MAIL one
    ("ORCPT=rfc822;a@b.example", 555, "5.5.4"),
    ("=x", 555, "5.5.4"),
    ("-FOO=1", 555, "5.5.4"),
]


@pytest.mark.parametrize(("params", "code", "enhanced"), MAIL_CASES)
def test_mail_parameters(session: Smtp, params: str, code: int, enhanced: str) -> None:
    session.expect(f"MAIL FROM:<a@example.com> {params}", code, enhanced)
    session.expect("RSET", 250)


# (RCPT parameters, SMTPUTF8 on MAIL, expected code, expected enhanced code)
RCPT_CASES = [
    ("NOTIFY=NEVER", False, 250, "2.1.5"),
    ("NOTIFY=SUCCESS", False, 250, "2.1.5"),
    ("NOTIFY=SUCCESS,FAILURE,DELAY", False, 250, "2.1.5"),
    ("NOTIFY=delay,failure", False, 250, "2.1.5"),
    ("NOTIFY=NEVER,SUCCESS", False, 555, "5.5.4"),  # RFC 3461 section 4.1: NEVER alone
    ("NOTIFY=SUCCESS,SUCCESS", False, 555, "5.5.4"),
    ("NOTIFY=SOMETIMES", False, 555, "5.5.4"),
    ("NOTIFY=", False, 555, "5.5.4"),
    ("NOTIFY", False, 555, "5.5.4"),
    ("ORCPT=rfc822;bob@example.com", False, 250, "2.1.5"),
    ("ORCPT=rfc822;bob+2Bext@example.com", False, 250, "2.1.5"),
    ("ORCPT=rfc822", False, 555, "5.5.4"),  # addr-type ";" xtext
    ("ORCPT=rfc822;", False, 555, "5.5.4"),
    ("ORCPT=;bob@example.com", False, 555, "5.5.4"),
    ("ORCPT=rfc822;bob+zz@example.com", False, 555, "5.5.4"),
    ("ORCPT=utf-8;b\u00f6b@example.com", False, 555, "5.5.4"),
    ("ORCPT=utf-8;b\u00f6b@example.com", True, 250, "2.1.5"),  # RFC 6533 section 3
    ("NOTIFY=FAILURE ORCPT=rfc822;bob@example.com", False, 250, "2.1.5"),
    ("NOTIFY=FAILURE NOTIFY=DELAY", False, 555, "5.5.4"),
    ("RET=FULL", False, 555, "5.5.4"),  # a MAIL parameter, not a RCPT one
    ("FOO", False, 555, "5.5.4"),
]


@pytest.mark.parametrize(("params", "utf8", "code", "enhanced"), RCPT_CASES)
def test_rcpt_parameters(session: Smtp, params: str, utf8: bool, code: int, enhanced: str) -> None:
    session.expect("MAIL FROM:<a@example.com>" + (" SMTPUTF8" if utf8 else ""), 250)
    session.expect(f"RCPT TO:<b@example.com> {params}", code, enhanced)
    session.expect("RSET", 250)


def test_utf8_addresses_need_smtputf8(session: Smtp) -> None:
    sender, rcpt = "j\u00f6ran@b\u00fccher.example", "\u7528\u6237@\u4f8b\u5b50.example"
    session.expect(f"MAIL FROM:<{sender}>", 553, "5.6.7")  # RFC 6531 section 3.7.4.1
    session.expect("MAIL FROM:<a@example.com>", 250)
    session.expect(f"RCPT TO:<{rcpt}>", 553, "5.6.7")
    session.expect("RSET", 250)
    session.expect(f"MAIL FROM:<{sender}> SMTPUTF8", 250, "2.1.0")
    session.expect(f"RCPT TO:<{rcpt}>", 250, "2.1.5")
    body = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: gr\u00fc\u00dfe\r\n\r\nk\u00e4se\r\n"
    reply = session.data(body.encode())
    assert reply.code == 250, reply
    # SMTPUTF8 lasts for one transaction only.
    session.expect(f"MAIL FROM:<{sender}>", 553, "5.6.7")


def test_malformed_paths(session: Smtp) -> None:
    session.expect("MAIL FROM:<not an address>", 501, "5.1.7")
    session.expect("MAIL FROM:a@example.com", 250)  # no brackets: tolerated
    session.expect("RCPT TO:<@>", 501, "5.1.3")
    session.expect("RCPT TO:", 501)
    session.expect("RCPT TO:<postmaster>", 250)  # RFC 5321 4.5.1
    session.expect("RSET", 250)
    session.expect("MAIL FROM:<>", 250)  # the null reverse-path
    session.expect("RCPT TO:<>", 501, "5.1.3")


def test_smtplib_send_message_smtputf8(server: ServerProcess) -> None:
    msg = EmailMessage()
    msg["From"] = "J\u00f6ran <j\u00f6ran@b\u00fccher.example>"
    msg["To"] = "\u7528\u6237@\u4f8b\u5b50.example"
    msg["Subject"] = "Gr\u00fc\u00dfe"
    msg.set_content("K\u00e4se und Br\u00f6tchen\n")
    with smtplib.SMTP(HOST, server.port("smtp"), timeout=10) as client:
        client.starttls(context=insecure_context())
        client.ehlo()
        assert client.has_extn("smtputf8")
        # smtplib sees the UTF-8 addresses and adds SMTPUTF8 and BODY=8BITMIME.
        assert client.send_message(msg) == {}
        assert client.send_message(msg, mail_options=["SMTPUTF8"]) == {}
        refused = client.sendmail(
            "j\u00f6ran@b\u00fccher.example",
            ["\u7528\u6237@\u4f8b\u5b50.example"],
            msg.as_bytes(),
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x@example.com"],
        )
        assert refused == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            client.sendmail("j\u00f6ran@b\u00fccher.example", ["x@example.com"], b"\r\nhi\r\n")
        assert err.value.smtp_code == 553


def test_smtplib_dsn_and_size(server: ServerProcess) -> None:
    with smtplib.SMTP(HOST, server.port("smtp"), timeout=10) as client:
        client.ehlo()
        assert client.has_extn("dsn") and client.has_extn("size")
        assert int(client.esmtp_features["size"]) == LIMIT
        refused = client.sendmail(
            "a@example.com",
            ["b@example.com"],
            b"Subject: dsn\r\n\r\nhi\r\n",
            mail_options=["RET=HDRS", "ENVID=QQ314159"],  # smtplib adds SIZE=
            rcpt_options=["NOTIFY=DELAY"],
        )
        assert refused == {}
        # smtplib adds SIZE= itself; a message over the limit is refused at MAIL.
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            client.sendmail("a@example.com", ["b@example.com"], b"x" * (LIMIT + 1))
        assert (err.value.smtp_code, err.value.smtp_error[:5]) == (552, b"5.3.4")


def test_message_over_the_limit_without_size(session: Smtp) -> None:
    session.mail_rcpt()
    line = b"y" * 998 + b"\r\n"
    reply = session.data(line * (LIMIT // 1000 + 5))
    assert (reply.code, reply.enhanced) == (552, "5.3.4"), reply


def test_8bit_content_with_8bitmime(session: Smtp) -> None:
    session.expect("MAIL FROM:<a@example.com> BODY=8BITMIME", 250)
    session.expect("RCPT TO:<b@example.com>", 250)
    reply = session.data("Subject: 8bit\r\n\r\nna\u00efve caf\u00e9\r\n".encode("latin-1"))
    assert reply.code == 250, reply


# --- ENHANCEDSTATUSCODES on every reply ------------------------------------------------


def _check_enhanced(replies: list[tuple[str, Reply]]) -> None:
    """RFC 2034 section 3: every reply but the greeting, EHLO/HELO, 354 and 334
    carries an enhanced code (RFC 3463) whose class matches the basic code."""
    for command, reply in replies:
        if command.startswith(("EHLO", "HELO", "<greeting>")) or reply.code in (354, 334):
            continue
        for line in reply.lines:
            assert line.startswith(f"{str(reply.code)[0]}."), f"{command!r} -> {reply}"
        assert reply.enhanced is not None, f"{command!r} -> {reply}"
        assert reply.enhanced[0] == str(reply.code)[0], f"{command!r} -> {reply}"


def test_enhanced_status_codes_everywhere(server: ServerProcess) -> None:
    script: list[str | bytes] = [
        "HELO client.test",
        "EHLO client.test",
        "NOOP",
        "NOOP extra",
        "RSET",
        "HELP",
        "HELP MAIL",
        "HELP NOSUCH",
        "VRFY alice",
        "VRFY pass=alice",
        "VRFY fail=alice",
        "VRFY",
        "EXPN list1",
        "EXPN all",
        "EXPN nosuch",
        "EXPN fail=list1",
        "ETRN example.com",
        "ETRN",
        "XYZZY",
        "RCPT TO:<b@example.com>",
        "DATA",
        "BDAT 0 LAST",
        "MAIL FROM:<bad address>",
        "MAIL FROM:<a@example.com> FOO=1",
        "MAIL FROM:<a@example.com> SIZE=999999999",
        "MAIL FROM:<j\u00f6@example.com>",
        "MAIL TO:<a@example.com>",
        "AUTH NOSUCH",
        "AUTH PLAIN " + b64("\0fail=x\0y"),
        "AUTH PLAIN",
        "*",
        "AUTH PLAIN " + b64("\0a\0b"),
        "AUTH PLAIN " + b64("\0a\0b"),
        "MAIL FROM:<a@example.com>",
        "MAIL FROM:<a@example.com>",
        "STARTTLS",
        "RCPT TO:<bad>",
        "RCPT TO:<b@example.com> NOTIFY=BAD",
        "RCPT TO:<b@example.com>",
        "DATA",
        b"Subject: x\r\n\r\nbody\r\n.",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.com>",
        "BDAT 3",
        b"abc" + b"BDAT 1 LAST\r\nd",
        "x" * 600,
        b"NOOP \xff\xfe",
        "STARTTLS now",
        "QUIT",
    ]
    replies: list[tuple[str, Reply]] = []
    with Smtp.connect(server.port("smtp")) as c:
        for item in script:
            line = item if isinstance(item, bytes) else item.encode()
            c.send(line + (b"" if line.startswith(b"abc") else b"\r\n"))
            if line.startswith(b"BDAT 3"):
                continue  # its reply comes after its chunk
            replies.append((line[:40].decode("utf-8", "replace"), c.reply()))
            if line.startswith(b"abc"):
                replies.append(("BDAT 1 LAST", c.reply()))
    codes = {r.code for _, r in replies}
    # The script really went through successes, refusals and errors of every kind.
    assert {221, 235, 250, 252, 214, 501, 502, 503, 504, 535, 550, 552, 553, 555} <= codes, codes
    _check_enhanced(replies)


def test_enhanced_status_codes_tls_and_bounces(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory, cert_pair: tuple[Path, Path]
) -> None:
    replies: list[tuple[str, Reply]] = []
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        replies.append(("STARTTLS", c.cmd("STARTTLS")))
        c.upgrade()
        for command in ("MAIL FROM:<a@example.com>", "EHLO x", "STARTTLS", "QUIT"):
            replies.append((command, c.cmd(command)))
    directory = tmp_path_factory.mktemp("bounce")
    with (
        running(directory, tls_config(cert_pair, "mode = bounce\n")) as bouncer,
        Smtp.connect(bouncer.port("smtps"), tls=True) as c,
    ):
        c.ehlo()
        for _ in range(15):
            c.mail_rcpt()
            replies.append(("<message>", c.data()))
    assert {r.code for cmd, r in replies if cmd == "<message>"} <= {
        450,
        451,
        452,
        458,
        521,
        550,
        551,
        552,
        553,
        571,
    }
    _check_enhanced(replies)
