"""The ``GET /stats`` document of OBSERVE.md, from ``Figures``."""

from __future__ import annotations

from typing import Any

from blackhole.observe.snapshot import Figures


def stats(figures: Figures) -> dict[str, Any]:
    snap = figures.snapshot
    return {
        "uptime": round(figures.uptime, 3),
        "workers": figures.workers,
        "sessions_open": sum(snap.sessions_open().values()),
        "connections": sum(snap.connections().values()),
        "messages": snap.message_totals(),
        "bytes": sum(snap.message_bytes().values()),
        # JSON object keys are strings: "250", "451"...
        "replies": {str(code): value for code, value in snap.replies_by_code().items()},
        "tls": snap.tls_totals(),
        "rules": {
            name: rule.hits for name, rule in figures.rules.items() if name != "mode" or rule.hits
        },
    }
