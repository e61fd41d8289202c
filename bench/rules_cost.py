"""The rules' cost per message, without sockets: the core and a session's steering.

The shape of bench/run.py's 1k-reuse scenario (one session, MAIL, RCPT, DATA,
1 KB of content, answered at once), timed in CPU microseconds per message,
best of five runs. ``plain``: the core without rules; ``nomatch20``: the
worker's rules are bench/rulesets.py's 20 rules that never match (MAIL, RCPT
and end are watched: three stage decisions per message). The adapter's part
(the pump, the mode's answer) is played by hand. Run it from two checkouts to
compare them, e.g. before and after a change to the rules' hot path:

    .venv/bin/python bench/rules_cost.py plain
    .venv/bin/python bench/rules_cost.py nomatch20
    .venv/bin/python bench/rules_cost.py greylist shared

``greylist``: one greylist rule on every recipient (one stateful decision a
message, key ``triplet``), counted in this process (``MemoryStore``) or,
with ``shared``, in a shared memory region as the workers of a server do
(``hub.sharedstore.SharedStore``).
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

from blackhole.config.model import Config
from blackhole.hub.sharedstore import SharedStore
from blackhole.protocol import replies as R
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived, StageReached
from blackhole.protocol.settings import SessionSettings
from blackhole.rules.parse import parse_text
from blackhole.server.rulestate import WorkerRules
from blackhole.server.steering import Steering
from rulesets import RULESETS

CONTENT = b"Subject: x\r\n\r\n" + (b"x" * 76 + b"\r\n") * 13 + b".\r\n"
LINES = (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n", CONTENT)
MESSAGES = 10000


class _Transport:
    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 2525) if name == "sockname" else None


def _session() -> Any:
    """What ``Steering`` reads of an ``SMTPProtocol``, and the mode's answer."""

    def answer(core: SMTPConnection, _event: MessageReceived) -> bool:
        core.send(R.R250_OK)
        return False

    listener = SimpleNamespace(host="127.0.0.1", name=None)
    return SimpleNamespace(
        session_id="bench",
        transport=_Transport(),
        ctx=SimpleNamespace(listener=listener),
        client=("127.0.0.1", 40000),
        answer=answer,
    )


def run(ruleset: str | None, shared: bool = False) -> float:
    core = SMTPConnection(SessionSettings(mailname="mx.test"))
    steer = None
    if ruleset is not None:
        config = Config(rules=parse_text(RULESETS[ruleset]))
        store = SharedStore.create() if shared else None
        steer = Steering(_session(), WorkerRules(config, store), core)
    core.start()
    core.data_to_send()
    core.receive_data(b"EHLO bench\r\n")
    while (event := core.next_event()) is not None:
        if isinstance(event, StageReached) and steer is not None:
            steer.reached(core, event)
    core.data_to_send()
    started = time.process_time()
    for _ in range(MESSAGES):
        for line in LINES:
            core.receive_data(line)
            while (event := core.next_event()) is not None:
                if steer is None:
                    core.send(R.R250_OK)
                elif isinstance(event, StageReached):
                    steer.reached(core, event)
                else:
                    assert isinstance(event, MessageReceived)
                    steer.message(core, event)
            core.data_to_send()
    return (time.process_time() - started) / MESSAGES * 1e6


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "plain"
    shared = sys.argv[2:] == ["shared"]
    best = min(run(None if name == "plain" else name, shared) for _ in range(5))
    print(f"{name}{' (shared)' if shared else ''}: {best:.2f} us CPU per message")
