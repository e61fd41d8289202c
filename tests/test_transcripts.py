"""Protocol transcripts as data, run against the sans-IO core (no sockets).

Each ``tests/transcripts/*.txt`` file is a conversation, one step a line::

    # comment                       ignored, as are blank lines
    @ key=value ...                 SessionSettings for this transcript (first lines)
    C: EHLO client                  the client sends the text plus CRLF
    C: <raw> b"DATA\\n" + b"x" * 3  the client sends these bytes, nothing added
                                    (bytes literals joined by + and * only)
    S: 250 2.0.0 OK                 the next reply line, exactly (without CRLF)
    A: accept [k=v ...]             a MessageReceived is expected here; the adapter
    A: bounce 550 [k=v ...]         answers it with queued("TESTID") or that bounce;
    A: lmtp accept 550 accept ...   (LMTP) one answer per recipient, in order.
                                    k=v checks event fields: size, recipients (a
                                    count), sender ("<>" for the null sender), to
                                    (recipients, comma-separated), mode, delay
                                    ("-" for None; shell quoting for spaces)
    E: close | starttls             the core reports this event here; also
    E: drop | reset | hang          (a Cut), and
    E: stage rcpt RCPT value=a@b    a StageReached (see smtpdrive.describe_stage)
    V: <verdict>                    the adapter resolves the next StageReached with
                                    it: "none", "drop", "reset", "hang", "close
                                    [reply]", a reply "550 5.7.1 text", or k=v
                                    words for the adapter (delay=, tarpit=, tls=)
    @ watch=helo,mail               stages to watch (content_threshold=N too)
    X: tls_started | timeout | shutdown   the adapter calls this (a barrier)
    ?: attribute=value              str(getattr(conn, attribute)) == value (a barrier)
    --                              a barrier: the client waits for the replies

Every transcript runs twice: with the client's bytes between two barriers fed
in one chunk (pipelined, RFC 2920) and fed one byte at a time. Both runs must
give exactly the transcript's replies and events, in order.
"""

from __future__ import annotations

import ast
import base64
import difflib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from blackhole.protocol import MessageReceived, StageReached
from blackhole.protocol.hooks import Stage, TLSFault, Verdict
from blackhole.protocol.replies import BOUNCES, Reply, queued
from tests.smtpdrive import TEST_CHALLENGE, Driver, describe, make_settings

TRANSCRIPTS = Path(__file__).parent / "transcripts"
_BARRIERS = ("X", "?", "--")


# --- parsing ---------------------------------------------------------------------


def _bytes_expr(text: str) -> bytes:
    """Evaluate ``b"..." + b"x" * 3``: bytes literals, + and * with int literals."""

    def ev(node: ast.expr) -> bytes | int:
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes | int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = ev(node.left), ev(node.right)
            assert isinstance(left, bytes) and isinstance(right, bytes)
            return left + right
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            left, right = ev(node.left), ev(node.right)
            assert isinstance(left, bytes) and isinstance(right, int)
            return left * right
        raise ValueError(f"not allowed in a <raw> line: {ast.dump(node)}")

    value = ev(ast.parse(text.strip(), mode="eval").body)
    assert isinstance(value, bytes)
    return value


def _setting(key: str, value: str) -> object:
    if key in ("watch", "forbidden_commands"):
        words = frozenset(w for w in value.split(",") if w)
        return frozenset(Stage(w) for w in words) if key == "watch" else words
    if value in ("true", "false"):
        return value == "true"
    if value.isdigit():
        return int(value)
    return value


@dataclass
class Step:
    kind: str  # C S A E X ? --
    text: str
    data: bytes = b""
    lineno: int = 0


@dataclass
class Transcript:
    name: str
    settings: dict[str, object] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)


def load(path: Path) -> Transcript:
    transcript = Transcript(path.stem)
    for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("@ "):
            assert not transcript.steps, f"{path.name}:{lineno}: settings come first"
            for item in line[2:].split():
                key, _, value = item.partition("=")
                transcript.settings[key] = _setting(key, value)
            continue
        if line.strip() == "--":
            transcript.steps.append(Step("--", "", lineno=lineno))
            continue
        kind, sep, text = line.partition(": ")
        if not sep and line.endswith(":"):
            kind, text = line[:-1], ""
        assert kind in ("C", "S", "A", "E", "V", "X", "?"), f"{path.name}:{lineno}: {line!r}"
        step = Step(kind, text, lineno=lineno)
        if kind == "C":
            step.data = (
                _bytes_expr(text[5:]) if text.startswith("<raw>") else text.encode() + b"\r\n"
            )
        transcript.steps.append(step)
    return transcript


# --- running -------------------------------------------------------------------------


def _answer_for(step: Step) -> tuple[Reply | list[Reply], dict[str, str]]:
    words = shlex.split(step.text)
    checks = dict(w.split("=", 1) for w in words if "=" in w)
    plain = [w for w in words if "=" not in w]
    assert set(checks) <= {"size", "recipients", "sender", "to", "mode", "delay"}, step.lineno
    if plain == ["accept"]:
        return queued("TESTID"), checks
    if len(plain) == 2 and plain[0] == "bounce":
        return _bounce(step, plain[1]), checks
    if len(plain) > 1 and plain[0] == "lmtp":
        answers = [queued("TESTID") if w == "accept" else _bounce(step, w) for w in plain[1:]]
        return answers, checks
    raise AssertionError(f"line {step.lineno}: bad A: line {step.text!r}")


def _bounce(step: Step, code: str) -> Reply:
    matching = [b for b in BOUNCES if b.code == int(code)]
    assert len(matching) == 1, f"line {step.lineno}: no bounce {code}"
    return matching[0]


