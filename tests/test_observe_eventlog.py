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
    rfc3339,
    session_record,
    tls_field,
)
from blackhole.observe.messageline import MessageLines
from blackhole.observe.record import MAX_HEADER_VALUE, MAX_HEADERS, Recorder, with_headers

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
    many = [(f"X-{n}", "v" * 5000) for n in range(MAX_HEADERS + 5)]
    record = with_headers(a_message(), many)
    assert len(record["headers"]) == MAX_HEADERS
    assert all(len(value) == MAX_HEADER_VALUE for _name, value in record["headers"])
    assert record["headers_truncated"] is True
    assert with_headers(a_message(), [("A", "b")])["headers_truncated"] is False


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
_MESSAGE = st.fixed_dictionaries(
    {
        "time": st.floats(min_value=0, max_value=4_102_444_800),
        "queue_id": _MAYBE,
        "client": _TEXT,
        "helo": _MAYBE,
        "tls": _TLS,
        "auth_user": _MAYBE,
        "sender": _MAYBE,
        "recipients": st.lists(_TEXT, max_size=3),
        "size": st.none() | st.integers(min_value=0),
        "reply": st.tuples(st.integers(200, 599), _MAYBE, _TEXT),
        "rule": _MAYBE,
        "seconds": st.floats(min_value=0, max_value=1e6),
    }
)


@given(_TEXT, st.integers(0, 64), _TEXT, st.lists(_MESSAGE, min_size=1, max_size=3))
def test_a_sessions_message_lines_are_its_records_encoded(
    session: str, worker: int, listener: str, messages: list[dict[str, Any]]
) -> None:
    lines = MessageLines(session, worker, listener)
    for fields in messages:  # one session: the fixed part is reused or made again
        record = message_record(session=session, worker=worker, listener=listener, **fields)
        record["outcome"] = "accepted"
        assert lines.line(**fields, outcome="accepted") == encode(record)
