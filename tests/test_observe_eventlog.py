"""The event log and the record ring: exact fields, whole lines, reopen, bounds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blackhole.observe.eventlog import (
    EventLog,
    encode,
    message_record,
    parse_reply,
    queue_id,
    rfc3339,
    session_record,
    tls_field,
)
from blackhole.observe.layout import SESSION_ENDS
from blackhole.observe.messageline import MessageLines, seconds_text, session_line
from blackhole.observe.record import (
    FIELD_COST,
    MAX_HEADER_TEXT,
    MAX_HEADER_VALUE,
    Recorder,
    with_headers,
)

MESSAGE_FIELDS = {
    "type", "time", "queue_id", "session", "worker", "listener", "client", "helo", "tls",
    "auth_user", "sender", "recipients", "size", "reply", "rule", "seconds",
}  # fmt: skip
SESSION_FIELDS = {
    "type", "time", "session", "listener", "client", "duration", "commands", "messages",
    "tls", "end",
}  # fmt: skip


def a_message(n: int = 0, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time": 1_767_225_600.25,
        "queue_id": f"Q{n}",
        "session": "s1",
        "worker": 1,
        "listener": "127.0.0.1:2525",
        "client": "127.0.0.1:40000",
        "helo": "client.example",
        "tls": tls_field("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        "auth_user": "alice",
        "sender": "a@example.com",
        "recipients": ["b@example.com"],
        "size": 1234,
        "reply": (250, "2.0.0", f"OK: queued as Q{n}"),
        "rule": None,
        "seconds": 0.0001234567,
    }
    fields.update(changes)
    return message_record(**fields)


def test_message_record_has_exactly_the_fields_of_observe_md() -> None:
    record = a_message()
    assert set(record) == MESSAGE_FIELDS
    assert record["type"] == "message"
    assert record["time"] == "2026-01-01T00:00:00.250Z"
    assert record["reply"] == {"code": 250, "enhanced": "2.0.0", "text": "OK: queued as Q0"}
    assert record["tls"] == {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}
    assert record["seconds"] == 0.000123
    assert json.loads(json.dumps(record)) == record


def test_session_record_fields_and_bad_end() -> None:
    fields: dict[str, Any] = {
        "time": 0.0, "session": "s1", "listener": "smtps", "client": "[::1]:5",
        "duration": 1.5, "commands": 7, "messages": 2, "tls": None, "end": "quit",
    }  # fmt: skip
    assert set(session_record(**fields)) == SESSION_FIELDS
    with pytest.raises(ValueError, match="unknown session end"):
        session_record(**{**fields, "end": "exploded"})


def test_lines_are_json_and_reopen_follows_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path))
    log.write(a_message(1, helo="h\u00e9llo\nnext"))
    path.rename(tmp_path / "events.jsonl.1")
    log.write(a_message(2))  # still the old file until reopened
    log.reopen()
    log.write(a_message(3))
    log.close()
    old = (tmp_path / "events.jsonl.1").read_text().splitlines()
    assert [json.loads(line)["queue_id"] for line in old] == ["Q1", "Q2"]
    assert json.loads(old[0])["helo"] == "h\u00e9llo\nnext"
    assert [json.loads(line)["queue_id"] for line in path.read_text().splitlines()] == ["Q3"]


def test_reopen_failure_keeps_the_old_file(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    log = EventLog(str(directory / "events.jsonl"))
    (directory / "events.jsonl").rename(tmp_path / "moved.jsonl")
    directory.rmdir()
    with pytest.raises(OSError):
        log.reopen()
    log.write(a_message(9))
    log.close()
    assert json.loads((tmp_path / "moved.jsonl").read_text())["queue_id"] == "Q9"


def test_standard_output(tmp_path: Path) -> None:
    code = "from blackhole.observe.eventlog import EventLog; EventLog('-').write({'type': 'x'})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert out == b'{"type":"x"}\n'


WRITER = textwrap.dedent(
    """
    import sys
    from blackhole.observe.eventlog import EventLog
    log = EventLog(sys.argv[1])
    me = sys.argv[2]
    for n in range(int(sys.argv[3])):
        log.write({"writer": me, "n": n, "pad": me * 5000})
    """
)


def test_concurrent_writers_never_interleave_within_a_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "300"]) for name in "abcd"
    ]
    assert [w.wait() for w in writers] == [0, 0, 0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines.pop() == b""
    records = [json.loads(line) for line in lines]
    for name in "abcd":
        assert [r["n"] for r in records if r["writer"] == name] == list(range(300))


def test_ring_is_bounded_newest_first() -> None:
    ring = Recorder(3)
    for n in range(10):
        ring.add(with_headers(a_message(n), [("Subject", f"m{n}")]))
    assert len(ring) == 3
    assert [r["queue_id"] for r in ring.messages()] == ["Q9", "Q8", "Q7"]
    assert [r["queue_id"] for r in ring.messages(2)] == ["Q9", "Q8"]
    assert ring.messages(0) == []
    assert ring.messages()[0]["headers"] == [["Subject", "m9"]]
    ring.clear()
    assert ring.messages() == []


def test_record_zero_keeps_nothing_and_negative_is_refused() -> None:
    ring = Recorder(0)
    ring.add(a_message())
    assert ring.messages() == []
    with pytest.raises(ValueError, match="0 or more"):
        Recorder(-1)


def test_headers_are_bounded() -> None:
    many = [(f"X-{n}", "v" * 5000) for n in range(200)]
    record = with_headers(a_message(), many)
    kept = record["headers"]
    assert [name for name, _value in kept] == [f"X-{n}" for n in range(len(kept))]  # in order
    assert all(len(value) == MAX_HEADER_VALUE for _name, value in kept)
    cost = sum(len(name) + len(value) + FIELD_COST for name, value in kept)
    assert cost <= MAX_HEADER_TEXT
    assert len(kept) == MAX_HEADER_TEXT // (3 + MAX_HEADER_VALUE + FIELD_COST)  # as many as fit
    assert record["headers_truncated"] is True
    assert with_headers(a_message(), [("A", "b")])["headers_truncated"] is False
    one_long = with_headers(a_message(), [("A", "b" * 1000)])
    assert one_long["headers"] == [["A", "b" * MAX_HEADER_VALUE]]
    assert one_long["headers_truncated"] is True
    empty = with_headers(a_message(), [("a", "")] * 8000)  # 8,000 "a:" lines
    assert len(empty["headers"]) == MAX_HEADER_TEXT // (1 + FIELD_COST)


# --- the fast paths give exactly what the standard library gives -------------

_TEXT = st.text(max_size=40)  # any code point, controls and surrogates included
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(_TEXT, _VALUES, max_size=8))
def test_encode_is_json_dumps_compact(record: dict[str, Any]) -> None:
    expected = json.dumps(record, separators=(",", ":")).encode("ascii") + b"\n"
    assert encode(record) == expected


def test_encode_a_real_record() -> None:
    record = a_message(7, helo="h\u00e9llo\n\u2028", sender=None, seconds=1e-7)
    assert encode(record) == json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _isoformat(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_rfc3339_is_isoformat_in_milliseconds(epoch: float) -> None:
    assert rfc3339(epoch) == _isoformat(epoch)


@pytest.mark.parametrize(
    "epoch",
    [0.0, 0.9995, 0.9999995, 1_767_225_599.9999996, 1_767_225_600.0005, 1_767_225_600.25],
)
def test_rfc3339_at_the_edges_of_a_second(epoch: float) -> None:
    # Twice each: once formatting the second, once from the cached second.
    assert rfc3339(epoch) == _isoformat(epoch)
    assert rfc3339(epoch) == _isoformat(epoch)


_MAYBE = st.none() | _TEXT
_TLS = st.none() | st.builds(tls_field, _TEXT, _MAYBE)
_QUEUE = st.text("0123456789ABCDEFabcdefXYZ", min_size=1, max_size=12) | _TEXT


@st.composite
def _wires(draw: st.DrawFn) -> bytes | None:
    """A final reply's wire text: one line or several, with or without an
    enhanced code, a queue id (often a letter-and-digit one) and non-ASCII."""
    if draw(st.integers(0, 20)) == 0:
        return None
    code = str(draw(st.integers(200, 599)))
    enhanced = draw(st.sampled_from(["", "2.0.0 ", "4.7.1 ", "5.1.1 ", "1.2.3 ", "2.0 "]))
    before, after = draw(_TEXT), draw(_TEXT | st.just(""))
    if draw(st.booleans()):
        text = f"{enhanced}{before}queued as {draw(_QUEUE)}{after}"
    else:
        text = f"{enhanced}{before}{after}"
    # A reply line holds no line break (RFC 5321 4.2: a reply line ends at CRLF).
    text = text.replace("\r", " ").replace("\n", " ")
    earlier = draw(st.lists(st.sampled_from(["hi", "queued as EARLY", "\u00e9"]), max_size=2))
    lines = [f"{code}-{line}" for line in earlier] + [f"{code} {text}"]
    end = draw(st.sampled_from(["\r\n", "", "\r\n\r\n"]))
    return ("\r\n".join(lines) + end).encode("utf-8", "surrogatepass")


_MESSAGE = st.fixed_dictionaries(
    {
        "time": st.floats(min_value=0, max_value=4_102_444_800),
        "wire": _wires(),
        "client": _TEXT,
        "helo": _MAYBE,
        "tls": _TLS,
        "auth_user": _MAYBE,
        "sender": _MAYBE,
        "recipients": st.lists(_TEXT, max_size=3),
        "size": st.none() | st.integers(min_value=0),
        "rule": _MAYBE,
        "seconds": st.floats(min_value=0, max_value=1e6),
    }
)


def _record(session: str, worker: int, listener: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The slow way: the record of ``MessageLines.line``'s arguments."""
    values = {name: value for name, value in fields.items() if name != "wire"}
    wire = fields["wire"]
    record = message_record(
        session=session, worker=worker, listener=listener, queue_id=queue_id(wire),
        reply=parse_reply(wire), **values,
    )  # fmt: skip
    record["outcome"] = "accepted"
    return record