def _reply(text: str) -> Reply:
    code, _, rest = text.partition(" ")
    enhanced, _, words = rest.partition(" ")
    if not (enhanced.count(".") == 2 and enhanced[:1].isdigit()):
        enhanced, words = "", rest
    return Reply(int(code), enhanced or None, words)


def parse_verdict(text: str) -> Verdict | None:
    """A ``V:`` line: see the module docstring."""
    if text == "none":
        return None
    if text in ("drop", "reset", "hang"):
        return Verdict("t", **{text: True})  # type: ignore[arg-type]
    if text.startswith("close"):
        rest = text[5:].strip()
        return Verdict("t", reply=_reply(rest) if rest else None, close=True)
    if "=" in text.split(maxsplit=1)[0]:
        words = dict(w.split("=", 1) for w in text.split())
        tls = TLSFault(words["tls"]) if "tls" in words else None
        tarpit = int(words["tarpit"]) if "tarpit" in words else None
        return Verdict("t", delay=float(words.get("delay", 0)), tarpit=tarpit, tls=tls)
    return Verdict("t", reply=_reply(text))


def _fields(event: MessageReceived) -> dict[str, str]:
    return {
        "size": str(event.size),
        "recipients": str(len(event.recipients)),
        "sender": event.sender or "<>",
        "to": ",".join(event.recipients),
        "mode": "-" if event.mode is None else event.mode,
        "delay": "-" if event.delay is None else event.delay,
    }


def run(transcript: Transcript, bytewise: bool) -> tuple[list[str], list[str]]:
    """(expected lines, observed lines) for one run of ``transcript``."""
    a_steps = [s for s in transcript.steps if s.kind == "A"]
    answers = [_answer_for(s) for s in a_steps]
    pending = list(answers)

    def answer(event: MessageReceived) -> Reply | list[Reply]:
        assert pending, f"unexpected message: {describe(event)}"
        return pending.pop(0)[0]

    verdicts = [parse_verdict(s.text) for s in transcript.steps if s.kind == "V"]

    def decide(event: StageReached) -> Verdict | None:
        assert verdicts, f"unexpected stage: {event}"
        return verdicts.pop(0)

    settings = dict(transcript.settings)
    watch = settings.pop("watch", frozenset())
    threshold = settings.pop("content_threshold", None)
    driver = Driver.start(
        make_settings(**settings),
        answer,
        watch=watch,  # type: ignore[arg-type]
        decide=decide,
        content_threshold=threshold,  # type: ignore[arg-type]
    )
    chunk = bytearray()

    def flush() -> None:
        if bytewise:
            driver.feed_chunks(bytes([b]) for b in chunk)
        elif chunk:
            driver.feed(bytes(chunk))
        chunk.clear()

    for step in transcript.steps:
        if step.kind == "C":
            chunk += step.data
        elif step.kind in _BARRIERS:
            flush()
            if step.kind == "X":
                assert step.text in ("tls_started", "timeout", "shutdown"), step.text
                getattr(driver.conn, step.text)()
                driver.pump()
            elif step.kind == "?":
                attribute, _, value = step.text.partition("=")
                actual = str(getattr(driver.conn, attribute.strip()))
                assert actual == value.strip(), f"line {step.lineno}: {attribute}={actual}"
    flush()
    assert not verdicts, f"verdicts never asked for: {verdicts}"

    expected = [f"{s.kind}: {s.text}" for s in transcript.steps if s.kind in ("S", "E", "A")]
    observed = []
    received = 0
    for record in driver.records:
        if record.kind != "A":
            observed.append(str(record))
            continue
        assert record.event is not None
        fields = _fields(record.event)
        step, checks = a_steps[received], answers[received][1]
        received += 1
        if all(fields[k] == v for k, v in checks.items()):
            observed.append(f"A: {step.text}")  # as written, when every check holds
        else:
            observed.append(f"A: (message) {describe(record.event)}")
    return expected, observed


def _paths() -> list[Path]:
    return sorted(TRANSCRIPTS.glob("*.txt"))


@pytest.mark.parametrize("bytewise", [False, True], ids=["pipelined", "bytewise"])
@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.stem)
def test_transcript(path: Path, bytewise: bool) -> None:
    expected, observed = run(load(path), bytewise)
    diff = "\n".join(difflib.unified_diff(expected, observed, "transcript", "core", lineterm=""))
    assert observed == expected, diff


def test_there_are_transcripts() -> None:
    assert len(_paths()) >= 10


def test_cram_md5_challenge_is_base64_of_a_msg_id() -> None:
    # RFC 2195 section 2: the challenge is a msg-id, "<" ... "@" ... ">".
    driver = Driver.start(make_settings())
    driver.feed(b"EHLO c\r\nAUTH CRAM-MD5\r\n")
    line = driver.records[-1].text
    assert line.startswith("334 ")
    decoded = base64.b64decode(line[4:], validate=True).decode("ascii")
    assert decoded == TEST_CHALLENGE
    assert decoded.startswith("<") and decoded.endswith(">") and "@" in decoded


def test_server_challenge_maker_makes_msg_ids() -> None:
    # The challenge the real server injects, not just the test's fixed one.
    import random

    from blackhole.server.app import _challenge_maker

    make = _challenge_maker(random.Random(1), "mx.test")
    first, second = make(), make()
    assert first != second  # RFC 2195: unique per use
    for challenge in (first, second):
        local, at, host = challenge[1:-1].partition("@")
        assert challenge[0] == "<" and challenge[-1] == ">" and at and local and host
        driver = Driver.start(make_settings(challenge=lambda c=challenge: c))
        driver.feed(b"EHLO c\r\nAUTH CRAM-MD5\r\n")
        b64 = driver.records[-1].text[4:]
        assert base64.b64decode(b64, validate=True).decode() == challenge
