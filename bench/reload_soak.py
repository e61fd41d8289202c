"""Reload soak: mail keeps flowing while SIGHUPs replace every worker, and none is lost.

Starts Blackhole with a few workers, keeps several clients sending one
message per connection (smtplib), and reloads it again and again with a
config whose listeners differ from the last (a second listener comes and
goes), so that every reload starts new workers and retires the old ones
while connections arrive. Every session must end with its message accepted:
a refused connection, an EOF or a reset is a lost session, and the soak
exits 1 and names them.

    python bench/reload_soak.py [--reloads 30] [--clients 4] [--workers 2]

Everything goes to 127.0.0.1; the number of reloads is bounded, each waits
at most ``--wait`` seconds, and the server is stopped (by process group) in
a ``finally`` block.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import os
import queue
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on smtp://127\.0\.0\.1:(\d+)")
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


class Server:
    """``python -m blackhole -c CONF`` in a process group of its own; its log, line by line."""

    def __init__(self, python: str, config: Path) -> None:
        env = dict(os.environ)
        if importlib.util.find_spec("blackhole") is None and python == sys.executable:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(REPO_DIR / "src"), env.get("PYTHONPATH")])
            )
        self.proc = subprocess.Popen(
            [python, "-m", "blackhole", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, seconds: float) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if "ERROR" in line or "Traceback" in line:
                print(f"  server: {line}", file=sys.stderr)
            match = re.search(pattern, line)
            if match:
                return match
        raise TimeoutError(f"no log line matching {pattern!r} within {seconds:g} s")

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def config_text(workers: int, second_listener: bool) -> str:
    listen = "127.0.0.1:0" + (", 127.0.0.1:0 mode=bounce" if second_listener else "")
    # A generous timeout and grace: a session that ends badly here is lost,
    # not timed out.
    return f"listen = {listen}\nworkers = {workers}\ntimeout = 30\ngrace_period = 30\n"


def soak(args: argparse.Namespace, workdir: Path) -> collections.Counter[str]:
    config = workdir / "blackhole.conf"
    config.write_text(config_text(args.workers, False))
    server = Server(args.python, config)
    try:
        port = int(server.wait_for(LISTENING.pattern, args.wait).group(1))
        clients = Clients(port, args.clients)
        clients.start()
        try:
            for generation in range(2, args.reloads + 2):
                # The first listener keeps its port (127.0.0.1:0 matches the
                # one bound); the second one comes and goes, so the workers
                # are replaced every time.
                config.write_text(config_text(args.workers, generation % 2 == 0))
                sent = clients.ok()
                os.kill(server.proc.pid, signal.SIGHUP)
                server.wait_for(rf"configuration reloaded \(generation {generation}\)", args.wait)
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
    parser.add_argument("--reloads", type=int, default=30, help="SIGHUPs to send (default 30)")
    parser.add_argument(
        "--clients", type=int, default=4, help="clients sending at once (default 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="the server's workers (default 2)")
    parser.add_argument("--wait", type=float, default=30.0, help="longest wait for one reload, s")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter whose Blackhole runs, e.g. .venv-mypyc/bin/python",
    )
    args = parser.parse_args()
    if args.reloads < 1 or args.clients < 1 or args.workers < 1:
        parser.error("--reloads, --clients and --workers must be at least 1")
    if args.wait <= 0:
        parser.error("--wait must be more than 0 seconds")
    try:
        with tempfile.TemporaryDirectory(prefix="blackhole-soak-") as tmp:
            outcomes = soak(args, Path(tmp))
    except TimeoutError as exc:  # the server did not start, or a reload was not logged
        print(f"reload_soak: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # --python cannot be run
        print(f"reload_soak: cannot run {args.python}: {exc.strerror or exc}", file=sys.stderr)
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
