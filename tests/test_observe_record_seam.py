"""``record = N``: every message record, with its headers, goes to the record sink."""

from __future__ import annotations

from blackhole.config.model import Config
from blackhole.server.observing import JSON, Observation
from tests.adapter_fakes import Harness


def test_records_with_headers_reach_the_sink() -> None:
    harness = Harness(Config(timeout=30, record=5))
    observation = Observation.private(["-"])
    observation.record = 5
    records: list[JSON] = []
    observation.record_sink = records.append
    harness.state.observation = observation
    session, _transport = harness.connect()
    session.data_received(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    session.data_received(b"Subject: hello\r\nX-Password: no\r\n\r\nsecret body\r\n.\r\n")
    assert len(records) == 1
    record = records[0]
    assert record["headers"] == [["Subject", "hello"], ["X-Password", "no"]]
    assert record["sender"] == "a@x" and record["recipients"] == ["b@x"]
    assert record["reply"]["code"] == 250
    assert "secret body" not in repr(record)


def test_no_record_no_sink_call() -> None:
    harness = Harness()
    calls: list[JSON] = []
    harness.state.observation.record_sink = calls.append
    session, _transport = harness.connect()
    session.data_received(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    session.data_received(b"Subject: hello\r\n\r\nbody\r\n.\r\n")
    assert calls == []