@given(_TEXT, st.integers(0, 64), _TEXT, st.lists(_MESSAGE, min_size=1, max_size=3))
def test_a_sessions_message_lines_are_its_records_encoded(
    session: str, worker: int, listener: str, messages: list[dict[str, Any]]
) -> None:
    lines = MessageLines(session, worker, listener)
    for fields in messages:  # one session: the fixed part is reused or made again
        record = _record(session, worker, listener, fields)
        assert lines.line(**fields, outcome="accepted") == encode(record)


@pytest.mark.parametrize(
    "template",
    [
        b"250 2.0.0 OK: queued as %s\r\n",
        b"250 queued as %s thank you\r\n",
        b'250-first\r\n250 2.0.0 queued as %s "quoted"\r\n',
        b"250-queued as\r\n250 2.6.0 queued as %s\r\n",
        b"250 queued as %s",
        b"250 2.0.0 queued as %s\n\r\r\n",
    ],
)
def test_replies_that_differ_by_their_queue_id_only(template: bytes) -> None:
    # The second and later lines reuse what the first encoded (the reply's
    # JSON around its queue id): each is still its own record encoded.
    lines = MessageLines("s", 1, "l")
    for queue in (b"Q1", b"4F2A91BC", b"Q1", b"z", b"0123456789ABCDEFGHIJ"):
        fields = a_line(wire=template % queue)
        line = lines.line(**fields, outcome="accepted")
        assert line == encode(_record("s", 1, "l", fields))
        assert json.loads(line)["queue_id"] == queue.decode()


