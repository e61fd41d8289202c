"""``hits`` in GET /rules and /stats ``rules``, over real HTTP, on a real server with 2 workers.

RULES.md: "A rule's matches are counted whether or not it acts", and only up
to the rule that acts at each event; OBSERVE.md: /stats ``rules`` is the hits
by name, GET /rules gives each rule's ``hits``. The counts are the server's,
summed over its workers, whichever worker took each connection.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import smtplib
from pathlib import Path
from typing import Any

from tests.e2e import Factory, config_file
from tests.proctools import wait_until
from tests.serverproc import ServerProcess

TOKEN = "hits-token"
RULES = """
[[rule]]
name = "full"
at = "rcpt"
recipient = "*@full.test"
reply = "452 4.2.2 Mailbox full"

[[rule]]
name = "every-other"
at = "rcpt"
recipient = "*@every.test"
every = 2
reply = "451 4.3.0 Every other one"

[[rule]]
name = "never"
at = "rcpt"
recipient = "*@never.test"
reply = "550 5.1.1 Never"
"""


def call(srv: ServerProcess, path: str, method: str = "GET", body: Any = None) -> Any:
    """(status, the answer's JSON or None)."""
    line = srv.wait_for(r"control API serving on http://")
    found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert found is not None, line
    conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
    data = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, body=data, headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        text = response.read()
        return response.status, json.loads(text) if text else None
    finally:
        conn.close()


def rcpt(port: int, recipient: str) -> int:
    """One connection (so the workers share them), one RCPT; its reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("hits.test")
        client.mail("a@example.com")
        code, _text = client.rcpt(recipient)
        return code


def test_hits_count_every_match_whether_or_not_it_acts(
    server_factory: Factory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    config = (
        f"listen = 127.0.0.1:0\nworkers = 2\nrules = {rules}\n"
        f"control_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"
    )
    srv = server_factory(config_file(tmp_path, config))
    port = srv.port()
    codes = [rcpt(port, "x@full.test") for _ in range(3)]
    codes += [rcpt(port, f"y{n}@every.test") for n in range(4)]
    codes += [rcpt(port, "z@elsewhere.test") for _ in range(2)]
    assert codes == [452, 452, 452, 250, 451, 250, 451, 250, 250]
    # Counted before each reply was written: complete once the client has it.
    expected = {"full": 3, "every-other": 4, "never": 0}
    status, stats = call(srv, "/stats")
    assert status == 200 and stats["rules"] == expected
    status, rules = call(srv, "/rules")
    assert status == 200
    assert [(r["name"], r["source"], r["hits"]) for r in rules] == [
        ("full", "file", 3),
        ("every-other", "file", 4),
        ("never", "file", 0),
    ]


def test_file_rules_are_listed_and_their_names_taken(
    server_factory: Factory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    config = (
        f"listen = 127.0.0.1:0\nrules = {rules}\n"
        f"control_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"
    )
    srv = server_factory(config_file(tmp_path, config))
    clash = {"name": "full", "at": "mail", "reply": "451 4.3.0 Not now"}
    assert call(srv, "/rules", "POST", clash)[0] == 409
    _status, listed = call(srv, "/rules")
    assert [rule["name"] for rule in listed] == ["full", "every-other", "never"]
    # Each with its fields, as the file has them (docs/observability.md).
    assert listed[1] == {
        "name": "every-other", "at": "rcpt", "recipient": "*@every.test", "every": 2,
        "reply": "451 4.3.0 Every other one", "source": "file", "hits": 0, "spent": False,
    }  # fmt: skip


def test_a_reloaded_rules_file_is_what_get_rules_lists(
    server_factory: Factory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    config = (
        f"listen = 127.0.0.1:0\nrules = {rules}\n"
        f"control_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"
    )
    srv = server_factory(config_file(tmp_path, config))
    rules.write_text('[[rule]]\nname = "fresh"\nat = "mail"\nreply = "451 4.3.0 Later"\n')
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_for(r"configuration reloaded \(generation 2\)")
    # The hub applies the reload on its own channel: poll until it has.
    wait_until(lambda: [r["name"] for r in call(srv, "/rules")[1]] == ["fresh"], what="reload")
    clash = {"name": "fresh", "at": "rcpt", "reply": "451 4.3.0 Not now"}
    assert call(srv, "/rules", "POST", clash)[0] == 409
    assert call(srv, "/rules", "POST", {**clash, "name": "full"})[0] == 201
