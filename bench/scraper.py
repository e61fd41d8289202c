"""A Prometheus stand-in: GET /metrics every second while a load runs.

The ``scrape`` variants (``blackhole-1w+scrape``) run with ``control_listen``
on; during each ``smtp-source`` run a thread fetches the exposition once a
second, as a Prometheus server with ``scrape_interval: 1s`` would. It is
bounded: one request at a time, each with a timeout, and it stops with the
load. What it costs the server shows as the hub's CPU (the control API runs
there) and, if scraping disturbed them, as the workers'.
"""

from __future__ import annotations

import http.client
import threading
from types import TracebackType

INTERVAL = 1.0
TIMEOUT = 5.0


class Scraper:
    """``with Scraper(host, port):`` scrapes until the block ends (port 0: never)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.scrapes = 0
        self.failures = 0
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def _fetch(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or b"blackhole_messages_total" not in body:
                raise OSError(f"GET /metrics: {response.status}, {len(body)} bytes")
            self.scrapes += 1
        except (OSError, http.client.HTTPException) as exc:
            self.failures += 1
            self.error = str(exc)
        finally:
            connection.close()

    def _run(self) -> None:
        # The first scrape a second in, as Prometheus's first would come at
        # any moment of the interval; then one a second until stopped.
        while not self._stop.wait(INTERVAL):
            self._fetch()

    def __enter__(self) -> Scraper:
        if self.port:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT + 1)
