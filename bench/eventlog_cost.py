"""The event log's cost per message, without sockets: a worker's session fed one message at a time.

The shape of bench/run.py's 1k-reuse scenario (one session; MAIL, RCPT, DATA,
1 KB, answered at once), as bench/meter_cost.py, but through a worker's
session observation (``server.observing``): its meter counting, and with
``eventlog`` a message line written for each message, to a file in a
temporary directory. Timed in CPU microseconds per message, best of five
runs; run under valgrind's callgrind for instruction counts that do not
depend on how busy the machine is:

    .venv/bin/python bench/eventlog_cost.py plain
    .venv/bin/python bench/eventlog_cost.py eventlog
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/eventlog_cost.py eventlog 3000 1
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from blackhole.observe.eventlog import EventLog
from blackhole.protocol import replies as R
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived
from blackhole.protocol.settings import SessionSettings
from blackhole.server.observing import Observation, SessionObservation

CONTENT = b"Subject: x\r\n\r\n" + (b"x" * 76 + b"\r\n") * 13 + b".\r\n"
LINES = (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n", CONTENT)


def run(directory: Path, logged: bool, messages: int) -> float:
    observation = Observation.private(["127.0.0.1:2525"])
    if logged:
        observation.event_log = EventLog(str(directory / "events.jsonl"))
    session = SessionObservation(observation, "127.0.0.1:2525", "w1-s1")
    session.client = "127.0.0.1"
    core = SMTPConnection(SessionSettings(mailname="mx.test"))
    core.meter = session.meter
    session.core = core
    meter = session.meter
    core.start()
    core.data_to_send()
    core.receive_data(b"EHLO bench\r\n")
    core.data_to_send()
    started = time.process_time()
    for n in range(messages):
        for line in LINES:
            meter.started = time.perf_counter()  # as the adapter does for each input
            core.receive_data(line)
            while (event := core.next_event()) is not None:
                if isinstance(event, MessageReceived):
                    session.message_read(event)
                    core.send(R.queued(f"w1-{n:08X}"))
            core.data_to_send()
    elapsed = time.process_time() - started
    if observation.event_log is not None:
        observation.event_log.close()
    return elapsed / messages * 1e6


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("plain", "eventlog") or len(argv) > 3:
        print("usage: eventlog_cost.py plain|eventlog [MESSAGES] [RUNS]", file=sys.stderr)
        return 64
    messages = int(argv[1]) if len(argv) > 1 else 10_000
    runs = int(argv[2]) if len(argv) > 2 else 5
    with tempfile.TemporaryDirectory(prefix="blackhole-eventlog-") as tmp:
        best = min(run(Path(tmp), argv[0] == "eventlog", messages) for _ in range(runs))
    print(f"{argv[0]}: {best:.2f} us CPU per message")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
