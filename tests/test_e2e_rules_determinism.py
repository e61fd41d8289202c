"""RULES.md "Determinism": the same traffic, one message after another, against
the same rules and seed gets the same replies, byte for byte, with two workers
sharing their counts through the hub."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e import Factory
from tests.rulesrv import rules_server
from tests.serverproc import ServerProcess
from tests.smtpclient import Client

RULES = """
seed = 7

[[rule]]
name = "grey"
at = "rcpt"
recipient = "*@grey.example"
greylist = "1h"

[[rule]]
name = "flaky-rcpt"
at = "rcpt"
recipient = "*@flaky.example"
probability = 0.3
reply = "450 4.2.0 Flaky mailbox"

[[rule]]
name = "every-seventh"
at = "mail"
every = 7
reply = "451 4.3.0 Every seventh sender waits"

[[rule]]
name = "first-tries"
at = "end"
first = 2
key = "sender"
reply = "452 4.3.1 First tries fail"

[[rule]]
name = "unlucky"
at = "end"
probability = 0.25
key = "message"
reply = "554 5.6.0 Unlucky message"
"""

MESSAGES = 200
PER_SESSION = 5
_QUEUED = re.compile(r"queued as \S+")


def _script(i: int) -> tuple[str, list[str], bytes]:
    """Message ``i``: a sender among 13, two or three recipients, a Message-ID."""
    sender = f"s{i % 13}@sender.example"
    domains = ["ok.example", "grey.example", "flaky.example"]
    recipients = [f"r{i % 5}@{domains[i % 3]}", f"r{i % 7}@{domains[(i + 1) % 3]}"]
    if i % 4 == 0:
        recipients.append(f"x{i}@flaky.example")
    body = f"Message-ID: <{i % 50}@script.example>\r\nSubject: {i}\r\n\r\nbody {i}\r\n"
    return sender, recipients, body.encode()


def _run(server: ServerProcess) -> list[str]:
    """Every reply of the scripted run, as text, queue ids left out."""
    seen: list[str] = []

    def say(client: Client, line: str | bytes) -> int:
        reply = client.cmd(line)
        seen.append(_QUEUED.sub("queued as ID", f"{reply.code} {' / '.join(reply.lines)}"))
        return reply.code

    for start in range(0, MESSAGES, PER_SESSION):
        with Client.connect(server.port()) as client:
            say(client, "EHLO client.example")
            for i in range(start, start + PER_SESSION):
                sender, recipients, body = _script(i)
                if say(client, f"MAIL FROM:<{sender}>") != 250:
                    continue
                accepted = [r for r in recipients if say(client, f"RCPT TO:<{r}>") == 250]
                if not accepted:
                    say(client, "RSET")
                    continue
                if say(client, "DATA") == 354:
                    say(client, body + b".")
            say(client, "QUIT")
    return seen


def test_same_traffic_same_replies_with_two_workers(
    server_factory: Factory, tmp_path: Path
) -> None:
    runs = []
    for n in range(2):
        directory = tmp_path / f"run{n}"
        directory.mkdir()
        server = rules_server(server_factory, directory, RULES, "mode = accept\n", workers=2)
        runs.append(_run(server))
        server.stop()
        # Both workers took connections, so their counts were shared.
        for worker in ("w1", "w2"):
            assert re.search(rf"\[{worker}-\d+\] rule", server.text()), worker
    first, second = runs
    assert len(first) > 4 * MESSAGES
    # Every rule acted somewhere in the run, and some messages got through.
    for text in ("4.7.1 Greylisted", "4.2.0 Flaky", "4.3.0 Every seventh", "4.3.1 First", "5.6.0"):
        assert any(text in reply for reply in first), text
    assert any("queued as ID" in reply for reply in first)
    assert first == second
