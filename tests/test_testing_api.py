"""``blackhole.testing.Blackhole`` against the real server, with real clients."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import time
from pathlib import Path

import pytest

from blackhole.config.classic import parse_config
from blackhole.server.tls import generate_self_signed
from blackhole.testing import Blackhole, ConfigError, ControlError, StartError, configtext
from blackhole.testing.process import ServerProcess
from tests.proctools import wait_until
from tests.smtpclient import Client

FULL = {"name": "full", "at": "rcpt", "recipient": "*@full.example", "reply": "452 4.2.2 Full"}


@pytest.fixture(scope="module")
def bh() -> Blackhole:
    with Blackhole(lmtp=True) as server:
        yield server  # type: ignore[misc]


@pytest.fixture(autouse=True)
def clean(bh: Blackhole) -> None:
    bh.clear_rules()
    bh.reset()


def send(port: int, to: list[str], tls: ssl.SSLContext | None = None) -> dict[str, object]:
    """The refused recipients, as smtplib reports them (``{}``: all accepted)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        if tls is not None:
            client.starttls(context=tls)
        try:
            return dict(client.sendmail("a@example.com", to, "Subject: hi\r\n\r\nbody\r\n"))
        except smtplib.SMTPRecipientsRefused as refused:
            return dict(refused.recipients)


def test_serves_plain_starttls_smtps_and_lmtp_on_distinct_ephemeral_ports(bh: Blackhole) -> None:
    ports = {bh.port, bh.smtps_port, bh.lmtp_port}
    assert len(ports) == 3 and all(port > 1023 for port in ports)
    assert send(bh.port, ["b@example.com"]) == {}
    assert send(bh.port, ["b@example.com"], tls=bh.client_ssl_context()) == {}
    with smtplib.SMTP_SSL("127.0.0.1", bh.smtps_port, context=bh.client_ssl_context()) as c:
        assert c.sendmail("a@example.com", ["b@example.com"], "\r\nbody\r\n") == {}
    with smtplib.LMTP("127.0.0.1", bh.lmtp_port) as lmtp:
        assert lmtp.sendmail("a@example.com", ["b@example.com"], "\r\nbody\r\n") == {}


def test_client_context_checks_the_certificate(bh: Blackhole) -> None:
    """It trusts this server's own certificate, and a default context does not."""
    ctx = bh.client_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        smtplib.SMTP_SSL("127.0.0.1", bh.smtps_port, context=ssl.create_default_context()),
    ):
        pass


def test_rules_are_added_and_removed_at_run_time(bh: Blackhole) -> None:
    stored = bh.add_rule(FULL)
    assert stored["name"] == "full" and stored["source"] == "api"
    assert send(bh.port, ["x@full.example", "b@example.com"]) == {
        "x@full.example": (452, b"4.2.2 Full")
    }
    assert [rule["name"] for rule in bh.rules()] == ["full"]
    bh.remove_rule("full")
    assert send(bh.port, ["x@full.example"]) == {}
    assert bh.rules() == []


def test_a_rule_reaches_connections_open_before_it_on_a_server_without_rules() -> None:
    # OBSERVE.md: a posted rule is applied before the answer. A test's client
    # may well keep its connection (a pool, a fixture) across add_rule().
    with (
        Blackhole(workers=2) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client,
    ):
        client.ehlo("c.example")
        server.add_rule(FULL)
        assert client.mail("a@example.com")[0] == 250
        assert client.rcpt("x@full.example") == (452, b"4.2.2 Full")
        server.remove_rule("full")
        assert client.rcpt("x@full.example")[0] == 250


def test_a_rule_at_a_stage_no_rule_watched_reaches_open_connections(bh: Blackhole) -> None:
    bh.add_rule({"name": "helo", "at": "helo", "helo": "never.invalid", "reply": "550 no"})
    with smtplib.SMTP("127.0.0.1", bh.port, timeout=10) as client:
        client.ehlo("c.example")
        assert client.mail("a@example.com")[0] == 250
        bh.add_rule(FULL)
        assert client.rcpt("x@full.example") == (452, b"4.2.2 Full")
        tls = bh.client_ssl_context()
        client.rset()
        client.starttls(context=tls)  # the rules a session follows survive STARTTLS
        client.ehlo("c.example")
        bh.add_rule({"name": "tls-mail", "at": "mail", "reply": "451 4.3.0 later"})
        assert client.mail("a@example.com")[0] == 451