@pytest.mark.parametrize(
    "wire",
    [
        None,
        b"",
        b"550 5.7.1 Refused\r\n",
        b"250 2.0.0 OK: queued as Q-1\r\n",  # not letters and digits: no template
        b"250 2.0.0 OK: queued as \xc3\xa9t\xc3\xa9\r\n",
        b"250 2.0.0 \xc3\xa9 queued as Q1\r\n",  # not ASCII: no template
        b"250 queued as  Q1 queued as Q2\r\n",
        b"250-queued as Q1\r\n250 2.0.0 OK\r\n",  # the id is not in the last line
        b"250 2.queued as Q1\r\n",  # the id's words in the enhanced code's place
        b"queued as Q1\r\n",
    ],
)
def test_odd_replies_twice(wire: bytes | None) -> None:
    lines = MessageLines("s", 1, "l")
    for _ in range(2):  # made, then from what the first made
        fields = a_line(wire=wire)
        try:
            expected = encode(_record("s", 1, "l", fields))
        except ValueError:  # not a reply: neither way parses it
            with pytest.raises(ValueError, match="invalid literal"):
                lines.line(**fields, outcome="accepted")
        else:
            assert lines.line(**fields, outcome="accepted") == expected


def a_line(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time": 1_767_225_600.25,
        "wire": b"250 2.0.0 OK: queued as Q1\r\n",
        "client": "127.0.0.1:40000",
        "helo": "client.example",
        "tls": None,
        "auth_user": None,
        "sender": "a@example.com",
        "recipients": ["b@example.com"],
        "size": 1234,
        "rule": None,
        "seconds": 0.0001234567,
    }
    fields.update(changes)
    return fields


