"""Rules over real sockets: a reply at every stage, each action as a client sees it."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import Factory
from tests.rulesrv import rules_server
from tests.serverproc import ServerProcess, start_server
from tests.smtpclient import Client


def rule(name: str, at: str, body: str) -> str:
    return f'[[rule]]\nname = "{name}"\nat = "{at}"\n{body}\n'


def test_reply_at_rcpt_for_one_domain(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory,
        tmp_path,
        rule("full", "rcpt", 'recipient = "*@full.example"\nreply = "452 4.2.2 Mailbox full"'),
    )
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<x@full.example>", 452, "4.2.2")
    client.expect("RCPT TO:<x@ok.example>", 250)
    server.wait_for(r"\[w1-\d+\] rule full at rcpt: reply 452 Mailbox full")


# The commands that reach each stage, after EHLO (connect and helo aside);
# the rule's reply is what the last one gets.
STAGES = {
    "helo": [],
    "mail": [],
    "rcpt": ["MAIL FROM:<a@example.com>"],
    "data": ["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"],
    "rset": [],
    "noop": [],
    "vrfy": [],
    "quit": [],
    "command": [],
}
LAST = {
    "helo": "EHLO c.example",
    "mail": "MAIL FROM:<a@example.com>",
    "rcpt": "RCPT TO:<b@example.com>",
    "data": "DATA",
    "rset": "RSET",
    "noop": "NOOP",
    "vrfy": "VRFY postmaster",
    "quit": "QUIT",
    "command": "NOOP",
}


@pytest.fixture(scope="module")
def every_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("stages")
    text = "".join(
        rule(stage, stage, f'helo = "stage-{stage}"\nreply = "554 5.7.1 stopped at {stage}"')
        for stage in (*STAGES, "content", "end")
        if stage not in ("helo", "command")
    )
    text += rule("helo", "helo", 'helo = "stage-helo"\nreply = "554 5.7.1 stopped at helo"')
    text += rule(
        "command", "command", 'helo = "stage-command"\nreply = "554 5.7.1 stopped at command"'
    )
    path = directory / "rules.toml"
    path.write_text(text)
    conf = directory / "b.conf"
    conf.write_text(
        f"mailname = mx.test\nlisten = 127.0.0.1:0\nworkers = 1\ngrace_period = 1\nrules = {path}\n"
    )
    server = start_server(conf)
    yield server
    server.stop()


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_reply_at_each_command_stage(every_stage: ServerProcess, stage: str) -> None:
    client = Client.connect(every_stage.port())
    first = client.cmd(f"EHLO stage-{stage}")
    if stage == "helo":
        assert (first.code, first.text) == (554, "5.7.1 stopped at helo")
        return
    for line in STAGES[stage]:
        assert client.cmd(line).code < 400, line
    reply = client.cmd(LAST[stage])
    assert (reply.code, reply.text) == (554, f"5.7.1 stopped at {stage}")


@pytest.mark.parametrize("stage", ["content", "end"])
def test_a_reply_at_content_and_end(every_stage: ServerProcess, stage: str) -> None:
    client = Client.connect(every_stage.port())
    client.expect(f"EHLO stage-{stage}", 250)
    client.mail_rcpt()
    client.expect("DATA", 354)
    client.send(b"Subject: t\r\n\r\nhello\r\n.\r\n")
    reply = client.reply()
    assert (reply.code, reply.text) == (554, f"5.7.1 stopped at {stage}")


def test_a_reply_at_connect_replaces_the_greeting(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory,
        tmp_path,
        rule("closed", "connect", 'client = "127.0.0.0/8"\nreply = "554 5.7.1 stopped at connect"'),
    )
    client = Client.connect(server.port(), greet=False)
    reply = client.reply()
    assert (reply.code, reply.text) == (554, "5.7.1 stopped at connect")
    client.expect("EHLO c.example", 503)  # RFC 5321 3.1: only QUIT after a 554 greeting
    client.expect("QUIT", 221)


def test_delay_at_connect_comes_before_the_greeting(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, rule("late", "connect", "delay = 1"))
    started = time.monotonic()
    Client.connect(server.port())
    assert time.monotonic() - started >= 1.0


def test_delay_costs_no_other_session(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory, tmp_path, rule("slow", "helo", 'helo = "slow"\ndelay = 2')
    )
    slow = Client.connect(server.port())
    started = time.monotonic()
    slow.send("EHLO slow\r\n")
    fast = Client.connect(server.port())
    fast.expect("EHLO fast", 250)
    fast_done = time.monotonic() - started
    assert slow.reply().code == 250
    slow_done = time.monotonic() - started
    assert slow_done >= 2.0
    assert fast_done < slow_done  # answered while the slow one waited


def test_close_sends_421_then_closes(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, rule("bye", "mail", "close = true"))
    client = Client.connect(server.port())
    client.expect("EHLO c", 250)
    client.expect("MAIL FROM:<a@example.com>", 421, "4.3.2")
    assert client.sock.recv(100) == b""


def test_drop_closes_without_a_reply(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, rule("cut", "rcpt", "drop = true"))
    client = Client.connect(server.port())
    client.expect("EHLO c", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.send("RCPT TO:<b@example.com>\r\n")
    assert client.sock.recv(100) == b""  # FIN, no reply


def test_reset_is_seen_as_connection_reset(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, rule("rst", "data", "reset = true"))
    client = Client.connect(server.port())
    client.expect("EHLO c", 250)
    client.mail_rcpt()
    client.send("DATA\r\n")
    with pytest.raises(ConnectionResetError):
        client.sock.recv(100)


def test_hang_ends_at_the_clients_timeout(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, rule("stall", "rcpt", "hang = true"))
    client = Client.connect(server.port(), timeout=1.0)
    client.expect("EHLO c", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.send("RCPT TO:<b@example.com>\r\n")
    with pytest.raises(TimeoutError):
        client.sock.recv(100)


def test_hang_ends_at_the_servers_idle_timeout(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory, tmp_path, rule("stall", "noop", "hang = true"), "timeout = 1\n"
    )
    client = Client.connect(server.port(), timeout=10)
    client.send("NOOP\r\n")
    assert client.sock.recv(100) == b""  # closed at 1 s, without a 421


def test_a_zero_delay_rule_exempts_from_the_rules_after_it(
    server_factory: Factory, tmp_path: Path
) -> None:
    rules = rule("vip", "rcpt", 'recipient = "vip@*"\ndelay = 0') + rule(
        "full", "rcpt", 'reply = "452 4.2.2 Mailbox full"'
    )
    server = rules_server(server_factory, tmp_path, rules)
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<vip@example.com>", 250)
    client.expect("RCPT TO:<x@example.com>", 452, "4.2.2")


def _message_then(server: ServerProcess, timeout: float, after: str) -> Client:
    """A message sent whole, with ``after`` pipelined behind it."""
    client = Client.connect(server.port(), timeout=timeout)
    client.expect("EHLO c", 250)
    client.mail_rcpt()
    client.expect("DATA", 354)
    client.send(f"Subject: x\r\n\r\nhi\r\n.\r\n{after}")
    return client


def test_hang_at_end_never_answers_the_message(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, rule("stall", "end", "hang = true"))
    client = _message_then(server, 1.0, "NOOP\r\n")
    with pytest.raises(TimeoutError):
        client.sock.recv(100)


def test_hang_at_end_ends_when_the_client_hangs_up(server_factory: Factory, tmp_path: Path) -> None:
    # Nothing is owed to a client that a rule hangs: its FIN ends the session
    # at once, with the commands it pipelined behind the message (which will
    # never be answered) as without them, as a hang at any other stage does.
    server = rules_server(
        server_factory, tmp_path, rule("stall", "end", "hang = true"), "timeout = 60\n"
    )
    client = _message_then(server, 30, "QUIT\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.sock.recv(100) == b""  # closed now, not after the 60 s timeout
    assert server.stop() == 0  # no session left for the stop to wait on
    assert "1 messages (0 accepted, 0 rejected, 0 deferred, 1 dropped)" in server.text()


def test_tarpit_trickles_every_reply(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, rule("tar", "helo", "tarpit = 40"))
    client = Client.connect(server.port())
    client.send("EHLO c.example\r\n")
    reads = []
    data = b""
    while not re.search(rb"(^|\n)250 [^\r]*\r\n$", data):
        chunk = client.sock.recv(4096)
        assert chunk
        reads.append(chunk)
        data += chunk
    assert len(reads) > 3  # several small pieces, not one write
    assert all(len(r) <= 4 for r in reads)
    # Later replies too.
    client.send("NOOP\r\n")
    started = time.monotonic()
    got = b""
    while not got.endswith(b"\r\n"):
        got += client.sock.recv(4096)
    assert got.startswith(b"250")
    assert time.monotonic() - started >= (len(got) - 4) / 40


def test_content_drop_after_bytes(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory, tmp_path, rule("cut-big", "content", "after_bytes = 1000\ndrop = true")
    )
    client = Client.connect(server.port())
    client.expect("EHLO c", 250)
    client.mail_rcpt()
    client.expect("DATA", 354)
    client.send(b"Subject: small\r\n\r\n" + b"x" * 100 + b"\r\n")
    client.send(b"y" * 2000 + b"\r\n")
    assert client.sock.recv(100) == b""


def starttls_rule(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path], name: str, body: str
) -> ServerProcess:
    """A server with a certificate (so that STARTTLS is offered) and one starttls rule."""
    cert, key = cert_pair
    return rules_server(
        server_factory,
        tmp_path,
        rule(name, "starttls", body),
        f"tls_cert = {cert}\ntls_key = {key}\n",
    )


def test_starttls_fail_is_a_handshake_error(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    server = starttls_rule(server_factory, tmp_path, cert_pair, "tlsfail", 'tls = "fail"')
    smtp = smtplib.SMTP("127.0.0.1", server.port(), timeout=10)
    smtp.ehlo()
    with pytest.raises(ssl.SSLError, match="handshake failure"):
        smtp.starttls(context=ssl._create_unverified_context())  # noqa: S323


def test_starttls_hang_is_a_handshake_timeout(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    server = starttls_rule(server_factory, tmp_path, cert_pair, "tlshang", 'tls = "hang"')
    smtp = smtplib.SMTP("127.0.0.1", server.port(), timeout=1)
    smtp.ehlo()
    with pytest.raises(TimeoutError):
        smtp.starttls(context=ssl._create_unverified_context())  # noqa: S323


@pytest.mark.parametrize("stage", ["rcpt", "data", "noop"])
def test_size_holds_from_mail_on_with_the_declared_size(
    server_factory: Factory, tmp_path: Path, stage: str
) -> None:
    # RULES.md: size is usable from mail, at every later stage: SIZE= until
    # the end of the data.
    big = rule("big", stage, 'size = "1000-"\nreply = "452 4.3.1 too big for now"')
    server = rules_server(server_factory, tmp_path, big)
    last = {"rcpt": "RCPT TO:<b@example.com>", "data": "DATA", "noop": "NOOP"}[stage]
    for declared, code in ((" SIZE=50000", 452), (" SIZE=10", 250), ("", 250)):
        client = Client.connect(server.port())
        client.expect("EHLO c.example", 250)
        client.expect(f"MAIL FROM:<a@example.com>{declared}", 250)
        if stage == "data":
            client.expect("RCPT TO:<b@example.com>", 250)
        client.expect(last, code if stage != "data" or code == 452 else 354)
        client.close()


def test_a_positive_reply_other_than_220_at_starttls_starts_no_tls(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    # RFC 3207 4: a client starts TLS after a 220 only; a server that took
    # any 2xx for a go-ahead waited for a handshake that never came.
    server = starttls_rule(
        server_factory, tmp_path, cert_pair, "odd", 'reply = "250 2.0.0 not now"'
    )
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.expect("STARTTLS", 250)
    client.expect("NOOP", 250)  # still plaintext SMTP