def test_a_rule_removed_mid_message_keeps_the_content_rules_still_due(bh: Blackhole) -> None:
    # "early" matches at 100 bytes (its hits show the server is past them) but
    # acts only after 1000 matches; "late" drops the message at 500 bytes.
    bh.add_rule({"name": "late", "at": "content", "after_bytes": 500, "drop": True})
    bh.add_rule({"name": "early", "at": "content", "after_bytes": 100, "after": 1000,
                 "reply": "451 4.3.0 never"})  # fmt: skip
    with socket.create_connection(("127.0.0.1", bh.port), timeout=10) as sock:
        client = Client(sock)
        client.reply()
        client.expect("EHLO c.example", 250)
        client.mail_rcpt()
        client.expect("DATA", 354)
        client.send("Subject: x\r\n\r\n" + "a" * 200 + "\r\n")
        hits = lambda: {r["name"]: r["hits"] for r in bh.rules()}["early"]  # noqa: E731
        wait_until(lambda: hits() == 1, what="the server past 100 bytes of content")
        bh.remove_rule("early")
        client.send("b" * 400 + "\r\n.\r\n")
        assert client.closed(timeout=10)  # "late" still dropped it at 500 bytes
        assert client.buf == b""


def test_control_errors_carry_the_api_message(bh: Blackhole) -> None:
    with pytest.raises(ControlError) as missing:
        bh.remove_rule("nope")
    assert missing.value.status == 404 and "nope" in str(missing.value)
    with pytest.raises(ControlError) as bad:
        bh.add_rule({"name": "x", "at": "nowhere", "reply": "450 no"})
    assert bad.value.status == 400 and bad.value.field == "at"
    bh.add_rule(FULL)
    with pytest.raises(ControlError) as twice:
        bh.add_rule(FULL)
    assert twice.value.status == 409
    with pytest.raises(ControlError) as long_name:
        bh.add_rule({**FULL, "name": "n" * 129})
    assert long_name.value.status == 400 and long_name.value.field == "name"
    # Refused by the HTTP layer, in plain text: still a ControlError.
    with pytest.raises(ControlError) as overlong:
        bh.remove_rule("n" * 9000)
    assert overlong.value.status == 400


def test_reset_forgets_rule_state(bh: Blackhole) -> None:
    """A greylisted triplet is new again after reset (POST /reset clears rule state)."""
    bh.add_rule({"name": "grey", "at": "rcpt", "greylist": "1h"})
    assert send(bh.port, ["b@example.com"])["b@example.com"][0] == 451  # type: ignore[index]
    bh.clear_rules()
    bh.add_rule({"name": "once", "at": "rcpt", "first": 1, "reply": "450 4.2.0 first"})
    assert send(bh.port, ["b@example.com"])["b@example.com"][0] == 450  # type: ignore[index]
    assert send(bh.port, ["b@example.com"]) == {}
    bh.reset()
    assert send(bh.port, ["b@example.com"])["b@example.com"][0] == 450  # type: ignore[index]


def test_stats_is_the_stats_document(bh: Blackhole) -> None:
    stats = bh.stats()
    assert stats["workers"] == 1
    assert set(stats["messages"]) == {"accepted", "rejected", "deferred", "dropped"}


def test_rules_given_at_start_are_api_rules() -> None:
    with Blackhole(tls=False, rules=[FULL]) as server:
        assert send(server.port, ["x@full.example"]) == {"x@full.example": (452, b"4.2.2 Full")}
        server.remove_rule("full")
        assert send(server.port, ["x@full.example"]) == {}


def test_options_are_config_keys() -> None:
    with Blackhole(tls=False, mode="bounce", max_message_size=100) as server:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(server.port, ["b@example.com"])
        assert refused.value.smtp_code // 100 in (4, 5)  # bounce: a random 4xx or 5xx
        with smtplib.SMTP("127.0.0.1", server.port) as client:
            client.ehlo()
            assert client.has_extn("size") and client.esmtp_features["size"] == "100"
        with pytest.raises(RuntimeError, match="tls=False"):
            _ = server.smtps_port
        with pytest.raises(RuntimeError, match="lmtp=True"):
            _ = server.lmtp_port


def test_option_values_are_written_as_the_config_file_spells_them(tmp_path: Path) -> None:
    events = tmp_path / "a#b.jsonl"
    settings = configtext.settings_for(
        {"auth_required": True, "forbidden_commands": ["VRFY", "EXPN"], "timeout": 5,
         "event_log": events},
        None, tls=None, lmtp=False, record=5,
    )  # fmt: skip
    text = configtext.render(settings)
    assert "auth_required = true\n" in text
    assert "forbidden_commands = VRFY, EXPN\n" in text
    assert f'event_log = "{events}"\n' in text
    assert parse_config(text).event_log == str(events)


