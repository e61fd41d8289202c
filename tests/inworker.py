"""A real worker inside the test process, on the test's running (uvloop) loop.

For tests that must see what happens between two turns of the worker's loop,
which a server in another process hides.
"""

from __future__ import annotations

import ssl

from blackhole.config.classic import parse_config
from blackhole.server.app import Worker
from blackhole.server.observing import Observation, listener_labels
from blackhole.server.sockets import bind_listener


async def started_worker(config_text: str, tls: ssl.SSLContext | None = None) -> Worker:
    """A worker serving the config's first listener, counting as worker 1 does.

    ``tls``: the server context of SMTPS and STARTTLS, built from the config's
    files (``blackhole.server.tls.build_server_context``).
    """
    config = parse_config(config_text)
    listener = config.listeners[0]
    bound = [(listener, bind_listener(listener))]
    observation = Observation.for_worker(None, listener_labels(bound), None, 0, 1)
    worker = Worker(config, bound, "sink.test", tls, worker_id=1, observation=observation)
    await worker.start()
    return worker


def address(worker: Worker) -> tuple[str, int]:
    host, port = worker.bound[0][1].getsockname()[:2]
    return host, port
