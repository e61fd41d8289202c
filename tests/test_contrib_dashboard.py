"""contrib/: the Grafana dashboard asks only for metrics the server exports,
and the Prometheus scrape example is a valid configuration."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blackhole.observe.layout import SESSION_ENDS, Layout
from blackhole.observe.meter import SessionMeter, verb_slots
from blackhole.observe.metrics import render
from blackhole.observe.snapshot import Figures, RuleFigures
from blackhole.observe.tally import Tally
from blackhole.protocol import replies as R
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived
from blackhole.protocol.settings import SessionSettings

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
_NAME = re.compile(r"\bblackhole_[a-z_]+\b")


def real_exposition() -> set[str]:
    """Sample names of a scrape over a real region, counted by a real session."""
    layout = Layout(["127.0.0.1:2525"])
    tally = Tally.create(layout, 2)
    try:
        counters = tally.counters(tally.acquire())
        meter = SessionMeter(counters, 0, verb_slots(counters.layout))
        core = SMTPConnection(SessionSettings())
        core.meter = meter
        core.start()
        core.receive_data(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
        core.receive_data(b"Subject: s\r\n\r\nbody\r\n.\r\n")
        event = core.next_event()
        assert isinstance(event, MessageReceived)
        meter.size = event.size
        core.send(R.queued("Q1"))
        core.receive_data(b"QUIT\r\n")
        core.data_to_send()
        counters.tls(0, ok=True, seconds=0.003)
        meter.end(SESSION_ENDS.index("quit"))
        figures = Figures(tally.snapshot(), {"full": RuleFigures(1, 1, 0.0)}, 1, 1.0)
        text = render(lambda: figures).decode()
    finally:
        tally.close()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def test_every_metric_of_the_dashboard_is_exported() -> None:
    dashboard = json.loads((CONTRIB / "grafana" / "blackhole.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    used = {name for expr in expressions for name in _NAME.findall(expr)}
    assert used, "the dashboard queries no blackhole_ metric"
    assert used <= real_exposition(), used - real_exposition()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_the_prometheus_example_is_valid() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(CONTRIB / "prometheus" / "prometheus.yml")],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
