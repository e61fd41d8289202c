"""The figures agree with each other and with the clients, message for message.

A real server (workers = 2, control_listen, an event log, record = N, a rules
file) takes a known mix under load from threaded smtplib clients: accepted
(listener ``inbound``), bounced (listener ``bounces``, mode=bounce) and
deferred by a rule at RCPT. One worker is SIGKILLed in the middle. Then
GET /stats, GET /metrics, the event log and GET /messages are read from the
live server and compared with what the clients saw. The one window the
documentation allows: a count is taken just before its reply is written, so
a reply the kill kept from its client may be counted; a reply a client saw is
never missing. ``promtool check metrics`` checks the live exposition.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import start
from tests.proctools import wait_until, workers
from tests.serverproc import ServerProcess
from tests.test_e2e_counting import event_lines
from tests.test_e2e_hub import TOKEN, call

MESSAGE = b"Subject: proof\r\n\r\nbody\r\n"
RULES = """
[[rule]]
name = "defer-some"
at = "rcpt"
recipient = "defer@example.com"
reply = "451 4.3.0 Try again later"
"""
OUTCOMES = ("accepted", "rejected", "deferred", "dropped")
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def _outcome(code: int) -> str:
    return "accepted" if code < 400 else "deferred" if code < 500 else "rejected"


def one_message(port: int, recipient: str, seen: Counter[str], queue_ids: list[str]) -> None:
    """One session, one transaction; ``seen`` gets the outcome the client saw."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("proof.test")
        client.mail("a@example.com")
        code, _text = client.rcpt(recipient)
        if code >= 400:
            seen[_outcome(code)] += 1  # the transaction ends at QUIT, refused
            return
        code, text = client.data(MESSAGE)
        seen[_outcome(code)] += 1
        found = re.search(rb"queued as (\S+)", text)
        if code == 250 and found is not None:
            queue_ids.append(found.group(1).decode())


def metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is not None:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', found.group(2)))
            samples[found.group(1), labels] = float(found.group(3))
    return samples


