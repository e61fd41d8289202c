"""``Message``, ``Reply`` and ``Headers`` from the JSON that ``GET /messages`` answers."""

from __future__ import annotations

import pytest

from blackhole.testing import Headers, Message, Reply

RECORD = {
    "type": "message",
    "time": "2026-11-30T06:00:00.000+00:00",
    "queue_id": "Q1",
    "session": "S1",
    "worker": 1,
    "listener": "smtp://127.0.0.1:2525",
    "client": "127.0.0.1",
    "helo": "client.example",
    "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"},
    "auth_user": None,
    "sender": "a@example.com",
    "recipients": ["b@example.com", "c@example.com"],
    "size": 42,
    "reply": {"code": 250, "enhanced": "2.0.0", "text": "OK: queued as Q1"},
    "rule": None,
    "seconds": 0.001,
    "headers": [["Subject", "hi"], ["Received", "one"], ["received", "two"]],
    "headers_truncated": False,
}


def test_a_record_becomes_a_message() -> None:
    message = Message.from_json(RECORD)
    assert message.reply == Reply(250, "2.0.0", "OK: queued as Q1")
    assert message.recipients == ["b@example.com", "c@example.com"]
    assert message.tls is not None and message.tls["version"] == "TLSv1.3"
    assert message.summary() == (
        "<a@example.com> -> b@example.com, c@example.com: 250 2.0.0 OK: queued as Q1"
    )


def test_headers_are_case_insensitive_and_keep_every_value() -> None:
    headers = Message.from_json(RECORD).headers
    assert headers["subject"] == headers["SUBJECT"] == "hi"
    assert headers["RECEIVED"] == "one" and headers.get_all("Received") == ["one", "two"]
    assert "x-missing" not in headers and headers.get("x-missing") is None
    assert list(headers) == ["Subject", "Received"] and len(headers) == 2
    with pytest.raises(KeyError):
        headers["x-missing"]
    assert headers.fields()[2] == ("received", "two")


def test_a_reply_without_enhanced_code_reads_plainly() -> None:
    assert str(Reply(250, None, "OK")) == "250 OK"
    assert str(Message.from_json({**RECORD, "sender": "", "recipients": []}).reply).startswith(
        "250 2.0.0"
    )
    assert (
        Message.from_json({**RECORD, "recipients": []})
        .summary()
        .startswith("<a@example.com> -> (no recipients)")
    )
    # No address read is not the null reverse-path.
    assert Message.from_json({**RECORD, "sender": None}).summary().startswith("(no sender) -> ")
    assert Message.from_json({**RECORD, "sender": ""}).summary().startswith("<> -> ")


def test_headers_compare_as_mappings() -> None:
    assert Headers([("A", "1")]) == {"A": "1"}
