"""CHUNKING/BDAT and BINARYMIME (RFC 3030) over real sockets.

No common client library speaks BDAT, so these are raw-socket sessions: chunk
sizes, the LAST chunk, size limits across chunks, binary content, the mode's
answer to the last chunk and the sequencing rules.
"""

from __future__ import annotations

import re
import time

from tests.e2e import shared_server
from tests.serverproc import ServerProcess
from tests.smtpclient import Reply
from tests.tlsclients import Smtp

BOUNCE_CODES = {450, 451, 452, 458, 521, 550, 551, 552, 553, 571}
LIMIT = 2000  # max_message_size for these tests


server = shared_server(f"max_message_size = {LIMIT}\n", tls=True)
bouncer = shared_server("mode = bounce\n", tls=True)


def _bdat(c: Smtp, chunk: bytes, last: bool = False) -> Reply:
    c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
    return c.reply()


def _queued(reply: Reply) -> bool:
    return reply.code == 250 and re.match(r"2\.0\.0 OK: queued as \S+$", reply.text) is not None


def test_chunking_and_binarymime_offered(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        offered = c.ehlo()
        assert {"CHUNKING", "BINARYMIME"} <= set(offered)


def test_chunks_then_last(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        reply = _bdat(c, b"Subject: chunked\r\n")
        assert (reply.code, reply.enhanced) == (250, "2.0.0"), reply
        assert "18 octets" in reply.text, reply
        reply = _bdat(c, b"\r\nhello ")
        assert "26 octets" in reply.text, reply  # the running total
        assert _queued(_bdat(c, b"world\r\n", last=True))
        # The next transaction on the same connection works, with DATA too.
        c.mail_rcpt()
        assert _queued(c.data())


def test_single_last_chunk_and_bdat_0_last(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        assert _queued(_bdat(c, b"Subject: one\r\n\r\nbody\r\n", last=True))
        c.mail_rcpt()
        _bdat(c, b"Subject: two\r\n\r\nbody\r\n")
        assert _queued(c.cmd("BDAT 0 LAST"))  # RFC 3030 section 2: an empty last chunk
        c.mail_rcpt()
        assert _queued(c.cmd("BDAT 0 LAST"))  # an empty message


def test_size_limit_across_chunks(server: ServerProcess) -> None:
    half = b"x" * (LIMIT // 2 + 10) + b"\r\n"
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        assert _bdat(c, half).code == 250
        reply = _bdat(c, half)  # together over the limit
        assert (reply.code, reply.enhanced) == (552, "5.3.4"), reply
        # RFC 3030 section 2: the transaction failed; later chunks are read
        # and refused, never taken as commands.
        reply = _bdat(c, b"NOOP\r\nQUIT\r\n", last=True)
        assert reply.code == 503, reply
        c.expect("NOOP", 250)
        c.mail_rcpt()
        assert _queued(_bdat(c, b"small\r\n", last=True))


def test_one_huge_chunk_is_read_to_the_end(server: ServerProcess) -> None:
    size = 1_000_000  # far over the limit: read while discarding, then 552
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        c.send(b"BDAT %d LAST\r\n" % size)
        block = b"A" * 65536
        sent = 0
        while sent < size:
            n = min(len(block), size - sent)
            c.send(block[:n])
            sent += n
        reply = c.reply()
        assert (reply.code, reply.enhanced) == (552, "5.3.4"), reply
        c.expect("RSET", 250)


def test_declared_size_over_the_limit(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<a@example.com> SIZE={LIMIT + 1}", 552, "5.3.4")


def test_mode_decides_the_last_chunk(bouncer: ServerProcess) -> None:
    with Smtp.connect(bouncer.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        assert _bdat(c, b"Subject: b\r\n\r\n").code == 250  # chunks before LAST: 250
        reply = _bdat(c, b"body\r\n", last=True)
        assert reply.code in BOUNCE_CODES, reply
        assert reply.enhanced is not None and reply.enhanced[0] == str(reply.code)[0], reply
        c.mail_rcpt()
        reply = c.cmd("BDAT 0 LAST")
        assert reply.code in BOUNCE_CODES, reply


def test_header_switch_in_bdat_content(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        _bdat(c, b"X-Blackhole-")  # the header split across chunks
        reply = _bdat(c, b"Mode: bounce\r\nSubject: s\r\n\r\nbody\r\n", last=True)
        assert reply.code in BOUNCE_CODES, reply
        # The switch applied to that message only.
        c.mail_rcpt()
        assert _queued(_bdat(c, b"Subject: next\r\n\r\nbody\r\n", last=True))


def test_data_after_bdat_is_503(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        _bdat(c, b"Subject: x\r\n")
        c.expect("DATA", 503, "5.5.1")  # RFC 3030 section 3: no mixing
        c.expect("MAIL FROM:<a@example.com>", 503, "5.5.1")
        # The BDAT transaction is intact and can still be finished.
        assert _queued(_bdat(c, b"\r\nbody\r\n", last=True))


def test_bdat_out_of_sequence_reads_and_refuses_its_chunk(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        reply = _bdat(c, b"RSET\r\nQUIT\r\n")  # no MAIL yet
        assert (reply.code, reply.enhanced) == (503, "5.5.1"), reply
        c.expect("MAIL FROM:<a@example.com>", 250)
        reply = _bdat(c, b"QUIT\r\n", last=True)  # no RCPT yet
        assert reply.code == 503, reply
        c.expect("RCPT TO:<b@example.com>", 250)  # the transaction survived
        assert _queued(_bdat(c, b"ok\r\n", last=True))


def test_bdat_syntax_errors_without_a_size(server: ServerProcess) -> None:
    # The size cannot be read, so nothing can be skipped: one 501 each, and
    # the transaction is left as it was.
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.mail_rcpt()
        for bad in ("BDAT", "BDAT x", "BDAT -1", "BDAT 5x LAST"):
            c.expect(bad, 501, "5.5.4")
        assert _queued(_bdat(c, b"ok\r\n", last=True))


def test_bdat_syntax_error_with_a_size_skips_its_chunk(server: ServerProcess) -> None:
    # RFC 3030 section 2: the chunk follows the command whatever the reply;
    # with its size readable it is read and dropped, and answered once. Its
    # octets here are commands that must never run.
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        for bad in (b"BDAT 6 LAST junk", b"BDAT 6 NOTLAST", b"BDAT 6 LAST LAST"):
            c.mail_rcpt()
            c.send(bad + b"\r\nQUIT\r\n")
            reply = c.reply()
            assert (reply.code, reply.enhanced) == (501, "5.5.4"), (bad, reply)
            c.expect("NOOP", 250)  # in step: one reply, the QUIT never ran
            # The transaction failed (a 5xx to a chunk): later chunks are
            # read and refused, never taken for a truncated message.
            reply = _bdat(c, b"RSET\r\n", last=True)
            assert (reply.code, reply.enhanced) == (503, "5.5.1"), reply
            c.expect("NOOP", 250)
        c.mail_rcpt()
        assert _queued(_bdat(c, b"ok\r\n", last=True))


def test_pipelined_chunks_after_a_malformed_bdat_are_dropped(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            b"BDAT 5 FIRST\r\nhelloBDAT 6\r\nQUIT\r\nBDAT 4 LAST\r\nRSETNOOP\r\n"
        )
        replies = c.replies(6)
        assert [r.code for r in replies] == [250, 250, 501, 503, 503, 250], replies
        # The LAST chunk ended the failed transaction: a new one may start.
        c.mail_rcpt()
        assert _queued(_bdat(c, b"ok\r\n", last=True))


def test_binarymime(server: ServerProcess) -> None:
    # Every byte value, bare CR and LF, NUL, a lone "." line: BDAT counts, never parses.
    content = bytes(range(256)) * 3 + b"\r\n.\r\n\n.\n\r\x00"
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com> BODY=BINARYMIME", 250)
        c.expect("RCPT TO:<b@example.com>", 250)
        c.expect("DATA", 503, "5.5.1")  # RFC 3030 section 3: BINARYMIME needs BDAT
        reply = _bdat(c, content[:100])
        assert "100 octets" in reply.text, reply
        assert _queued(_bdat(c, content[100:], last=True))


def test_bdat_pipelined(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.send(
            b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\n"
            b"BDAT 5\r\nhelloBDAT 7 LAST\r\n world\nMAIL FROM:<c@example.com>\r\n"
            b"RCPT TO:<d@example.com>\r\nBDAT 0 LAST\r\nQUIT\r\n"
        )
        replies = c.replies(8)
        assert [r.code for r in replies] == [250, 250, 250, 250, 250, 250, 250, 221]
        assert "5 octets" in replies[2].text
        assert _queued(replies[3]) and _queued(replies[6])
        assert replies[3].text != replies[6].text


def test_bdat_inside_tls(server: ServerProcess) -> None:
    with Smtp.connect(server.port("smtps"), tls=True) as c:
        c.ehlo()
        c.mail_rcpt()
        _bdat(c, b"x" * 100)
        assert _queued(_bdat(c, b"y" * 100, last=True))
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        c.mail_rcpt()
        assert _queued(_bdat(c, b"z" * 500, last=True))


def test_delayed_answer_to_the_last_chunk(server: ServerProcess) -> None:
    content = b"X-Blackhole-Delay: 0.3\r\nSubject: slow\r\n\r\nbody\r\n"
    with Smtp.connect(server.port("smtp")) as c:
        c.ehlo()
        started = time.monotonic()
        c.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            + b"BDAT %d LAST\r\n" % len(content)
            + content
            + b"MAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nBDAT 0 LAST\r\n"
        )
        replies = c.replies(6)
        assert [r.code for r in replies] == [250] * 6
        assert _queued(replies[2]) and _queued(replies[5])
        # The switch delayed that message's answer, and the pipelined
        # transaction behind it was answered after it, in order.
        # The delay runs on the server loop's clock, which libuv reads once a
        # turn and in milliseconds: measured here it may come out a hair short.
        assert time.monotonic() - started >= 0.25