def test_stats_metrics_event_log_and_records_agree_through_a_kill(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    server = start(
        server_factory,
        tmp_path,
        "listen = 127.0.0.1:0 name=inbound, 127.0.0.1:0 mode=bounce name=bounces\n"
        f"workers = 2\ncontrol_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"
        f"event_log = {events}\nrecord = 10000\nrules = {rules}\n",
    )
    inbound, bounces = server.port("smtp", 0), server.port("smtp", 1)
    wait_until(lambda: call(server, "GET", "/healthz", token=None)[0] == 200, what="healthz")
    # (listener, port, recipient) in turn: accepted, bounced, rule-deferred.
    mix = [
        ("inbound", inbound, "b@example.com"),
        ("bounces", bounces, "b@example.com"),
        ("inbound", inbound, "defer@example.com"),
    ]
    seen: dict[str, Counter[str]] = {"inbound": Counter(), "bounces": Counter()}
    broken = Counter[str]()
    queue_ids: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    sent = threading.Semaphore(0)

    def load(offset: int) -> None:
        mine = {name: Counter[str]() for name in seen}
        mine_broken = Counter[str]()
        mine_ids: list[str] = []
        turn = offset
        while not stop.is_set():
            listener, port, recipient = mix[turn % len(mix)]
            turn += 1
            try:
                one_message(port, recipient, mine[listener], mine_ids)
            except (OSError, smtplib.SMTPException):
                mine_broken[listener] += 1  # the killed worker's sessions
            sent.release()
        with lock:
            for name, counts in mine.items():
                seen[name].update(counts)
            broken.update(mine_broken)
            queue_ids.extend(mine_ids)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(45):
            assert sent.acquire(timeout=10)
        victim = workers(server.pid)[1]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: workers(server.pid).get(1) not in (None, victim), what="a new worker")
        for _ in range(45):
            assert sent.acquire(timeout=10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    wait_until(lambda: call(server, "GET", "/healthz", token=None)[0] == 200, what="healthz")

    status, _kind, stats = call(server, "GET", "/stats")
    assert status == 200
    status, _kind, exposition = call(server, "GET", "/metrics", token=None)
    assert status == 200
    samples = metrics(exposition)
    restarts = "blackhole_worker_restarts_total"
    assert samples[restarts, frozenset({("reason", "killed")})] == 1  # SIGKILL from outside

    # Every outcome of every listener: what the clients saw <= counted <= that
    # plus the sessions the kill broke (replies counted, never delivered).
    for listener, counts in seen.items():
        for outcome in OUTCOMES:
            key = (
                "blackhole_messages_total",
                frozenset({("listener", listener), ("outcome", outcome)}),
            )
            counted = samples.get(key, 0.0)
            # A refused transaction is counted when it ends (OBSERVE.md: the
            # last reply decides), at the client's next command: a kill between
            # the refusal and that command leaves it unended and uncounted, and
            # the client, quitting, sees no error. At most one such transaction
            # per client thread; an accepted message is counted before its 250.
            unended = 0 if outcome == "accepted" else len(threads)
            assert counts[outcome] - unended <= counted <= counts[outcome] + broken[listener], (
                listener,
                outcome,
                counts,
                broken,
                counted,
            )
    assert seen["inbound"]["accepted"] > 0 and seen["inbound"]["deferred"] > 0
    assert seen["bounces"]["rejected"] + seen["bounces"]["deferred"] > 0
    # Every rule-deferred RCPT is one action of the rule.
    actions = samples.get(("blackhole_rule_actions_total", frozenset({("rule", "defer-some")})), 0)
    assert seen["inbound"]["deferred"] <= actions <= seen["inbound"]["deferred"] + broken["inbound"]
    # /stats and /metrics are the same figures (the load is over).
    for outcome in OUTCOMES:
        total = sum(
            value
            for (name, labels), value in samples.items()
            if name == "blackhole_messages_total" and ("outcome", outcome) in labels
        )
        assert stats["messages"][outcome] == total, (outcome, stats["messages"])

    # The event log: a line for every message a client saw, none more than counted.
    lines = [line for line in event_lines(events) if line["type"] == "message"]
    logged = Counter((str(line["listener"]), str(line["outcome"])) for line in lines)
    for listener, counts in seen.items():
        for outcome in OUTCOMES:
            key = (
                "blackhole_messages_total",
                frozenset({("listener", listener), ("outcome", outcome)}),
            )
            unended = 0 if outcome == "accepted" else len(threads)
            assert counts[outcome] - unended <= logged[listener, outcome] <= samples.get(key, 0.0)
    deferred_by_rule = [
        line for line in lines if line["outcome"] == "deferred" and line["listener"] == "inbound"
    ]
    assert deferred_by_rule and all(line["rule"] == "defer-some" for line in deferred_by_rule)
    logged_ids = {line["queue_id"] for line in lines if line["outcome"] == "accepted"}
    assert set(queue_ids) <= logged_ids

    # GET /messages: every message a client saw accepted is recorded.
    status, _kind, records = call(server, "GET", "/messages")
    assert status == 200
    assert set(queue_ids) <= {record["queue_id"] for record in records}
    assert all(record["headers"] for record in records if record["outcome"] == "accepted")

    # POST /reset zeroes every counter, the supervisor's count of restarts too.
    assert call(server, "POST", "/reset")[0] == 204
    after = metrics(call(server, "GET", "/metrics", token=None)[2])
    assert not [key for key in after if key[0] == restarts]

    # The live exposition is valid Prometheus text.
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian: prometheus)")
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition.encode(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.stop() == 0


def test_auth_mode_delays_and_listener_names_are_counted(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start(
        server_factory,
        tmp_path,
        "listen = 127.0.0.1:0 name=inbound delay=0.05\n"
        f"control_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n",
    )
    port = server.port()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("proof.test")
        client.user, client.password = "user", "secret"
        client.auth("PLAIN", client.auth_plain)  # accepted
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("proof.test")
        client.user, client.password = "user", "fail=yes"  # the password says: 535
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.auth("PLAIN", client.auth_plain)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    status, _kind, exposition = call(server, "GET", "/metrics", token=None)
    assert status == 200
    samples = metrics(exposition)
    auth = "blackhole_auth_total"
    assert samples[auth, frozenset({("mechanism", "PLAIN"), ("result", "ok")})] == 1
    assert samples[auth, frozenset({("mechanism", "PLAIN"), ("result", "failed")})] == 1
    accepted = frozenset({("listener", "inbound"), ("outcome", "accepted")})
    assert samples["blackhole_messages_total", accepted] == 1
    delay = samples["blackhole_injected_delay_seconds_total", frozenset({("rule", "mode")})]
    assert 0.04 < delay < 0.06
