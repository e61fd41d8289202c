"""LMTP (RFC 2033) over real sockets, with Python's smtplib.LMTP as the client.

smtplib's ``data()`` reads one reply, as SMTP has; the other replies an LMTP
server owes after the content (one per accepted recipient, RFC 2033 section
4.2) are read here with ``getreply()``, and a missing one would time out.
"""

from __future__ import annotations

import re
import smtplib
import ssl

from tests.classic import CLASSIC_BOUNCES
from tests.e2e import assert_clean_log, shared_server
from tests.serverproc import ServerProcess

# lmtp listener index -> what it is for.
_ACCEPT, _BOUNCE, _CONFIG = 0, 1, 2
server = shared_server(
    "lmtp_listen = 127.0.0.1:0 mode=accept, 127.0.0.1:0 mode=bounce name=lda-bounce, 127.0.0.1:0\n"
    "mode = accept\nseed = 7\n",
    tls=True,
)

_RECIPIENTS = ("one@example.com", "two@example.com", "three@example.com")
_QUEUED = re.compile(rb"2\.0\.0 OK: queued as \S+")
_ENHANCED = re.compile(rb"([245])\.[0-9]{1,3}\.[0-9]{1,3} (.*)")


def _client(server: ServerProcess, index: int) -> smtplib.LMTP:
    client = smtplib.LMTP("127.0.0.1", server.port("lmtp", index), timeout=10)
    assert client.ehlo()[0] == 250  # smtplib.LMTP sends LHLO here
    return client


def _transaction(client: smtplib.LMTP, body: bytes) -> list[tuple[int, bytes]]:
    """MAIL, three RCPTs, DATA: the replies after the content, one per recipient."""
    assert client.mail("a@example.com")[0] == 250
    for recipient in _RECIPIENTS:
        assert client.rcpt(recipient)[0] == 250
    replies = [client.data(body)]
    replies += [client.getreply() for _ in _RECIPIENTS[1:]]
    return replies


def _well_formed(code: int, text: bytes) -> bool:
    if code == 250:
        return _QUEUED.fullmatch(text) is not None
    m = _ENHANCED.fullmatch(text)
    return (
        code in CLASSIC_BOUNCES
        and m is not None
        and m.group(1) == str(code)[0].encode()
        and m.group(2).decode() == CLASSIC_BOUNCES[code]
    )


def test_lhlo_offers_what_rfc_2033_requires(server: ServerProcess) -> None:
    with smtplib.LMTP("127.0.0.1", server.port("lmtp", _ACCEPT), timeout=10) as client:
        code, _ = client.ehlo()  # smtplib.LMTP sends LHLO here
        assert code == 250
        # RFC 2033 section 5: PIPELINING and ENHANCEDSTATUSCODES are a MUST.
        for keyword in ("pipelining", "enhancedstatuscodes", "8bitmime", "chunking", "starttls"):
            assert client.has_extn(keyword), keyword


def test_three_recipients_get_three_accepts(server: ServerProcess) -> None:
    with _client(server, _ACCEPT) as client:
        replies = _transaction(client, b"Subject: t\r\n\r\nhello\r\n")
        assert [code for code, _ in replies] == [250, 250, 250]
        assert all(_QUEUED.fullmatch(text) for _, text in replies)
        assert client.noop()[0] == 250  # nothing more was owed: the session is in step
    assert_clean_log(server)


def test_three_recipients_get_three_bounces(server: ServerProcess) -> None:
    with _client(server, _BOUNCE) as client:
        for _ in range(3):
            replies = _transaction(client, b"Subject: t\r\n\r\nhello\r\n")
            assert len(replies) == 3
            assert all(code != 250 and _well_formed(code, text) for code, text in replies)
        assert client.noop()[0] == 250


def test_each_recipient_is_decided_on_its_own(server: ServerProcess) -> None:
    body = b"X-Blackhole-Mode: random\r\nSubject: t\r\n\r\nhello\r\n"
    mixed = False
    with _client(server, _CONFIG) as client:
        for _ in range(10):
            replies = _transaction(client, body)
            assert len(replies) == 3
            assert all(_well_formed(code, text) for code, text in replies), replies
            mixed |= len({code == 250 for code, _ in replies}) == 2
        assert client.noop()[0] == 250
    # With a fixed seed this is deterministic; with one decision per message
    # every message would be all-accept or all-bounce.
    assert mixed


def test_startup_line_names_lmtp_listeners(server: ServerProcess) -> None:
    line = server.text()
    port = server.port("lmtp", _BOUNCE)
    assert f"lmtp://127.0.0.1:{port} (STARTTLS) [mode=bounce name=lda-bounce]" in line


def test_helo_and_ehlo_are_refused(server: ServerProcess) -> None:
    with smtplib.LMTP("127.0.0.1", server.port("lmtp", _ACCEPT), timeout=10) as client:
        for verb in ("HELO", "EHLO"):
            code, text = client.docmd(verb, "client.test")
            assert (code, text[:5]) == (500, b"5.5.1"), (verb, code, text)
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 503  # still no greeting


def test_lhlo_is_unknown_on_an_smtp_listener(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
        assert client.docmd("LHLO", "client.test")[0] == 502


def test_bdat_last_gets_one_reply_per_recipient(server: ServerProcess) -> None:
    with _client(server, _ACCEPT) as client:
        assert client.mail("a@example.com")[0] == 250
        for recipient in _RECIPIENTS:
            assert client.rcpt(recipient)[0] == 250
        client.send(b"BDAT 6\r\nSubjecBDAT 9 LAST\r\nt: x\r\n\r\nx")
        assert client.getreply()[0] == 250  # the first chunk: one reply
        replies = [client.getreply() for _ in _RECIPIENTS]
        assert all(code == 250 and _QUEUED.fullmatch(text) for code, text in replies)
        assert client.noop()[0] == 250


def test_starttls_on_lmtp(server: ServerProcess) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with _client(server, _ACCEPT) as client:
        assert client.starttls(context=context)[0] == 220
        assert client.ehlo()[0] == 250  # LHLO again, over TLS
        replies = _transaction(client, b"Subject: t\r\n\r\nhello\r\n")
        assert [code for code, _ in replies] == [250, 250, 250]
