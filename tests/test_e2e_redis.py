"""Two real servers (workers = 2 each) sharing rule state in one real redis-server.

Everything goes over real sockets: SMTP to the servers, HTTP to their control
APIs, RESP from the servers to Redis. Redis is a private child process
(tests/redisserver.py) that the outage test kills and starts again.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import Factory, start
from tests.proctools import wait_until
from tests.redisserver import RedisServer
from tests.serverproc import ServerProcess
from tests.smtpclient import Client


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def servers(
    factory: Factory, directory: Path, rules: str, redis: RedisServer, count: int
) -> list[ServerProcess]:
    """``count`` servers with the same rules, each with its control API, on one Redis."""
    path = directory / "rules.toml"
    path.write_text(rules)
    text = (
        "listen = 127.0.0.1:0\nworkers = 2\ngrace_period = 1\ntimeout = 30\n"
        f"control_listen = 127.0.0.1:0\nrules = {path}\nstate_url = {redis.url}\n"
    )
    return [start(factory, directory, text) for _ in range(count)]


def rcpt(server: ServerProcess, recipient: str) -> tuple[int, str]:
    """One session, one RCPT: its code and text."""
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    reply = client.cmd(f"RCPT TO:<{recipient}>")
    client.cmd("QUIT")
    return reply.code, reply.text


def control(server: ServerProcess, method: str, path: str) -> tuple[int, str]:
    line = server.wait_for(r"control API serving on http://")
    found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert found is not None, line
    conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def healthz(server: ServerProcess) -> tuple[int, str]:
    return control(server, "GET", "/healthz")


def test_a_triplet_greylisted_on_one_server_passes_on_the_other(
    server_factory: Factory, tmp_path: Path, redis: RedisServer
) -> None:
    a, b = servers(
        server_factory,
        tmp_path,
        '[[rule]]\nname = "grey"\nat = "rcpt"\ngreylist = "1s"\n',
        redis,
        2,
    )
    first_seen = time.monotonic()
    assert rcpt(a, "b@x.example")[0] == 451
    # The greylist period is the behaviour under test, not a readiness wait.
    time.sleep(max(0.0, first_seen + 1.2 - time.monotonic()))
    # B never saw this triplet itself: it passes only because A's entry is shared.
    assert rcpt(b, "b@x.example")[0] == 250
    assert rcpt(b, "c@x.example")[0] == 451  # another triplet is new everywhere


def test_first_fails_exactly_three_tries_across_both_servers(
    server_factory: Factory, tmp_path: Path, redis: RedisServer
) -> None:
    a, b = servers(
        server_factory,
        tmp_path,
        '[[rule]]\nname = "three"\nat = "rcpt"\nfirst = 3\nreply = "451 4.3.0 Try again"\n',
        redis,
        2,
    )
    codes = [rcpt(server, "b@x.example")[0] for server in (a, b, a, b, a, b, a, b)]
    assert codes == [451, 451, 451, 250, 250, 250, 250, 250]


OUTAGE_RULES = """
[[rule]]
name = "stateful"
at = "rcpt"
recipient = "*@state.example"
first = 1000
reply = "452 4.2.2 Mailbox full"

[[rule]]
name = "stateless"
at = "rcpt"
recipient = "*@gone.example"
reply = "550 5.1.1 No such user"
"""


def send_message(server: ServerProcess) -> int:
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    client.expect("RCPT TO:<b@ok.example>", 250)
    client.expect("DATA", 354)
    code = client.cmd("Subject: hi\r\n\r\nbody\r\n.").code
    client.cmd("QUIT")
    return code


def test_redis_stopped_and_restarted_in_the_middle_of_a_run(
    server_factory: Factory, tmp_path: Path, redis: RedisServer
) -> None:
    (server,) = servers(server_factory, tmp_path, OUTAGE_RULES, redis, 1)
    wait_until(lambda: healthz(server)[0] == 200, what="healthz")
    assert rcpt(server, "b@state.example")[0] == 452

    redis.stop()
    # Stateful rules answer 451 4.3.0 while Redis is down, with no wait.
    for _ in range(6):
        started = time.monotonic()
        code, text = rcpt(server, "b@state.example")
        assert (code, text.split()[0]) == (451, "4.3.0")
        assert time.monotonic() - started < 3.0
    # Stateless rules and plain mail go on.
    assert rcpt(server, "b@gone.example")[0] == 550
    assert send_message(server) == 250

    def unhealthy() -> str | None:
        status, body = healthz(server)
        return body if status == 503 else None

    body = wait_until(unhealthy, what="healthz 503")
    assert body is not None
    assert "state store unreachable" in body and redis.url in body
    status, body = control(server, "POST", "/reset")
    assert status == 503 and "state store unreachable" in body

    redis.start()  # empty: Redis without persistence starts over
    wait_until(lambda: healthz(server)[0] == 200, what="healthz after the restart")
    assert rcpt(server, "b@state.example")[0] == 452
    assert send_message(server) == 250
    assert control(server, "POST", "/reset")[0] == 204
    log = server.text()
    # Logged once for the outage, not once per refused decision.
    assert len(re.findall(r"state store \S+ unreachable", log)) == 1, log
    assert len(re.findall(r"state store \S+ reachable again", log)) == 1, log
    assert "Traceback" not in log
