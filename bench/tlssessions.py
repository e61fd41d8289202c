"""TLS sessions beyond the full SMTPS handshake: resumption, STARTTLS, and plain for scale.

Each kind runs ``clients`` parallel clients for ``seconds`` against a server
and reads the server's CPU from /proc: µs per session, sessions per second,
and the share of sessions that resumed the client's previous one.

* ``s_time reuse TLS1.2``: ``openssl s_time -reuse -tls1_2`` on the SMTPS
  port, against ``openssl s_server`` too (the reference). s_time cannot
  resume TLS 1.3 (it never reads the tickets sent after the handshake).
* ``smtps`` / ``starttls`` / ``plain``, ``new`` / ``reuse``: ``tlsclient.py``
  (Python's ssl), a whole SMTP session each (greeting, EHLO, QUIT; STARTTLS
  and EHLO again for ``starttls``). ``plain`` is the same session without
  TLS: what a session costs before any TLS.

With several workers a ticket is accepted only by the worker that issued it
(each has its own ticket key): the resumed share shows it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from procstats import Meter
from servers import HOST, Server
from summary import fmt, median_or_none

CLIENT = Path(__file__).with_name("tlsclient.py")


@dataclass(frozen=True)
class Kind:
    label: str
    mode: str  # "s_time", or tlsclient.py's smtps / starttls / plain
    version: str  # "1.2" | "1.3"
    resume: str  # "new" | "reuse"


KINDS = (
    Kind("s_time reuse, TLS 1.2", "s_time", "1.2", "reuse"),
    Kind("SMTPS new, TLS 1.3", "smtps", "1.3", "new"),
    Kind("SMTPS reuse, TLS 1.3", "smtps", "1.3", "reuse"),
    Kind("SMTPS reuse, TLS 1.2", "smtps", "1.2", "reuse"),
    Kind("STARTTLS new, TLS 1.3", "starttls", "1.3", "new"),
    Kind("STARTTLS reuse, TLS 1.3", "starttls", "1.3", "reuse"),
    Kind("STARTTLS new, TLS 1.2", "starttls", "1.2", "new"),
    Kind("plain session (no TLS)", "plain", "1.3", "new"),
)


@dataclass
class TlsSessionRun:
    server: str
    kind: str
    repetition: int
    clients: int
    ok: bool
    error: str = ""
    sessions: int = 0
    reused: int = 0
    wall_s: float = 0.0
    per_s: float = 0.0
    cpu_us_per_session: float = 0.0


def _argv(kind: Kind, server: Server, seconds: int) -> list[str]:
    if kind.mode == "s_time":
        argv = ["openssl", "s_time", "-connect", f"{HOST}:{server.tls_port}", "-reuse"]
        return [*argv, f"-tls{kind.version.replace('.', '_')}", "-time", str(seconds)]
    port = server.tls_port if kind.mode == "smtps" else server.port
    return [sys.executable, str(CLIENT), HOST, str(port), kind.mode, kind.version]


def _count(kind: Kind, out: bytes) -> tuple[int, int, str]:
    """(sessions, resumed, error) from one client's output."""
    if kind.mode == "s_time":
        match = re.search(rb"(\d+) connections in [\d.]+s", out)
        # One 'r' per resumed connection, '*' per full handshake.
        progress = out.split(b"starting", 1)[-1].split(b"\n\n", 1)[0]
        count = int(match.group(1)) if match else 0
        return count, progress.count(b"r"), "" if count else "no connection counted"
    try:
        answer = json.loads(out or b"{}")
    except ValueError:
        return 0, 0, f"unreadable output {out[:80]!r}"
    return answer.get("sessions", 0), answer.get("reused", 0), answer.get("error", "")


def applies(kind: Kind, server: Server) -> bool:
    """s_server speaks TLS but no SMTP; smtp-sink no TLS."""
    if kind.mode == "s_time":
        return server.has_tls
    return server.has_smtp and (server.has_tls or kind.mode == "plain")


def run_kind(server: Server, kind: Kind, seconds: int, clients: int, rep: int) -> TlsSessionRun:
    result = TlsSessionRun(server.name, kind.label, rep, clients, ok=False)
    argv = _argv(kind, server, seconds)
    if kind.mode != "s_time":
        argv += [kind.resume, str(seconds)]
    meter = Meter(server.pid)
    procs = [
        subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(clients)
    ]
    errors = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 30)
            count, reused, error = _count(kind, out)
            if proc.returncode or error:
                tail = err.decode(errors="replace").strip().splitlines()[-1:]
                errors.append(error or f"exit {proc.returncode}: {' '.join(tail)}")
            result.sessions += count
            result.reused += reused
    except subprocess.TimeoutExpired:
        errors.append(f"a client still ran after {seconds + 30} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    usage = meter.stop()
    result.wall_s = usage.wall_s
    result.error = errors[0] if errors else ""
    if result.sessions and not result.error:
        result.ok = True
        result.per_s = result.sessions / usage.wall_s
        result.cpu_us_per_session = usage.server_s / result.sessions * 1e6
    return result


def tls_sessions_phase(
    servers: Sequence[Server],
    options: argparse.Namespace,
    runs: list[TlsSessionRun],
    note: Callable[[str, str, int, str, str], None],
) -> None:
    """Every kind on every server it applies to, servers alternating each repetition."""
    for rep in range(options.repeat):
        for kind in KINDS:
            turn = rep % len(servers)
            for server in [*servers[turn:], *servers[:turn]]:
                if not applies(kind, server):
                    continue
                run = run_kind(server, kind, options.tls_seconds, options.tls_clients, rep)
                runs.append(run)
                text = (
                    f"{kind.label}: {run.per_s:,.0f}/s, {run.cpu_us_per_session:,.0f} µs CPU, "
                    f"{run.reused:,}/{run.sessions:,} resumed"
                )
                note("tls-sessions", server.name, rep, run.error, text)


def tls_sessions_report(runs: Sequence[TlsSessionRun]) -> list[str]:
    """A markdown table: medians of the successful repetitions per kind and server."""
    if not runs:
        return []
    lines = [
        "",
        "### TLS sessions: resumption, STARTTLS, and the plain session for scale",
        "",
        "| kind | server | sessions/s | server µs CPU/session | resumed | failed runs |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    groups: dict[tuple[str, str], list[TlsSessionRun]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.server), []).append(run)
    for (kind, server), group in groups.items():
        ok = [r for r in group if r.ok]
        rate = median_or_none([r.per_s for r in ok])
        cpu = median_or_none([r.cpu_us_per_session for r in ok])
        share = median_or_none([100 * r.reused / r.sessions for r in ok if r.sessions])
        lines.append(
            f"| {kind} | {server} | {fmt(rate)} | {fmt(cpu)} | {fmt(share)} % "
            f"| {len(group) - len(ok)}/{len(group)} |"
        )
    return lines
