"""Queue ids are unique per server run, whatever the seed and the number of workers.

With ``seed`` set every worker's random generator starts in the same state;
ids drawn from it repeated across workers (and across a worker's restarts).
"""

from __future__ import annotations

import os
import random
import signal
import smtplib
from collections.abc import Callable
from pathlib import Path

from blackhole.policy.decide import Policy
from blackhole.policy.modes import Mode
from tests.proctools import alive, wait_until, workers
from tests.serverproc import ServerProcess

Factory = Callable[..., ServerProcess]
WriteConfig = Callable[[str], Path]
MESSAGES_PER_WORKER = 40


def _id(policy: Policy) -> str:
    return policy.reply_for(Mode.ACCEPT).text.removeprefix("OK: queued as ")


def test_two_policies_with_one_seed_issue_different_ids() -> None:
    first, second = Policy(random.Random(7)), Policy(random.Random(7))
    ours = {_id(first) for _ in range(1000)}
    theirs = {_id(second) for _ in range(1000)}
    assert len(ours) == len(theirs) == 1000
    assert not ours & theirs


def _send(port: int, count: int) -> list[str]:
    ids = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        for _ in range(count):
            client.mail("a@example.com")
            client.rcpt("b@example.com")
            code, text = client.data(b"Subject: id\r\n\r\nhi\r\n")
            assert code == 250, text
            ids.append(text.decode().removeprefix("2.0.0 OK: queued as "))
    return ids


def test_seeded_workers_never_repeat_a_queue_id(
    server_factory: Factory, write_config: WriteConfig
) -> None:
    # A slow heartbeat: a worker is held stopped on purpose below.
    config = "listen = 127.0.0.1:0\nworkers = 2\nseed = 7\nheartbeat_interval = 30\n"
    server = server_factory(write_config(config))
    found = wait_until(lambda: len(workers(server.pid)) == 2 and workers(server.pid))
    ids: list[str] = []
    # Each worker in turn serves alone (the other is stopped and cannot
    # accept from the shared listening socket), so both surely issue ids.
    for paused, serving in ((found[1], found[2]), (found[2], found[1])):
        os.kill(paused, signal.SIGSTOP)
        try:
            assert alive(serving)
            ids += _send(server.port(), MESSAGES_PER_WORKER)
        finally:
            os.kill(paused, signal.SIGCONT)
    assert len(ids) == 2 * MESSAGES_PER_WORKER
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    assert not repeated, repeated
    assert server.stop() == 0
