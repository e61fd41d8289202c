"""Everything one run measured, the machine it ran on, and the JSON record of it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from handshakes import TlsRun
from idle import IdleRun
from latency import LatencyRun
from load import LoadRun
from servers import find_tool
from summary import summarize, tls_summary
from targets import evaluate_targets
from tlssessions import TlsSessionRun


def machine_info() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name, argv in {
        "postfix": ["postconf", "-d", "-h", "mail_version"],
        "openssl": ["openssl", "version"],
    }.items():
        tool = find_tool(argv[0])
        try:
            out = subprocess.run(
                [tool or argv[0], *argv[1:]], capture_output=True, timeout=10, check=False
            )
            versions[name] = out.stdout.decode().strip()
        except OSError:
            versions[name] = "not found"
    for module in ("aiosmtpd", "uvloop"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


@dataclass
class Results:
    """Everything one invocation measured, raw and in order."""

    machine: dict[str, str]
    counts: dict[str, int]
    status: dict[str, str] = field(default_factory=dict)
    load_runs: list[LoadRun] = field(default_factory=list)
    tls_runs: list[TlsRun] = field(default_factory=list)
    tls_info: dict[str, str] = field(default_factory=dict)
    idle: dict[str, IdleRun] = field(default_factory=dict)
    tls_sessions: list[TlsSessionRun] = field(default_factory=list)
    latency: list[LatencyRun] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def note(self, phase: str, server: str, rep: int, error: str, text: str) -> None:
        """Print one line of progress; remember a failure."""
        if error:
            self.failures.append(f"{server} {phase}: {error}")
        shown = f"FAILED: {error}" if error else text
        print(f"  [{rep + 1}] {phase:<13} {server:<14} {shown}", flush=True)


def _plain(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return str(value) if isinstance(value, Path) else value


def to_json(results: Results, options: argparse.Namespace) -> str:
    load = summarize(results.load_runs)
    tls = tls_summary(results.tls_runs)
    opts = {key: _plain(value) for key, value in vars(options).items()}
    document = {
        "machine": results.machine,
        "options": opts,
        "status": results.status,
        "counts": results.counts,
        "load_runs": [asdict(r) for r in results.load_runs],
        "tls_runs": [asdict(r) for r in results.tls_runs],
        "tls_negotiated": results.tls_info,
        "idle_runs": [asdict(r) for r in results.idle.values()],
        "tls_session_runs": [asdict(r) for r in results.tls_sessions],
        "latency_runs": [asdict(r) for r in results.latency],
        "summary": {"load": load, "tls": tls},
        "targets": evaluate_targets(load, tls, results.idle),
        "failures": results.failures,
    }
    return json.dumps(document, indent=2)
