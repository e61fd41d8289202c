"""A real MTA relays to Blackhole: a private Postfix, its log as the witness.

Postfix is what many users point at Blackhole, and its log says plainly what
its SMTP client made of each answer (status=sent / deferred, the reply text,
the TLS summary). These tests prove the harness in tests/postfixrelay.py on
today's server: a plain relay, a relay over mandatory STARTTLS, and a
deferral followed by the retry that delivers.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from blackhole.protocol.replies import BOUNCES
from tests.e2e import Factory, assert_clean_log, start
from tests.postfixrelay import PostfixRelay, RelaySettings, relay
from tests.proctools import alive, children

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="a private Postfix instance needs root (CI runs as root)"
)

SENDER = "sender@example.com"
MESSAGE = "From: sender@example.com\nTo: rcpt@example.net\nSubject: relayed\n\nHello.\n"
QUEUED = re.compile(r"250 2\.0\.0 OK: queued as \S+")

Relay = Callable[..., PostfixRelay]


@pytest.fixture
def postfix() -> Iterator[Relay]:
    """``postfix(port, **settings)``: a started private Postfix relaying to ``port``."""
    with ExitStack() as stack:

        def make(port: int, **settings: object) -> PostfixRelay:
            return stack.enter_context(relay(RelaySettings(port, **settings)))  # type: ignore[arg-type]

        yield make


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where connections are refused until a server binds it.

    The socket is bound but never listens, so the kernel answers RST; it keeps
    the port from being handed to anyone else meanwhile, and SO_REUSEADDR on
    both sides lets Blackhole bind (and listen on) the same port later.
    """
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@as_root
def test_postfix_relays_a_message_and_logs_the_queue_id(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\n")
    port = server.port()
    with relay(RelaySettings(port)) as postfix:
        postfix.send(SENDER, ["accept@example.net"], MESSAGE)
        [attempt] = postfix.wait_for("accept@example.net", "sent")
        assert attempt.relay == f"127.0.0.1[127.0.0.1]:{port}"
        assert attempt.dsn == "2.0.0"
        assert QUEUED.fullmatch(attempt.text), attempt.line
        assert not [line for line in postfix.log_lines() if "TLS connection" in line]
        assert postfix.problems() == []
        master, root = postfix.master_pid, postfix.root
    # The instance leaves nothing behind: no process, no files.
    assert master is not None and not alive(master)
    assert not root.exists()
    assert_clean_log(server)


@as_root
@pytest.mark.parametrize("level", ["may", "encrypt"])
def test_postfix_relays_over_starttls(
    server_factory: Factory,
    tmp_path: Path,
    postfix: Relay,
    cert_pair: tuple[Path, Path],
    level: str,
) -> None:
    # "may" is opportunistic TLS, what most relays do; "encrypt" refuses to
    # deliver without it. Neither verifies the certificate, so a self-signed
    # one is accepted (RFC 3207 section 4.1 leaves that decision to the client).
    cert, key = cert_pair
    server = start(
        server_factory, tmp_path, f"listen = 127.0.0.1:0\ntls_cert = {cert}\ntls_key = {key}\n"
    )
    port = server.port("smtp")
    pf = postfix(port, tls_security_level=level)
    pf.send(SENDER, ["tls@example.net"], MESSAGE)
    [attempt] = pf.wait_for("tls@example.net", "sent")
    assert QUEUED.fullmatch(attempt.text), attempt.line
    established = [line for line in pf.log_lines() if "TLS connection established to" in line]
    assert established, pf.log_text()
    assert re.search(
        rf"established to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}: TLSv1\.[23] ", established[0]
    )
    assert pf.problems() == []
    assert_clean_log(server)


@as_root
def test_postfix_logs_blackholes_bounce_reply(
    server_factory: Factory, tmp_path: Path, postfix: Relay
) -> None:
    # The switch asks for one of the classic bounces at random: a 4xx must
    # leave the message deferred, a 5xx bounced, each with the reply's text.
    server = start(server_factory, tmp_path, "listen = 127.0.0.1:0\n")
    pf = postfix(server.port())
    pf.send(SENDER, ["bounce@example.net"], "X-Blackhole-Mode: bounce\n" + MESSAGE)
    first = pf.wait_for("bounce@example.net", "deferred", "bounced")[0]
    said = re.fullmatch(
        r"host 127\.0\.0\.1\[127\.0\.0\.1\] said: (\d{3}) (\d\.\d\.\d) (.*)"
        r" \(in reply to end of DATA command\)",
        first.text,
    )
    assert said is not None, first.line
    code, enhanced, text = int(said[1]), said[2], said[3]
    assert any((b.code, b.enhanced, b.text) == (code, enhanced, text) for b in BOUNCES), said[0]
    assert first.status == ("deferred" if code < 500 else "bounced")
    assert first.dsn == enhanced
    assert pf.problems() == []
    assert_clean_log(server)


@as_root
def test_postfix_defers_while_blackhole_is_down_then_delivers(
    server_factory: Factory, tmp_path: Path, postfix: Relay
) -> None:
    with refused_port() as port:
        pf = postfix(port)
        pf.send(SENDER, ["retry@example.net"], MESSAGE)
        [deferred] = pf.wait_for("retry@example.net", "deferred")
        assert deferred.relay == "none"
        assert deferred.dsn == "4.4.1"
        assert "Connection refused" in deferred.text
        server = start(server_factory, tmp_path, f"listen = 127.0.0.1:{port}\nworkers = 2\n")
    pf.flush()
    attempts = pf.wait_for("retry@example.net", "sent")
    assert attempts[0].status == "deferred"
    assert attempts[-1].status == "sent"
    assert attempts[-1].relay == f"127.0.0.1[127.0.0.1]:{port}"
    assert QUEUED.fullmatch(attempts[-1].text), attempts[-1].line
    assert len({a.queue_id for a in attempts}) == 1  # the same queued message, retried
    assert pf.problems() == []
    assert_clean_log(server)


def test_relay_settings_follow_postfix_time_rules() -> None:
    # postconf(5): queue_run_delay <= minimal_backoff_time <= maximal_backoff_time.
    with pytest.raises(ValueError, match="queue_run_delay"):
        RelaySettings(2525, queue_run_delay=2, minimal_backoff_time=1)
    with pytest.raises(ValueError, match="tls_security_level"):
        RelaySettings(2525, tls_security_level="dane")


@as_root
def test_an_instance_that_postfix_stop_cannot_reach_is_killed_and_removed() -> None:
    with relay(RelaySettings(2525)) as pf:
        master = pf.master_pid
        assert master is not None
        pids = [master, *children(master)]
        # `postfix stop` now fails (it cannot chdir to the queue), as it would
        # for a test that broke its instance: stop() must kill it by pid.
        (pf.config_dir / "main.cf").write_text(f"queue_directory = {pf.root}/missing\n")
    assert not [pid for pid in pids if alive(pid)]
    assert not pf.root.exists()
