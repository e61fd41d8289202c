"""The Prometheus exposition: names and labels of OBSERVE.md, valid for promtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blackhole.observe.counters import Counters
from blackhole.observe.layout import (
    ACCEPTED,
    DEFERRED,
    MODE_RULE_SLOT,
    RESTART_REASONS,
    Layout,
    verb_index,
)
from blackhole.observe.metrics import render
from blackhole.observe.snapshot import Figures, RuleFigures, Snapshot

LAYOUT = Layout(("127.0.0.1:2525", "smtps"))


def busy_figures() -> Figures:
    counters = Counters.private(LAYOUT)
    counters.connection(0)
    counters.connection(1)
    counters.command(verb_index("EHLO"))
    counters.command(verb_index("FOO"))
    counters.reply(verb_index("EHLO"), 250, 0.0002)
    counters.reply(verb_index("FOO"), 502, 0.0001)
    counters.message(0, ACCEPTED, 2048)
    counters.message(0, DEFERRED, None)
    counters.tls(1, ok=True, seconds=0.004)
    counters.tls(1, ok=False, seconds=0.0)
    counters.auth(0, ok=True)
    counters.delay(MODE_RULE_SLOT, 2.5)
    values = [counters.value(i) for i in range(LAYOUT.size)]
    values[LAYOUT.worker_restarts + RESTART_REASONS.index("killed")] = 1  # the supervisor's
    return Figures(
        snapshot=Snapshot(LAYOUT, tuple(values)),
        rules={"mode": RuleFigures(0, 0, 2.5), "greylist": RuleFigures(7, 3, 0.0)},
        workers=2,
        uptime=12.0,
    )


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_names_types_and_labels_are_those_of_observe_md() -> None:
    text = render(busy_figures)
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    expected = {
        "blackhole_connections": ("counter", {"listener"}),
        "blackhole_sessions": ("gauge", {"listener"}),
        "blackhole_commands": ("counter", {"verb"}),
        "blackhole_replies": ("counter", {"verb", "code"}),
        "blackhole_messages": ("counter", {"listener", "outcome"}),
        "blackhole_message_bytes": ("counter", {"listener"}),
        "blackhole_message_size_bytes": ("histogram", {"le"}),
        "blackhole_reply_seconds": ("histogram", {"verb", "le"}),
        "blackhole_injected_delay_seconds": ("counter", {"rule"}),
        "blackhole_tls_handshakes": ("counter", {"listener", "result"}),
        "blackhole_tls_handshake_seconds": ("histogram", {"le"}),
        "blackhole_auth": ("counter", {"mechanism", "result"}),
        "blackhole_rule_actions": ("counter", {"rule"}),
        "blackhole_workers": ("gauge", set()),
        "blackhole_worker_restarts": ("counter", {"reason"}),
    }
    assert set(families) == set(expected)
    for name, (kind, labels) in expected.items():
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            assert set(sample.labels) <= labels, (name, sample.labels)


def test_values() -> None:
    found = samples(render(busy_figures))
    assert found["blackhole_connections_total", frozenset({("listener", "smtps")})] == 1
    assert found["blackhole_commands_total", frozenset({("verb", "unknown")})] == 1
    assert found["blackhole_replies_total", frozenset({("verb", "unknown"), ("code", "502")})] == 1
    outcome = frozenset({("listener", "127.0.0.1:2525"), ("outcome", "deferred")})
    assert found["blackhole_messages_total", outcome] == 1
    assert found["blackhole_message_size_bytes_count", frozenset()] == 1
    assert found["blackhole_message_size_bytes_sum", frozenset()] == 2048
    assert found["blackhole_message_size_bytes_bucket", frozenset({("le", "4096.0")})] == 1
    assert found["blackhole_message_size_bytes_bucket", frozenset({("le", "1024.0")})] == 0
    assert found["blackhole_injected_delay_seconds_total", frozenset({("rule", "mode")})] == 2.5
    assert found["blackhole_rule_actions_total", frozenset({("rule", "greylist")})] == 3
    assert ("blackhole_rule_actions_total", frozenset({("rule", "mode")})) not in found
    assert found["blackhole_workers", frozenset()] == 2
    assert found["blackhole_worker_restarts_total", frozenset({("reason", "killed")})] == 1
    tls = frozenset({("listener", "smtps"), ("result", "failed")})
    assert found["blackhole_tls_handshakes_total", tls] == 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
@pytest.mark.parametrize("figures", ["busy", "empty"])
def test_promtool_check_metrics(figures: str) -> None:
    if figures == "busy":
        text = render(busy_figures)
    else:
        text = render(lambda: Figures(Snapshot.empty(LAYOUT), {}, 0, 0.0))
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
