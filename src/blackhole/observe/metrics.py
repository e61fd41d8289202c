"""The Prometheus exposition of OBSERVE.md "Metrics", over a ``Figures`` source.

A custom collector rather than prometheus-client's own Counter objects: the
counts already live in the shared region (``observe.tally``) and are summed at
scrape time, so there is nothing to keep a second copy of. Each scrape calls
``source()`` once, so every metric of one exposition comes from the same
moment. ``render(source)`` gives the text for ``GET /metrics``.

Label values are bounded by construction: listeners and verbs by the layout,
codes by 200-599, rules by the rule slots, restart reasons by the supervisor's
fixed set. Reply pairs (verb, code) that never occurred are left out rather
than exported as zeros, which keeps a scrape small (20 verbs x 400 codes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from blackhole.observe.snapshot import Figures, Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    edges = [*(repr(bound) for bound in histogram.bounds), "+Inf"]
    return [(edge, float(count)) for edge, count in zip(edges, histogram.cumulative, strict=True)]


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


class BlackholeCollector(Collector):
    def __init__(self, source: Callable[[], Figures]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        figures = self._source()
        snap = figures.snapshot

        connections = _counter("blackhole_connections_total", "Connections accepted.", ["listener"])
        sessions = GaugeMetricFamily(
            "blackhole_sessions", "Sessions open now.", labels=["listener"]
        )
        message_bytes = _counter(
            "blackhole_message_bytes_total", "Bytes of message data received.", ["listener"]
        )
        for listener, value in snap.connections().items():
            connections.add_metric([listener], value)
        for listener, value in snap.sessions_open().items():
            sessions.add_metric([listener], value)
        for listener, value in snap.message_bytes().items():
            message_bytes.add_metric([listener], value)
        yield from (connections, sessions)

        commands = _counter("blackhole_commands_total", "Command lines received.", ["verb"])
        for verb, value in snap.commands().items():
            commands.add_metric([verb], value)
        yield commands

        replies = _counter("blackhole_replies_total", "Replies sent.", ["verb", "code"])
        for (verb, code), value in snap.replies().items():
            replies.add_metric([verb, str(code)], value)
        yield replies

        messages = _counter(
            "blackhole_messages_total", "Transactions ended, by outcome.", ["listener", "outcome"]
        )
        for (listener, outcome), value in snap.messages().items():
            messages.add_metric([listener, outcome], value)
        yield from (messages, message_bytes)

        size = HistogramMetricFamily("blackhole_message_size_bytes", "Message sizes.")
        histogram = snap.size_histogram()
        size.add_metric([], _buckets(histogram), histogram.sum)
        yield size

        reply_seconds = HistogramMetricFamily(
            "blackhole_reply_seconds",
            "Server time from a complete command to its reply, injected delays excluded.",
            labels=["verb"],
        )
        for verb, histogram in snap.reply_histograms().items():
            reply_seconds.add_metric([verb], _buckets(histogram), histogram.sum)
        yield reply_seconds

        delays = _counter(
            "blackhole_injected_delay_seconds_total", "Seconds of injected delay.", ["rule"]
        )
        actions = _counter("blackhole_rule_actions_total", "Times a rule acted.", ["rule"])
        for rule, figures_of_rule in figures.rules.items():
            delays.add_metric([rule], figures_of_rule.delay_seconds)
            # ``mode`` (config and switch delays) is no rule and never acts,
            # unless a rule happens to be called that.
            if rule != "mode" or figures_of_rule.actions:
                actions.add_metric([rule], figures_of_rule.actions)
        yield delays

        tls = _counter("blackhole_tls_handshakes_total", "TLS handshakes.", ["listener", "result"])
        for (listener, result), value in snap.tls().items():
            tls.add_metric([listener, result], value)
        yield tls

        tls_seconds = HistogramMetricFamily(
            "blackhole_tls_handshake_seconds", "Time of successful TLS handshakes."
        )
        histogram = snap.tls_histogram()
        tls_seconds.add_metric([], _buckets(histogram), histogram.sum)
        yield tls_seconds

        auth = _counter("blackhole_auth_total", "AUTH attempts.", ["mechanism", "result"])
        for (mechanism, result), value in snap.auth().items():
            auth.add_metric([mechanism, result], value)
        yield from (auth, actions)

        workers = GaugeMetricFamily("blackhole_workers", "Worker processes serving now.")
        workers.add_metric([], figures.workers)
        restarts = _counter(
            "blackhole_worker_restarts_total", "Workers replaced, by reason.", ["reason"]
        )
        for reason, value in sorted(snap.restarts().items()):
            restarts.add_metric([reason], value)
        yield from (workers, restarts)


def render(source: Callable[[], Figures]) -> bytes:
    """The text exposition (format 0.0.4) of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BlackholeCollector(source))
    return generate_latest(registry)
