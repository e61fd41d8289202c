"""Hypothesis properties of the sans-IO core.

(a) Any bytes, in any chunking, with any adapter actions in between, give
    only well-formed replies (RFC 5321 4.2.1) and never raise.
(b) Chunking invariance: a session gives the same replies and events whether
    its bytes arrive in one read, one byte at a time or cut anywhere.
(d) Rules: any verdicts at any watched stages keep (a), and (b) holds for
    the replies.
(c) The DATA reader: the reported size is the length of the dot-unstuffed
    content, only <CRLF>.<CRLF> ends it (SMTP smuggling), and the text-line
    limit is enforced exactly, wherever the reads are cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blackhole.protocol import MessageReceived, SessionSettings, StageReached
from blackhole.protocol.hooks import Stage, TLSFault, Verdict
from blackhole.protocol.limits import MAX_TEXT_LINE
from blackhole.protocol.replies import BOUNCES, Reply, queued
from tests.smtpdrive import Driver, make_settings

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_REPLY_LINE = re.compile(rb"[2-5][0-9]{2}[ -][^\r\n]*")

# Pieces that steer random input into every corner of the state machine.
_SNIPPETS = [
    b"EHLO c\r\n",
    b"HELO c\r\n",
    b"LHLO c\r\n",
    b"MAIL FROM:<a@example.com>\r\n",
    b"MAIL FROM:<> BODY=BINARYMIME SIZE=10\r\n",
    b"MAIL FROM:<j\xc3\xb6rg@example.com> SMTPUTF8\r\n",
    b"RCPT TO:<b@example.com> NOTIFY=NEVER\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"DATA\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..\r\n",
    b"X-Blackhole-Mode: bounce\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT x\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH CRAM-MD5\r\n",
    b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n",
    b"dXNlcg==\r\n",
    b"*\r\n",
    b"STARTTLS\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY\r\n",
    b"VRFY pass=x\r\n",
    b"EXPN all\r\n",
    b"ETRN x\r\n",
    b"HELP MAIL\r\n",
    b"QUIT\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b"A" * 600,
    b"B" * 13000,
]

_settings = st.builds(
    make_settings,
    tls_available=st.booleans(),
    tls_active=st.booleans(),
    auth_required=st.booleans(),
    auth_tls_only=st.booleans(),
    dynamic_switch=st.booleans(),
    collect_headers=st.booleans(),
    lmtp=st.booleans(),
    junk_command_limit=st.sampled_from([0, 1, 100]),
    max_message_size=st.sampled_from([0, 10, 1000, 512_000]),
    max_recipients=st.sampled_from([1, 2, 100]),
)


_ENDINGS = ("close", "drop", "reset")


def _answer(event: MessageReceived) -> Reply:
    # Deterministic in the event, so two runs of one session answer alike.
    return queued(f"ID{event.size}") if event.size % 3 else BOUNCES[event.size % len(BOUNCES)]


def _cut(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        if point > start:
            yield data[start:point]
            start = point


def _check_well_formed(out: bytes) -> None:
    """One write from the core: whole replies, each line ``code[ -]text CRLF``."""
    assert out.endswith(b"\r\n"), out[-80:]
    open_code: bytes | None = None
    for line in out[:-2].split(b"\r\n"):
        assert _REPLY_LINE.fullmatch(line), line[:80]
        code, sep = line[:3], line[3:4]
        if open_code is not None:
            assert code == open_code, f"multi-line reply changed code: {line[:80]!r}"
        open_code = code if sep == b"-" else None
    assert open_code is None, "a multi-line reply was left unfinished"


class _CheckingDriver(Driver):
    """A driver that checks every write and plays random adapter actions."""

    def pump(self) -> None:
        before = len(self.raw)
        super().pump()
        if len(self.raw) > before:
            # Each write in ``pump`` is whole replies; so is their sum.
            _check_well_formed(bytes(self.raw[before:]))
        if self.starttls and not self.closed:
            self.starttls = False
            self.conn.tls_started()  # the handshake "succeeded"


# --- (a) any bytes, any chunking: well-formed replies, no exception -------------------


@FAST
@given(
    session=_settings,
    pieces=st.lists(st.one_of(st.sampled_from(_SNIPPETS), st.binary(max_size=40)), max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=30),
    action=st.sampled_from([None, "timeout", "shutdown"]),
    action_at=st.integers(min_value=0, max_value=30),
)
def test_any_bytes_any_chunking_well_formed(
    session: object, pieces: list[bytes], cuts: list[int], action: str | None, action_at: int
) -> None:
    driver = _CheckingDriver.start(session, _answer)  # type: ignore[arg-type]
    for i, chunk in enumerate(_cut(b"".join(pieces), cuts)):
        if action is not None and i == action_at:
            getattr(driver.conn, action)()
            driver.pump()
        driver.feed(chunk)
    driver.conn.timeout()
    driver.pump()
    # Every session ends exactly once (a close, or a drop of a client that
    # talks HTTP), and nothing comes after it.
    assert driver.closed
    endings = [r.text for r in driver.records if r.kind == "E" and r.text in _ENDINGS]
    assert len(endings) == 1
    assert driver.records[-1].text == endings[0]
    assert driver.conn.data_to_send() == b""


@FAST
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 1000), max_size=20))
def test_random_bytes_inside_data_and_bdat(data: bytes, cuts: list[int]) -> None:
    for opening in (b"DATA\r\n", b"BDAT 40\r\n"):
        driver = _CheckingDriver.start(make_settings(), _answer)
        driver.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n" + opening)
        driver.feed_chunks(_cut(data, cuts))
        driver.feed(b"\r\n.\r\nNOOP\r\n")


# --- (b) chunking invariance for valid sessions -----------------------------------------

_line_text = st.text(st.sampled_from(list("abc .:<>@=-\u00e9")), min_size=0, max_size=12).map(
    lambda s: s.encode()
)
_body_line = st.lists(
    st.sampled_from([b"x", b".", b"..", b" ", b"\n", b"\r", b"X-Blackhole-Mode: bounce", b"\xff"]),
    max_size=8,
).map(b"".join)


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    """Dot-stuffed DATA content plus its terminator; lines may hold bare CR/LF."""
    lines = draw(st.lists(_body_line.filter(lambda b: b"\r\n" not in b), max_size=8))
    wire = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    return wire + b".\r\n"


@st.composite
def _transaction(draw: st.DrawFn) -> bytes:
    out = [b"MAIL FROM:<" + draw(st.sampled_from([b"", b"a@example.com"])) + b">"]
    out[0] += draw(st.sampled_from([b"", b" SIZE=100", b" BODY=8BITMIME", b" RET=HDRS"])) + b"\r\n"
    for _ in range(draw(st.integers(0, 3))):
        out.append(b"RCPT TO:<r" + draw(_line_text).replace(b" ", b"") + b"@example.com>\r\n")
    if draw(st.booleans()):
        out.append(b"DATA\r\n" + draw(_body()))
    else:
        chunks = draw(st.lists(st.binary(max_size=20), max_size=3))
        for chunk in chunks:
            out.append(b"BDAT %d\r\n" % len(chunk) + chunk)
        last = draw(st.binary(max_size=20))
        out.append(b"BDAT %d LAST\r\n" % len(last) + last)
    return b"".join(out)


_misc = st.sampled_from(
    [
        b"NOOP\r\n",
        b"RSET\r\n",
        b"VRFY x\r\n",
        b"EXPN list2\r\n",
        b"HELP\r\n",
        b"FOO\r\n",
        b"AUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\n",
        b"AUTH LOGIN dXNlcg==\r\nZmFpbD14\r\n",
        b"EHLO again\r\n",
        b"\xff\r\n",
        # Over every line limit (RFC 4954: 12288 for AUTH): 500 however it arrives.
        b"NOOP " + b"\xff" * 13000 + b"\r\n",
        b"AUTH PLAIN " + b"QUFB" * 3500 + b"\r\n",
        b"AUTH PLAIN\r\n" + b"QUFB" * 3500 + b"\r\nNOOP\r\n",
    ]
)


@FAST
@given(
    parts=st.lists(st.one_of(_transaction(), _misc), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    step=st.integers(min_value=1, max_value=4096),
    quit_at_end=st.booleans(),
)
def test_chunking_invariance(
    parts: list[bytes], cuts: list[int], step: int, quit_at_end: bool
) -> None:
    data = b"EHLO c\r\n" + b"".join(parts) + (b"QUIT\r\n" if quit_at_end else b"")
    whole = Driver.start(make_settings(max_recipients=2), _answer)
    whole.feed(data)
    cut = Driver.start(make_settings(max_recipients=2), _answer)
    cut.feed_chunks(_cut(data, cuts))
    assert [str(r) for r in cut.records] == [str(r) for r in whole.records]
    assert cut.raw == whole.raw
    # Same-size reads, as a socket gives them: long lines then span many reads.
    steady = Driver.start(make_settings(max_recipients=2), _answer)
    steady.feed_chunks(data[i : i + step] for i in range(0, len(data), step))
    assert steady.raw == whole.raw
    if len(data) < 400:
        bytewise = Driver.start(make_settings(max_recipients=2), _answer)
        bytewise.feed_chunks(data[i : i + 1] for i in range(len(data)))
        assert bytewise.raw == whole.raw
        assert [str(r) for r in bytewise.records] == [str(r) for r in whole.records]


def test_an_empty_read_changes_nothing() -> None:
    # A read of no bytes is no command: nothing is answered or counted.
    driver = Driver.start(make_settings())
    greeted = bytes(driver.raw)
    driver.feed(b"")
    assert driver.raw == greeted
    driver.feed(b"NOOP\r\n")
    assert driver.raw == greeted + b"250 2.0.0 OK\r\n"


def test_pipelined_batch_is_answered_in_one_write() -> None:
    # RFC 2920 section 3.1: the replies to one batch go out together.
    driver = Driver.start(make_settings())
    driver.conn.receive_data(
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n"
    )
    first = driver.conn.data_to_send()
    assert first.count(b"\r\n") == 14 + 3  # EHLO lines, MAIL, RCPT, NOOP
    assert driver.conn.data_to_send() == b""


# --- (c) the DATA reader -----------------------------------------------------------------


@st.composite
def _content(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(unstuffed content, wire bytes with terminator)."""
    lines = draw(st.lists(_body_line.filter(lambda b: b"\r\n" not in b), max_size=12))
    body = b"".join(ln + b"\r\n" for ln in lines)
    # RFC 5321 4.5.2: a line that starts with "." gets one more.
    wire = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    return body, wire + b".\r\n"