def test_config_file_keys_are_replaced_by_options(tmp_path: Path) -> None:
    conf = tmp_path / "blackhole.conf"
    log = tmp_path / "blackhole.log"
    conf.write_text(
        f"listen = 10.0.0.1:25\nmode = bounce\nmailname = mx.example\nlog_file = {log}\n"
    )
    # The file's listen and log_file are the harness's to set (it reads the
    # server's output); its mode is replaced by the option.
    with Blackhole(config=conf, tls=False, mode="accept") as server:
        with smtplib.SMTP("127.0.0.1", server.port) as client:
            assert b"mx.example" in client.ehlo()[1]
        assert send(server.port, ["b@example.com"]) == {}
    assert not log.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mdoe": "bounce"}, "unknown key 'mdoe' (did you mean 'mode'?)"),
        ({"listen": ":25"}, "Blackhole sets listen itself"),
        ({"log_file": "x.log"}, "Blackhole sets log_file itself"),
        ({"mode": "sometimes"}, "mode"),
        ({"timeout": "x\ny"}, "a value is one line"),
    ],
)
def test_bad_options_fail_at_once_without_a_process(
    options: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*_args: object) -> None:
        raise AssertionError("a server was started to find out")

    monkeypatch.setattr(ServerProcess, "start", no_process)
    with pytest.raises((ConfigError, ValueError)) as failed:
        Blackhole(**options).start()
    assert message in str(failed.value)


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    # Valid for the loader, refused by the server at start-up: a certificate
    # and a key that each look right but are not a pair.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _ = generate_self_signed("127.0.0.1", tmp_path / "a")
    _, key = generate_self_signed("127.0.0.1", tmp_path / "b")
    with pytest.raises(StartError) as failed:
        Blackhole(tls=False, tls_cert=cert, tls_key=key).start()
    assert f"TLS certificate {cert} and key {key} do not match" in str(failed.value)


def test_not_running_is_a_clear_error() -> None:
    server = Blackhole()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
    assert repr(server) == "<Blackhole (not running)>"
    server.start()
    assert repr(server) == f"<Blackhole 127.0.0.1 smtp={server.port} smtps={server.smtps_port}>"
    with pytest.raises(RuntimeError, match="already running"):
        server.start()
    server.stop()
    server.stop()  # twice is fine
    assert not server.running


def test_wait_for_names_what_arrived_when_it_times_out(bh: Blackhole) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError) as late:
        bh.wait_for(messages=1, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    assert "expected 1 message within 0.3s; 0 arrived: nothing" in str(late.value)


def test_wait_for_async_lets_the_loop_run_and_times_out_the_same_way(bh: Blackhole) -> None:
    async def main() -> tuple[int, str]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        try:
            with pytest.raises(TimeoutError) as late:
                await bh.wait_for_async(messages=1, timeout=0.5)
        finally:
            task.cancel()
        return ticks, str(late.value)

    ticks, message = asyncio.run(main())
    assert ticks >= 5  # the loop went on while it waited
    assert "expected 1 message within 0.5s; 0 arrived: nothing" in message


@pytest.mark.parametrize(
    ("messages", "timeout", "error", "says"),
    [
        (-1, 5.0, ValueError, "messages must be 0 or more, not -1"),
        (1.5, 5.0, TypeError, "messages is a whole number, not 1.5"),
        ("2", 5.0, TypeError, "messages is a whole number, not '2'"),
        (1, None, TypeError, "timeout is a number of seconds, 0 or more, not None"),
        (10_001, 5.0, ValueError, "messages=10001 can never have arrived: record=10000 keeps"),
    ],
)
def test_a_wait_that_cannot_end_well_is_refused_at_once(
    bh: Blackhole, messages: object, timeout: object, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as refused:
        bh.wait_for(messages=messages, timeout=timeout)  # type: ignore[arg-type]
    assert str(refused.value).startswith(says)
    with pytest.raises(error):
        asyncio.run(bh.wait_for_async(messages=messages, timeout=timeout))  # type: ignore[arg-type]


def test_options_that_are_no_config_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="option workers: None is no config value"):
        Blackhole(workers=None).start()
    with pytest.raises(ValueError, match="start_timeout is a number of seconds over 0, not 0"):
        Blackhole(start_timeout=0)


def test_messages_are_the_records_oldest_first(bh: Blackhole) -> None:
    send(bh.port, ["b@example.com"], tls=bh.client_ssl_context())
    bh.add_rule(FULL)
    assert send(bh.port, ["x@full.example"]) != {}
    first, second = bh.wait_for(messages=2, timeout=5)
    assert first.recipients == ["b@example.com"] and first.sender == "a@example.com"
    assert first.reply.code == 250 and first.reply.enhanced == "2.0.0"
    assert first.tls is not None and first.tls["version"].startswith("TLS")
    assert first.headers["SUBJECT"] == "hi" and first.headers.get_all("subject") == ["hi"]
    assert second.reply.code == 452 and second.rule == "full"


def test_wait_for_timeout_lists_the_messages_that_did_arrive(bh: Blackhole) -> None:
    send(bh.port, ["b@example.com"])
    with pytest.raises(TimeoutError) as late:
        bh.wait_for(messages=2, timeout=0.5)
    assert "expected 2 messages within 0.5s; 1 arrived:" in str(late.value)
    assert "<a@example.com> -> b@example.com: 250 2.0.0" in str(late.value)
