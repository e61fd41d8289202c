"""The counting's cost per message, without sockets: the sans-IO core fed one message at a time.

The shape of bench/run.py's 1k-reuse scenario (one session, MAIL, RCPT, DATA,
1 KB of content, answered at once), timed in CPU microseconds per message,
best of five runs. ``plain``: the core with its null meter; ``metered``: with
a session's meter counting into a worker's counters, the adapter's share (the
clock read per input, the message's size) played by hand. Run it from two
checkouts to compare them, e.g. before and after a change to the hot path:

    .venv/bin/python bench/meter_cost.py plain      # any checkout
    .venv/bin/python bench/meter_cost.py metered    # one with observe.meter
"""

from __future__ import annotations

import sys
import time

from blackhole.protocol import replies as R
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived
from blackhole.protocol.settings import SessionSettings

CONTENT = b"Subject: x\r\n\r\n" + (b"x" * 76 + b"\r\n") * 13 + b".\r\n"
LINES = (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n", CONTENT)
MESSAGES = 10000


def run(metered: bool) -> float:
    core = SMTPConnection(SessionSettings(mailname="mx.test"))
    meter = None
    if metered:
        from blackhole.observe.counters import Counters  # noqa: PLC0415 - not in old checkouts
        from blackhole.observe.layout import Layout  # noqa: PLC0415
        from blackhole.observe.meter import SessionMeter, verb_slots  # noqa: PLC0415

        counters = Counters.private(Layout(["l"]))
        meter = SessionMeter(counters, 0, verb_slots(counters.layout))
        core.meter = meter
    core.start()
    core.data_to_send()
    core.receive_data(b"EHLO bench\r\n")
    core.data_to_send()
    started = time.process_time()
    for _ in range(MESSAGES):
        for line in LINES:
            if meter is not None:
                meter.started = time.perf_counter()  # as SMTPProtocol.data_received
            core.receive_data(line)
            while (event := core.next_event()) is not None:
                if isinstance(event, MessageReceived):
                    if meter is not None:
                        meter.size = event.size
                    core.send(R.R250_OK)
            core.data_to_send()
    return (time.process_time() - started) / MESSAGES * 1e6


if __name__ == "__main__":
    metered = sys.argv[1:] == ["metered"]
    best = min(run(metered) for _ in range(5))
    print(f"{'metered' if metered else 'plain'}: {best:.2f} us CPU per message")
