"""Every recipe of docs/rules.md, taken from the page itself, does what the page says."""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from pathlib import Path

import pytest

from blackhole.rules.parse import parse_text
from tests.e2e import Factory
from tests.rulesrv import rules_server
from tests.smtpclient import Client

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"
_RECIPE = re.compile(r"<!-- recipe: ([\w-]+) -->\n```toml\n(.*?)```", re.DOTALL)


def recipes() -> dict[str, str]:
    return dict(_RECIPE.findall(DOC.read_text()))


def recipe(name: str) -> str:
    return recipes()[name]


def test_every_recipe_parses_and_is_tested() -> None:
    found = recipes()
    assert set(found) == {
        "greylisting", "first-two-fail", "one-in-a-hundred", "mailbox-full", "outage",
        "slow-server", "tarpit", "cut-mid-data", "starttls-fails",
    }  # fmt: skip
    for text in found.values():
        parse_text(text)


def session(port: int) -> Client:
    client = Client.connect(port)
    client.expect("EHLO c.example", 250)
    return client


def test_greylisting(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, recipe("greylisting"))
    client = session(server.port())
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<b@example.com>", 451, "4.7.1")


def test_first_two_fail(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, recipe("first-two-fail"))
    client = session(server.port())
    client.expect("MAIL FROM:<a@example.com>", 250)
    codes = [client.cmd("RCPT TO:<b@example.com>").code for _ in range(3)]
    assert codes == [451, 451, 250]


def test_one_in_a_hundred(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, recipe("one-in-a-hundred"))
    client = session(server.port())
    codes = [client.transaction().code for _ in range(300)]
    deferred = codes.count(451)
    assert 0 < deferred <= 12, deferred
    assert codes.count(250) == 300 - deferred


def test_mailbox_full(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, recipe("mailbox-full"))
    client = session(server.port())
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<x@full.example>", 452, "4.2.2")
    client.expect("RCPT TO:<x@other.example>", 250)


def test_outage_starts_after_the_first_minute(server_factory: Factory, tmp_path: Path) -> None:
    (rule,) = parse_text(recipe("outage")).rules
    assert rule.selection.window == (60.0, 360.0)
    server = rules_server(server_factory, tmp_path, recipe("outage"))
    session(server.port())  # greeted: the window has not opened yet


def test_slow_server(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, recipe("slow-server"))
    client = Client.connect(server.port())
    started = time.monotonic()
    client.expect("NOOP", 250)
    assert time.monotonic() - started >= 2.0


def test_tarpit(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, recipe("tarpit"))
    client = Client.connect(server.port(), greet=False)
    reads = []
    while not b"".join(reads).endswith(b"\r\n"):
        reads.append(client.sock.recv(4096))
        assert reads[-1]
    assert b"".join(reads).startswith(b"220 ")
    assert len(reads) > 2


def test_cut_mid_data(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, recipe("cut-mid-data"))
    client = session(server.port())
    client.mail_rcpt()
    client.expect("DATA", 354)
    client.send(b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n")  # under 4096: kept
    client.send((b"y" * 998 + b"\r\n") * 5)
    assert client.sock.recv(100) == b""


def test_starttls_fails(
    server_factory: Factory, tmp_path: Path, cert_pair: tuple[Path, Path]
) -> None:
    cert, key = cert_pair
    server = rules_server(
        server_factory, tmp_path, recipe("starttls-fails"), f"tls_cert = {cert}\ntls_key = {key}\n"
    )
    smtp = smtplib.SMTP("127.0.0.1", server.port(), timeout=10)
    smtp.ehlo()
    assert smtp.has_extn("starttls")
    with pytest.raises(ssl.SSLError):
        smtp.starttls(context=ssl._create_unverified_context())  # noqa: S323