def test_parse_reply_reads_the_last_line() -> None:
    assert parse_reply(None) == parse_reply(b"") == (0, None, "")
    assert parse_reply(b"250 2.0.0 OK: queued as Q1\r\n") == (250, "2.0.0", "OK: queued as Q1")
    assert parse_reply(b"250-one\r\n250 two words\r\n") == (250, None, "two words")
    assert parse_reply(b"550 5.7.1\r\n") == (550, "5.7.1", "")
    assert parse_reply(b"250 1.2.3 class 1 is no class\r\n") == (
        250,
        None,
        "1.2.3 class 1 is no class",
    )
    assert parse_reply(b"451 4.3.0 \xff\r\n") == (451, "4.3.0", "\ufffd")
    assert queue_id(b"250 2.0.0 OK: queued as 4F2A\r\n") == "4F2A"
    assert queue_id(b"250 OK\r\n") is queue_id(None) is None


@given(st.floats(min_value=0, max_value=2e9) | st.floats(min_value=0, max_value=2e-3))
def test_seconds_text_is_the_repr_of_the_rounded_float(seconds: float) -> None:
    assert seconds_text(seconds) == float.__repr__(round(seconds, 6))


@pytest.mark.parametrize(
    "seconds",
    [0.0, 1e-7, 5e-05, 0.0001, 0.00009999995, 0.0000999995, 0.1 + 0.2, 1.0, 2.5e-06,
     0.0000005, 0.0000015, 999_999_999.9999996, 1e9, 1e16, 123.4565, float("inf")],
)  # fmt: skip
def test_seconds_text_at_the_edges(seconds: float) -> None:
    assert seconds_text(seconds) == float.__repr__(round(seconds, 6))


@given(
    st.floats(min_value=0, max_value=4_102_444_800),
    _TEXT,
    _TEXT,
    _TEXT,
    st.floats(min_value=0, max_value=1e7),
    st.integers(min_value=0),
    st.integers(min_value=0),
    _TLS,
    st.sampled_from(SESSION_ENDS),
)
def test_session_line_is_the_session_record_encoded(  # noqa: PLR0917 - hypothesis
    time: float,
    session: str,
    listener: str,
    client: str,
    duration: float,
    commands: int,
    messages: int,
    tls: dict[str, Any] | None,
    end: str,
) -> None:
    fields = {
        "time": time, "session": session, "listener": listener, "client": client,
        "duration": duration, "commands": commands, "messages": messages, "tls": tls, "end": end,
    }  # fmt: skip
    assert session_line(**fields) == encode(session_record(**fields))


def test_session_line_refuses_an_unknown_end() -> None:
    with pytest.raises(ValueError, match="unknown session end"):
        session_line(
            time=0.0, session="s", listener="l", client="c", duration=1.0, commands=1,
            messages=0, tls=None, end="exploded",
        )  # fmt: skip