def _send_message(wire: bytes, cuts: list[int], **overrides: object) -> Driver:
    driver = Driver.start(make_settings(**overrides))
    driver.feed(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    driver.feed_chunks(_cut(wire + b"NOOP\r\n", cuts))
    return driver


@FAST
@given(content=_content(), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_data_size_is_unstuffed_length(content: tuple[bytes, bytes], cuts: list[int]) -> None:
    body, wire = content
    driver = _send_message(wire, cuts)
    assert [m.size for m in driver.messages] == [len(body)]
    # Only the terminator ended the message: the NOOP after it is a command.
    assert driver.records[-1].text == "250 2.0.0 OK"
    assert driver.records[-2].text == "250 2.0.0 OK: queued as TESTID"


@FAST
@given(
    content=_content(),
    fake=st.sampled_from([b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\n..\n"]),
    cuts=st.lists(st.integers(0, 2000), max_size=20),
)
def test_only_crlf_dot_crlf_ends_data(
    content: tuple[bytes, bytes], fake: bytes, cuts: list[int]
) -> None:
    # SMTP smuggling: a near-terminator and a smuggled command inside a line.
    body, wire = content
    line = b"x" + fake + b"MAIL FROM:<evil@example.com>"
    driver = _send_message(line + b"\r\n" + wire, cuts)
    assert len(driver.messages) == 1
    unstuffed = (b"\r\n" + line + b"\r\n").replace(b"\r\n.", b"\r\n")[2:]
    assert driver.messages[0].size == len(unstuffed) + len(body)
    assert not any(r.text.startswith("503") for r in driver.records)


@FAST
@given(
    lengths=st.lists(st.integers(min_value=990, max_value=1003), min_size=1, max_size=4),
    dots=st.lists(st.booleans(), min_size=4, max_size=4),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
)
def test_text_line_limit_exact(lengths: list[int], dots: list[bool], cuts: list[int]) -> None:
    # RFC 5321 4.5.3.1.6: 1000 octets with CRLF, "not counting the leading
    # dot duplicated for transparency": the line before stuffing is measured.
    lines = [(b"." if dot else b"") + b"y" * n for n, dot in zip(lengths, dots, strict=False)]
    wire = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    too_long = any(len(ln) + 2 > MAX_TEXT_LINE for ln in lines)
    driver = _send_message(wire + b".\r\n", cuts)
    answers = [r.text for r in driver.records if r.kind == "S"][-2:]
    if too_long:
        assert answers == ["500 5.5.2 Line too long", "250 2.0.0 OK"]
        assert driver.messages == []
    else:
        assert answers == ["250 2.0.0 OK: queued as TESTID", "250 2.0.0 OK"]


@FAST
@given(size=st.integers(0, 300), limit=st.integers(0, 300), cuts=st.lists(st.integers(0, 400)))
def test_size_limit_exact(size: int, limit: int, cuts: list[int]) -> None:
    # Over the limit: read to the end, then 552 5.3.4; at or under: accepted.
    body = (b"z" * 50 + b"\r\n") * (size // 52) + b"z" * (size % 52)
    driver = _send_message(body + b"\r\n.\r\n", cuts, max_message_size=limit)
    reported = len(body) + 2
    if reported > limit:
        assert driver.messages == []
        assert driver.records[-2].text.startswith("552 5.3.4 ")
    else:
        assert [m.size for m in driver.messages] == [reported]
    assert driver.records[-1].text == "250 2.0.0 OK"


def _filler(n: int) -> bytes:
    """Header fields of exactly ``n`` octets, short lines (under the text-line limit)."""
    sizes = [80] * ((n - 88) // 80 + 1) if n > 88 else []
    rest = n - sum(sizes)
    sizes += [rest] if rest <= 80 else [rest // 2, rest - rest // 2]
    out = b"".join(b"X-F: " + b"f" * (size - 7) + b"\r\n" for size in sizes)
    assert len(out) == n and min(sizes) >= 8
    return out


def test_header_scan_cap_whole_lines_in_any_chunking() -> None:
    # MAX_HEADER_SCAN bounds the memory spent on switches. A field that the
    # cap cuts in two must not be read as a shorter valid value ("30" -> "3"),
    # and where the cap falls must not depend on how the reads were cut.
    from blackhole.protocol.limits import MAX_HEADER_SCAN

    field = b"X-Blackhole-Delay: 30\r\n"
    for overhang in range(-1, len(field) + 1):
        msg = _filler(MAX_HEADER_SCAN - len(field) + overhang) + field + b"\r\nbody\r\n.\r\n"
        expected = "30" if overhang <= 0 else None
        for chunks in (
            [msg],
            [msg[i : i + 7] for i in range(0, len(msg), 7)],
            [msg[:60000], msg[60000:65530], msg[65530:]],
        ):
            driver = Driver.start(make_settings())
            driver.feed(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
            driver.feed_chunks(chunks)
            assert [m.delay for m in driver.messages] == [expected], overhang


_arg_text = st.text(
    st.one_of(
        st.sampled_from(list('<>@:=,;+". \t\\[]*-0123456789abcXYZ')),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    ),
    max_size=60,
)


@FAST
@given(
    verb=st.sampled_from(["EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "AUTH", "VRFY", "EXPN"]),
    prefix=st.sampled_from(["MAIL FROM:", "RCPT TO:", "MAIL FROM:<", "RCPT TO:<", "", "FROM:"]),
    arg=_arg_text,
    state=st.sampled_from([b"", b"EHLO c\r\n", b"EHLO c\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\n"]),
)
def test_any_argument_to_any_verb(verb: str, prefix: str, arg: str, state: bytes) -> None:
    # Every handler and the path/parameter grammar see arbitrary text: a
    # well-formed reply each time, never an exception.
    driver = _CheckingDriver.start(make_settings(tls_available=True), _answer)
    driver.feed(state + b"RCPT TO:<r@example.com>\r\n")
    line = f"{verb} {prefix.removeprefix(verb + ' ')}{arg}".encode()
    before = len(driver.records)
    driver.feed(line + b"\r\n")
    # Every command line is answered, but for a BDAT whose chunk is still to come.
    assert len(driver.records) > before or driver.conn.reading_content


# --- (d) rules verdicts at any watched stage --------------------------------------------

_RULE_REPLIES = [
    Reply(220, None, "greeting by rule"),
    Reply(221, "2.0.0", "bye by rule"),
    Reply(235, "2.7.0", "in by rule"),
    Reply(250, "2.0.0", "ok by rule"),
    Reply(354, None, "go on by rule"),
    Reply(421, "4.3.2", "closing by rule"),
    Reply(451, "4.7.1", "later, says the rule"),
    Reply(550, "5.7.1", ["no", "says the rule"]),
]
_verdicts = st.one_of(
    st.none(),
    st.builds(Verdict, st.just("r"), reply=st.one_of(st.none(), st.sampled_from(_RULE_REPLIES))),
    st.builds(
        Verdict, st.just("r"), reply=st.sampled_from([None, *_RULE_REPLIES]), close=st.just(True)
    ),
    st.sampled_from(
        [
            Verdict("r", drop=True),
            Verdict("r", reset=True),
            Verdict("r", hang=True),
            Verdict("r", delay=2.5),
            Verdict("r", tarpit=10),
            Verdict("r", tls=TLSFault.FAIL),
        ]
    ),
)
_STAGE_SNIPPETS = [
    *_SNIPPETS,
    b"GET / HTTP/1.1\r\n",
    b"Subject: hi\r\n\r\nbody\r\n.\r\n",
    b"x" * 300 + b"\r\n",
]


def _decider(verdicts: list[Verdict | None]) -> Callable[[StageReached], Verdict | None]:
    queue = list(verdicts)
    return lambda event: queue.pop(0) if queue else None


@FAST
@given(
    session=_settings,
    watch=st.frozensets(st.sampled_from(list(Stage))),
    threshold=st.one_of(st.none(), st.integers(0, 400)),
    verdicts=st.lists(_verdicts, max_size=40),
    pieces=st.lists(st.sampled_from(_STAGE_SNIPPETS), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=30),
    action=st.sampled_from([None, "timeout", "shutdown"]),
    action_at=st.integers(min_value=0, max_value=30),
)
def test_any_verdicts_at_any_stages_well_formed(
    *,
    session: SessionSettings,
    watch: frozenset[Stage],
    threshold: int | None,
    verdicts: list[Verdict | None],
    pieces: list[bytes],
    cuts: list[int],
    action: str | None,
    action_at: int,
) -> None:
    driver = _CheckingDriver.start(
        session, _answer, watch=watch, decide=_decider(verdicts), content_threshold=threshold
    )
    for i, chunk in enumerate(_cut(b"".join(pieces), cuts)):
        if action is not None and i == action_at:
            getattr(driver.conn, action)()
            driver.pump()
        driver.feed(chunk)
    driver.conn.timeout()
    driver.pump()
    assert driver.closed
    endings = [r.text for r in driver.records if r.kind == "E" and r.text in _ENDINGS]
    assert len(endings) == 1
    assert driver.records[-1].text == endings[0]
    assert driver.conn.data_to_send() == b""
    # Only watched stages are reported, and never a password.
    assert {event.stage for event in driver.stages} <= watch
    assert not any("secret" in (event.value or "") for event in driver.stages)


@FAST
@given(
    watch=st.frozensets(st.sampled_from(list(Stage))),
    threshold=st.one_of(st.none(), st.integers(0, 400)),
    verdicts=st.lists(_verdicts, max_size=40),
    parts=st.lists(st.one_of(_transaction(), _misc), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
)
def test_verdicts_chunking_invariance(
    watch: frozenset[Stage],
    threshold: int | None,
    verdicts: list[Verdict | None],
    parts: list[bytes],
    cuts: list[int],
) -> None:
    # The same verdicts give the same replies however the input is cut: a
    # paused session holds its input, whatever was read with it.
    data = b"EHLO c\r\n" + b"".join(parts) + b"QUIT\r\n"
    runs = []
    for chunks in ([data], list(_cut(data, cuts))):
        driver = Driver.start(
            make_settings(max_recipients=2),
            _answer,
            watch=watch,
            decide=_decider(verdicts),
            content_threshold=threshold,
        )
        driver.feed_chunks(chunks)
        runs.append(driver)
    whole, cut = runs
    assert cut.raw == whole.raw
    assert [e.stage for e in cut.stages] == [e.stage for e in whole.stages]
