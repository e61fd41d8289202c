"""``window`` counts from the server's start: the same in every worker, and
after a worker restarts (RULES.md "Selection")."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.e2e import Factory
from tests.proctools import wait_until, workers
from tests.rulesrv import rules_server
from tests.smtpclient import Client

OUTAGE = """
[[rule]]
name = "outage"
at = "connect"
window = "0s-4s"
reply = "554 5.3.2 Outage window"
"""


def _greeting(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        client = Client(sock)
        return client.reply().code


def test_window_counts_from_the_server_start_in_every_worker(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, OUTAGE, workers=2)
    port = server.port()
    # The outage ends 4 seconds after the server started, whichever worker answers.
    wait_until(lambda: _greeting(port) == 220, timeout=30, interval=0.2, what="the window to end")
    old = workers(server.pid)
    assert len(old) == 2
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)
    # Restarted workers count from the server's start too, not their own:
    # for them the window is long over.
    wait_until(
        lambda: len(new := workers(server.pid)) == 2 and not set(new.values()) & set(old.values()),
        timeout=20,
        what="both workers to be replaced",
    )
    assert [_greeting(port) for _ in range(8)] == [220] * 8
