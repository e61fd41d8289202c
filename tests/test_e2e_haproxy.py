"""Blackhole behind a real HAProxy (TCP mode, send-proxy and send-proxy-v2).

The clients are real (smtplib) and bound to 127.0.0.5, while HAProxy
connects to the server from 127.0.0.1: only a server that reads the header
sees 127.0.0.5, which a ``client = "127.0.0.5"`` rule answers at RCPT with a
distinctive 451, and which the debug log names. SMTPS is passed through, not
terminated: HAProxy sends the header and the ClientHello in one segment.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import assert_clean_log, running
from tests.haproxy import Frontend, HAProxy, haproxy
from tests.serverproc import ServerProcess
from tests.smtpclient import insecure_context

CLIENT = "127.0.0.5"
SEEN = "proxied client seen"
RULES = f"""
[[rule]]
name = "proxied"
at = "rcpt"
client = "{CLIENT}"
reply = "451 4.7.1 {SEEN}"
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, cert_pair: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("haproxy-server")
    rules = directory / "rules.toml"
    rules.write_text(RULES)
    cert, key = cert_pair
    text = (
        "listen = 127.0.0.1:0 proxy=yes\n"
        "tls_listen = 127.0.0.1:0 proxy=yes\n"
        f"tls_cert = {cert}\ntls_key = {key}\n"
        f"rules = {rules}\nworkers = 1\ntimeout = 20\n"
    )
    with running(directory, text, "-d") as server:
        yield server
    assert_clean_log(server)


@pytest.fixture(scope="module")
def proxy(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    smtp, smtps = server.port("smtp"), server.port("smtps")
    frontends = [
        Frontend("v1", smtp, "send-proxy"),
        Frontend("v2", smtp, "send-proxy-v2"),
        Frontend("v1_tls", smtps, "send-proxy"),
        Frontend("v2_tls", smtps, "send-proxy-v2"),
    ]
    with haproxy(tmp_path_factory.mktemp("haproxy"), frontends) as running_proxy:
        yield running_proxy


def send(smtp: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
    with smtp:
        smtp.ehlo("client.example")
        try:
            return smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: t\r\n\r\nhi\r\n")
        except smtplib.SMTPRecipientsRefused as refused:
            return {k: (v[0], v[1]) for k, v in refused.recipients.items()}


def connect(proxy: HAProxy, frontend: str, source: str) -> smtplib.SMTP:
    port = proxy.ports[frontend]
    if frontend.endswith("_tls"):
        return smtplib.SMTP_SSL(
            "127.0.0.1", port, source_address=(source, 0), context=insecure_context(), timeout=10
        )
    return smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=10)


@pytest.mark.parametrize("frontend", ["v1", "v2", "v1_tls", "v2_tls"])
def test_the_server_sees_the_client_behind_haproxy(
    server: ServerProcess, proxy: HAProxy, frontend: str
) -> None:
    smtp = connect(proxy, frontend, CLIENT)
    assert smtp.sock is not None
    client_port = smtp.sock.getsockname()[1]
    assert send(smtp) == {"b@example.com": (451, f"4.7.1 {SEEN}".encode())}
    version = 2 if frontend.startswith("v2") else 1
    server.wait_for(
        rf"PROXY v{version} header: client 127\.0\.0\.5:{client_port} via 127\.0\.0\.1:"
    )


@pytest.mark.parametrize("frontend", ["v1", "v2_tls"])
def test_another_client_behind_the_same_haproxy_is_not_matched(
    server: ServerProcess, proxy: HAProxy, frontend: str
) -> None:
    smtp = connect(proxy, frontend, "127.0.0.6")
    assert send(smtp) == {}
    server.wait_for(r"PROXY v\d header: client 127\.0\.0\.6:")


def test_starttls_behind_haproxy(server: ServerProcess, proxy: HAProxy) -> None:
    smtp = connect(proxy, "v2", CLIENT)
    smtp.ehlo("client.example")
    smtp.starttls(context=insecure_context())
    assert send(smtp) == {"b@example.com": (451, f"4.7.1 {SEEN}".encode())}
