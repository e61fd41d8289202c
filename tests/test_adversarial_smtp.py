"""Adversarial review of the SMTP conversation, over real sockets.

Each test is a defect that a hostile or sloppy client found, checked the way
the client sees it: the reply it gets, then that the session goes on serving.
What held under the same review is covered by test_e2e_attacks,
test_e2e_params, test_e2e_bdat and their neighbours, and not repeated here.
"""

from __future__ import annotations

import pytest

from tests.e2e import assert_clean_log, queue_id, shared_server
from tests.serverproc import ServerProcess
from tests.smtpclient import Client

server = shared_server("listen = 127.0.0.1:0\ntimeout = 10\n")


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        (b"y" * 998, True),  # 1000 octets with its CRLF: the limit
        (b"y" * 999, False),  # 1001 octets, no stuffed dot: one over
        (b".." + b"y" * 997, True),  # 1001 on the wire, 1000 before stuffing
        (b".." + b"y" * 998, False),  # 1002 on the wire, 1001 before stuffing
    ],
    ids=["1000", "1001", "1001-stuffed", "1002-stuffed"],
)
def test_text_line_limit_counts_only_a_stuffed_dot_extra(
    server: ServerProcess, line: bytes, accepted: bool
) -> None:
    # RFC 5321 4.5.3.1.6 (and SPEC.md: "text line over 1000: 500 5.5.2"):
    # 1000 octets with CRLF, "not counting the leading dot duplicated for
    # transparency". The extra octet was allowed to every line, so a 1001
    # octet line without a dot passed.
    with Client.connect(server.port()) as client:
        client.into_data()
        client.send(b"Subject: edge\r\n\r\n" + line + b"\r\n.\r\n")
        reply = client.reply()
        if accepted:
            assert queue_id(reply)
        else:
            assert str(reply).startswith("500 5.5.2"), reply
        assert queue_id(client.transaction())  # the session goes on
    assert_clean_log(server)


def test_an_overlong_sasl_response_gets_5_5_6(server: ServerProcess) -> None:
    # RFC 4954 section 6: "500 5.5.6 Authentication Exchange line is too
    # long" for a response over what the server takes (12288 octets, section
    # 4). It got the command line's 5.5.2. The exchange is over either way.
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        client.expect("AUTH PLAIN", 334)
        client.expect(b"A" * 13000, 500, "5.5.6")
        client.expect("NOOP", 250)  # a command again, not a SASL response
        client.expect("AUTH PLAIN AHVzZXIAc2VjcmV0", 235, "2.7.0")
    assert_clean_log(server)


@pytest.mark.parametrize(
    ("command", "params"),
    [
        ("MAIL FROM:<a@example.com>", "SIZE=abc"),
        ("MAIL FROM:<a@example.com>", "BODY=9BIT"),
        ("MAIL FROM:<a@example.com>", "SIZE=10 SIZE=20"),  # a contradiction
        ("RCPT TO:<b@example.com>", "NOTIFY=NEVER,SUCCESS"),
        ("RCPT TO:<b@example.com>", "ORCPT=rfc822"),
    ],
)
def test_malformed_parameters_get_555_as_spec_says(
    server: ServerProcess, command: str, params: str
) -> None:
    # SPEC.md: "Unknown or malformed parameters get 555 5.5.4". Malformed
    # ones got 501 5.5.4 (RFC 5321 4.2.3 would allow either; SPEC.md wins).
    with Client.connect(server.port()) as client:
        client.expect("EHLO client.test", 250)
        if command.startswith("RCPT"):
            client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect(f"{command} {params}", 555, "5.5.4")
        client.expect(command, 250)  # the same command without them is fine
    assert_clean_log(server)


def _raw_reply(client: Client) -> list[bytes]:
    """One reply's lines exactly as they came (CRLF included)."""
    lines = [client.line()]
    while lines[-1][3:4] == b"-":
        lines.append(client.line())
    return lines


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("EHLO " + "h" * 505, 250),
        ("HELO " + "h" * 505, 250),
        ("EHLO h" + "\u00e9" * 252, 250),  # 505 octets: the cut falls inside a character
        ("VRFY pass=" + "v" * 495, 250),
        ("VRFY fail=" + "v" * 495, 550),
    ],
    ids=["ehlo", "helo", "ehlo-utf8", "vrfy-pass", "vrfy-fail"],
)
def test_replies_quoting_the_client_fit_in_512_octets(
    server: ServerProcess, command: str, code: int
) -> None:
    # RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its code
    # and CRLF. A command line may be 512 octets too, and the HELO/EHLO
    # greeting and VRFY's answer quote the argument: they were 525 octets.
    line = command.encode() + b"\r\n"
    assert len(line) <= 512  # a command within its own limit
    with Client.connect(server.port()) as client:
        client.send(line)
        raw = _raw_reply(client)
        assert int(raw[0][:3]) == code, raw
        for reply_line in raw:
            assert len(reply_line) <= 512, reply_line
            reply_line.decode("utf-8")  # whole characters only
        client.expect("NOOP", 250)
    assert_clean_log(server)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: mx.test\r\n\r\n",  # a long URL
        b"POST /caf\xe9 HTTP/1.1\r\nHost: mx.test\r\n\r\n",  # Latin-1, not UTF-8
        b"GET /\x1b[2J HTTP/1.1\r\n\r\n",  # a control byte
    ],
    ids=["long-url", "latin1", "control"],
)
def test_an_http_request_the_parser_refuses_still_gets_no_reply(
    server: ServerProcess, request_bytes: bytes
) -> None:
    # README: an HTTP client "is disconnected at once, without a reply". A
    # request line over 512 octets, or not UTF-8, got a 500 first: SMTP text
    # in answer to a browser (the cross-protocol case the rule is for).
    with Client.connect(server.port()) as client:
        client.send(request_bytes)
        assert client.closed()
        assert client.buf == b""  # not a single reply line
    with Client.connect(server.port()) as client:
        client.expect("EHLO c", 250)
        client.expect(b"NOOP \xe9", 500, "5.5.2")  # other bad lines: 500 as before
    assert_clean_log(server)
