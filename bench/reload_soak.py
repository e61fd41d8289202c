"""Reload soak: mail keeps flowing while SIGHUPs replace every worker, and none is lost.

Starts Blackhole with a few workers, keeps several clients sending one
message per connection (smtplib), and reloads it again and again with a
config whose listeners differ from the last (a second listener comes and
goes), so that every reload starts new workers and retires the old ones
while connections arrive. Every session must end with its message accepted:
a refused connection, an EOF or a reset is a lost session, and the soak
exits 1 and names them.

    python bench/reload_soak.py [--reloads 100] [--clients 4] [--workers 2]

The server is this interpreter's Blackhole, run by the testing API
(``blackhole.testing.process``): run the script with ``.venv-mypyc/bin/python``
for the compiled build. Everything goes to 127.0.0.1; the number of reloads
is bounded, each waits at most ``--wait`` seconds, and the server is stopped
in a ``finally`` block (and stops by itself if this script dies).
"""

from __future__ import annotations

import argparse
import collections
import re
import signal
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

from blackhole.testing.process import ServerProcess, StartError

MESSAGE = "Subject: soak\r\n\r\nhello\r\n"


class Clients:
    """``count`` threads, each sending one message per connection until stopped."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        while not self._stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                    refused = client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
                outcome = "ok" if not refused else f"recipient refused: {refused}"
            except (smtplib.SMTPException, OSError) as exc:
                outcome = repr(exc)
            with self._lock:
                self.outcomes[outcome] += 1

    def ok(self) -> int:
        with self._lock:
            return self.outcomes["ok"]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)


def wait_for_line(server: ServerProcess, pattern: str, seconds: float) -> None:
    """Poll the server's recent log lines for ``pattern`` (bounded by ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not re.search(pattern, server.text()):
        if not server.running() or time.monotonic() >= deadline:
            raise TimeoutError(f"no log line matching {pattern!r} within {seconds:g} s")
        time.sleep(0.01)  # polling the log, bounded by --wait


def config_text(workers: int, second_listener: bool) -> str:
    listen = "127.0.0.1:0" + (", 127.0.0.1:0 mode=bounce" if second_listener else "")
    # A generous timeout and grace: a session that ends badly here is lost,
    # not timed out.
    text = f"listen = {listen}\nworkers = {workers}\ntimeout = 30\ngrace_period = 30\n"
    # The testing API's server process waits for the control API at start-up.
    return text + "control_listen = 127.0.0.1:0\n"


def soak(args: argparse.Namespace, workdir: Path) -> collections.Counter[str]:
    config = workdir / "blackhole.conf"
    config.write_text(config_text(args.workers, False))
    server = ServerProcess.start(config, args.wait)
    try:
        port = server.port("smtp")
        assert port is not None  # the config has an smtp listener
        clients = Clients(port, args.clients)
        clients.start()
        try:
            for generation in range(2, args.reloads + 2):
                # The first listener keeps its port (127.0.0.1:0 matches the
                # one bound); the second one comes and goes, so the workers
                # are replaced every time.
                config.write_text(config_text(args.workers, generation % 2 == 0))
                sent = clients.ok()
                server.proc.send_signal(signal.SIGHUP)
                pattern = rf"configuration reloaded \(generation {generation}\)"
                wait_for_line(server, pattern, args.wait)
                deadline = time.monotonic() + args.wait
                while clients.ok() < sent + args.clients and time.monotonic() < deadline:
                    time.sleep(0.01)  # polling a count, bounded by --wait
                print(f"reload {generation - 1}/{args.reloads}: {clients.ok()} messages accepted")
        finally:
            clients.stop()
    finally:
        code = server.stop()
    if code != 0:
        clients.outcomes[f"server exited with {code}"] += 1
    return clients.outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=100, help="SIGHUPs to send (default 100)")
    parser.add_argument(
        "--clients", type=int, default=4, help="clients sending at once (default 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="the server's workers (default 2)")
    parser.add_argument("--wait", type=float, default=30.0, help="longest wait for one reload, s")
    args = parser.parse_args()
    if args.reloads < 1 or args.clients < 1 or args.workers < 1:
        parser.error("--reloads, --clients and --workers must be at least 1")
    if args.wait <= 0:
        parser.error("--wait must be more than 0 seconds")
    try:
        with tempfile.TemporaryDirectory(prefix="blackhole-soak-") as tmp:
            outcomes = soak(args, Path(tmp))
    except (StartError, TimeoutError) as exc:  # it did not start, or a reload was not logged
        print(f"reload_soak: {exc}", file=sys.stderr)
        return 1
    lost = {outcome: n for outcome, n in outcomes.items() if outcome != "ok"}
    print(
        f"{sum(outcomes.values())} sessions over {args.reloads} reloads: {outcomes['ok']} accepted"
    )
    for outcome, n in sorted(lost.items(), key=lambda item: -item[1]):
        print(f"  lost {n}: {outcome}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
