"""TLS handshakes: parallel ``openssl s_time`` clients against a server's SMTPS port."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from procstats import Meter
from servers import HOST, Server


@dataclass
class TlsRun:
    server: str
    repetition: int
    clients: int
    ok: bool
    error: str = ""
    handshakes: int = 0
    wall_s: float = 0.0
    per_s: float = 0.0
    cpu_us_per_handshake: float = 0.0
    client_us_per_handshake: float = 0.0
    server_cpu_pct: float = 0.0
    client_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0


def run_tls(server: Server, seconds: int, clients: int, repetition: int) -> TlsRun:
    """``clients`` parallel ``openssl s_time -new`` for ``seconds``: full handshakes/s.

    One sequential client measures the latency of a handshake (its own half
    included); several keep the server busy, which is what it can sustain.
    """
    result = TlsRun(server.name, repetition, clients, ok=False)
    argv = ["openssl", "s_time", "-connect", f"{HOST}:{server.tls_port}", "-new"]
    argv += ["-time", str(seconds)]
    limit = seconds + 20  # s_time has no timeout: a handshake never answered hangs it
    procs: list[subprocess.Popen[bytes]] = []
    outputs: list[tuple[int, bytes, bytes]] = []
    meter = Meter(server.pid)
    try:
        for _ in range(clients):
            procs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            )
        for proc in procs:
            remaining = max(0.1, limit - meter.elapsed())
            out, err = proc.communicate(timeout=remaining)
            outputs.append((proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        result.error = f"openssl s_time still running after {limit} s: a handshake hung"
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    usage = meter.stop()
    result.wall_s = usage.wall_s
    for code, out, err in outputs:
        match = re.search(rb"(\d+) connections in [\d.]+s", out)
        count = int(match.group(1)) if match else 0
        if code != 0 or not count:
            tail = (err or out).decode(errors="replace").strip().splitlines()
            result.error = f"openssl s_time exit {code}: {' | '.join(tail[-2:])}"
        result.handshakes += count
    if result.error:
        return result
    result.ok = True
    result.per_s = result.handshakes / result.wall_s
    result.cpu_us_per_handshake = usage.server_s / result.handshakes * 1e6
    result.client_us_per_handshake = usage.generator_s / result.handshakes * 1e6
    result.server_cpu_pct, result.client_cpu_pct, result.other_cpu_pct = usage.shares()
    return result


def tls_parameters(server: Server) -> str:
    """What one handshake negotiates (``openssl s_client -brief``): protocol, cipher, group."""
    argv = ["openssl", "s_client", "-connect", f"{HOST}:{server.tls_port}", "-brief"]
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        return "s_client timed out"
    found = {}
    for line in (proc.stderr + proc.stdout).decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key in ("Protocol version", "Ciphersuite", "Server Temp Key", "Peer Temp Key"):
            found[key] = value.strip().split(",")[0]
    if not found:
        return "no handshake"
    temp = found.get("Server Temp Key") or found.get("Peer Temp Key", "?")
    return f"{found.get('Protocol version', '?')} {found.get('Ciphersuite', '?')} {temp}"


# --------------------------------------------------------------------------- idle sessions
