"""New sessions, one at a time: how long from connect() to the 220 greeting, in ms.

Run as its own process by ``idle.py`` while the idle sessions are held open
elsewhere, so that nothing of the holding client (its event loop, its garbage
collector walking thousands of stream objects) is in the figures: only the
kernel and the server are. It connects from a source address of its own, which
no held session uses: the kernel looks for a free ephemeral port for each
connect() by walking the ports of one (source, destination) pair, and with
18,000 of them taken by the held sessions that walk took milliseconds.

    python bench/greetprobe.py HOST PORT COUNT [SOURCE] [GAP_S]

prints one JSON object: {"ms": [...]} or {"error": "..."}.
"""

from __future__ import annotations

import json
import socket
import sys
import time

TIMEOUT_S = 10.0


def greeting_ms(host: str, port: int, source: str | None) -> float:
    t0 = time.perf_counter()
    bind = (source, 0) if source else None
    with socket.create_connection((host, port), TIMEOUT_S, source_address=bind) as sock:
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(512)
            if not chunk:
                raise ConnectionError(f"closed before the greeting ({line[:60]!r})")
            line += chunk
        elapsed = (time.perf_counter() - t0) * 1000
    if not line.startswith(b"220"):
        raise ConnectionError(f"greeting was {line[:60]!r}")
    return elapsed


def main(argv: list[str]) -> int:
    host, port, count = argv[0], int(argv[1]), int(argv[2])
    source = argv[3] if len(argv) > 3 and argv[3] != "-" else None
    gap = float(argv[4]) if len(argv) > 4 else 0.005
    samples = []
    try:
        for _ in range(count):
            samples.append(greeting_ms(host, port, source))
            time.sleep(gap)  # a trickle of new sessions, not a load
    except OSError as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "ms": samples}))
        return 1
    print(json.dumps({"ms": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
