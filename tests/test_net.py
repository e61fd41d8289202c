"""host:port as the logs, messages and start-up line write it."""

from __future__ import annotations

import pytest

from blackhole.config.model import Listener
from blackhole.net import host_port


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("127.0.0.1", 25, "127.0.0.1:25"),
        ("mail.example.com", 2525, "mail.example.com:2525"),
        ("::1", 25, "[::1]:25"),
        ("::", 465, "[::]:465"),
        ("fe80::1%eth0", 25, "[fe80::1%eth0]:25"),
    ],
)
def test_host_port(host: str, port: int, text: str) -> None:
    assert host_port(host, port) == text


def test_listener_uses_it() -> None:
    assert str(Listener("::1", 4650, tls=True)) == "smtps://[::1]:4650"
