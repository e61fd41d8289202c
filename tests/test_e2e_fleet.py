"""A fleet: two servers (workers = 2 each) behind a real HAProxy, sharing one real Redis.

HAProxy runs the haproxy.cfg of docs/scale-out.md itself (balance
roundrobin, send-proxy-v2), with the page's placeholder addresses replaced by
the servers' ephemeral ports. The clients connect from 127.0.0.5 (and a few
other loopback addresses) while HAProxy connects to the servers from
127.0.0.1: only the PROXY header tells the servers who the client is. Which
server took a message is read from each server's event log.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import running
from tests.haproxy import HAPROXY
from tests.jsonlines import written_records
from tests.proctools import wait_until
from tests.redisserver import RedisServer
from tests.serverproc import ServerProcess
from tests.smtpclient import Client, Reply, insecure_context

DOC = Path(__file__).resolve().parent.parent / "docs" / "scale-out.md"
_HAPROXY_CFG = re.compile(r"<!-- haproxy\.cfg -->\n```haproxy\n(.*?)```", re.DOTALL)
# The page's placeholders: the servers' addresses, in server-line order.
PLACEHOLDERS = ("10.0.0.11", "10.0.0.12")
CLIENT = "127.0.0.5"  # the test client; HAProxy's own connections come from 127.0.0.1
GREY_PERIOD = 1.0

RULES = f"""
[[rule]]
name = "grey"
at = "rcpt"
recipient = "*@grey.example"
greylist = "{GREY_PERIOD:g}s"

[[rule]]
name = "three"
at = "rcpt"
recipient = "*@three.example"
first = 3
reply = "451 4.3.0 Try again"

[[rule]]
name = "proxied"
at = "rcpt"
recipient = "*@who.example"
client = "{CLIENT}"
reply = "451 4.7.1 proxied client seen"

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


@dataclass
class Server:
    process: ServerProcess
    events: Path

    @property
    def control_port(self) -> int:
        return self.process.control_port()

    def get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def unhealthy(self) -> str | None:
        """What ``/healthz`` says is missing, or None while it answers 200."""
        status, body = self.get("/healthz")
        return body if status == 503 else None

    def healthy(self) -> bool:
        return self.get("/healthz")[0] == 200

    def session_clients(self) -> set[object]:
        return {line["client"] for line in self.lines("session")}

    def saw_session_from_client(self) -> bool:
        return CLIENT in self.session_clients()

    def lines(self, kind: str) -> list[dict[str, object]]:
        text = self.events.read_text() if self.events.exists() else ""
        return [line for line in written_records(text) if line["type"] == kind]


@dataclass
class Fleet:
    servers: list[Server]
    smtp: int  # HAProxy's SMTP frontend
    smtps: int  # HAProxy's SMTPS frontend
    redis: RedisServer


def haproxy_config(servers: list[Server], binds: dict[int, int]) -> str:
    """The page's haproxy.cfg, bound to ``binds`` (frontend port -> fd), aimed at ``servers``."""
    found = _HAPROXY_CFG.search(DOC.read_text())
    assert found is not None, "no <!-- haproxy.cfg --> block in docs/scale-out.md"
    text = found.group(1)
    for port, fd in binds.items():
        text = text.replace(f"bind :{port}\n", f"bind fd@{fd}\n")
    lines = text.splitlines(keepends=True)
    for placeholder, server in zip(PLACEHOLDERS, servers, strict=True):
        lines = [_aim(line, placeholder, server) for line in lines]
    text = "".join(lines)
    assert "10.0.0." not in text and "bind :" not in text, text
    return text


def _aim(line: str, placeholder: str, server: Server) -> str:
    """A ``server`` line for ``placeholder`` aimed at ``server``'s ports; others as they are."""
    if f" {placeholder}:" not in line:
        return line
    return (
        line.replace(f"{placeholder}:2525", f"127.0.0.1:{server.process.port('smtp')}")
        .replace(f"{placeholder}:4650", f"127.0.0.1:{server.process.port('smtps')}")
        .replace(" port 8025", f" port {server.control_port}")
    )


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, cert_pair: tuple[Path, Path]
) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("fleet"), cert_pair) as started:
        yield started


@contextmanager
def running_fleet(directory: Path, cert_pair: tuple[Path, Path]) -> Iterator[Fleet]:
    """Redis, two servers on it, and HAProxy in front of them with the page's haproxy.cfg."""
    redis = RedisServer(directory)
    redis.start()
    rules = directory / "rules.toml"
    rules.write_text(RULES)
    cert, key = cert_pair
    with ExitStack() as stack:
        stack.callback(redis.stop)
        servers = []
        for n in range(2):
            events = directory / f"events-{n}.jsonl"
            text = (
                "listen = 127.0.0.1:0 proxy=yes\ntls_listen = 127.0.0.1:0 proxy=yes\n"
                f"tls_cert = {cert}\ntls_key = {key}\nworkers = 2\ntimeout = 30\n"
                f"grace_period = 1\ncontrol_listen = 127.0.0.1:0\nrules = {rules}\n"
                f"state_url = {redis.url}\nevent_log = {events}\n"
            )
            servers.append(Server(stack.enter_context(running(directory, text)), events))
        listeners = {port: stack.enter_context(socket.socket()) for port in (25, 465)}
        for listener in listeners.values():
            # Bound here and handed over (fd@): no port race, no readiness wait.
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
        config = directory / "haproxy.cfg"
        config.write_text(haproxy_config(servers, {p: s.fileno() for p, s in listeners.items()}))
        fds = [s.fileno() for s in listeners.values()]
        checked = subprocess.run(
            [HAPROXY, "-c", "-f", str(config)],
            pass_fds=fds,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        output = stack.enter_context((directory / "haproxy.out").open("w"))
        proc = subprocess.Popen(
            [HAPROXY, "-f", str(config), "-db"],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        stack.callback(proc.wait, 10)
        stack.callback(proc.kill)
        ports = {p: s.getsockname()[1] for p, s in listeners.items()}
        yield Fleet(servers, ports[25], ports[465], redis)
        assert proc.poll() is None, (directory / "haproxy.out").read_text()
        for server in servers:
            # Not assert_clean_log: the outage's 451 says "Internal error" by design.
            assert "Traceback" not in server.process.text()


_senders = itertools.count()


def attempt(
    fleet: Fleet,
    recipient: str,
    source: str = CLIENT,
    *,
    tls: bool = False,
    sender: str | None = None,
) -> tuple[Reply, int]:
    """One session through HAProxy from ``source``: a message to ``recipient``.

    The message goes on to DATA when the RCPT is accepted, so that every
    attempt leaves a message line in an event log. Returns the RCPT reply
    and the index of the server that took the session: the one with a new
    line from ``sender`` (by default one of its own).
    """
    sender = sender or f"t{next(_senders)}@fleet.example"

    def lines_from_sender() -> list[int]:
        return [
            sum(line["sender"] == sender for line in server.lines("message"))
            for server in fleet.servers
        ]

    before = lines_from_sender()
    port = fleet.smtps if tls else fleet.smtp
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    if tls:
        sock = insecure_context().wrap_socket(sock, server_hostname="localhost")
    client = Client(sock)
    assert client.reply().code == 220
    client.expect("EHLO c.example", 250)
    client.expect(f"MAIL FROM:<{sender}>", 250)
    reply = client.cmd(f"RCPT TO:<{recipient}>")
    if reply.code == 250:
        client.expect("DATA", 354)
        client.expect("Subject: t\r\n\r\nhi\r\n.", 250)
    client.expect("QUIT", 221)
    client.sock.close()

    def taken_by() -> list[int]:
        after = lines_from_sender()
        return [n for n, (a, b) in enumerate(zip(before, after, strict=True)) if b > a]

    (index,) = wait_until(taken_by, what=f"the event log line of {sender}")
    return reply, index


def codes(fleet: Fleet, recipient: str, count: int) -> tuple[list[int], list[int]]:
    results = [attempt(fleet, recipient) for _ in range(count)]
    return [r.code for r, _ in results], [n for _, n in results]


def alternate(servers: list[int]) -> bool:
    """balance roundrobin: consecutive sessions go to the two servers in turn."""
    return all(a != b for a, b in itertools.pairwise(servers))


def test_a_triplet_greylisted_on_one_server_passes_on_the_other(fleet: Fleet) -> None:
    sender = "grey@fleet.example"  # the triplet: client /24, sender, recipient
    first, on = attempt(fleet, "b@grey.example", sender=sender)
    first_seen = time.monotonic()
    assert first.code == 451
    # The greylist period is the behaviour under test, not a readiness wait.
    time.sleep(max(0.0, first_seen + GREY_PERIOD + 0.2 - time.monotonic()))
    retry, retried_on = attempt(fleet, "b@grey.example", sender=sender)
    assert retried_on != on, "roundrobin sends the retry to the other server"
    assert retry.code == 250  # that server never saw the triplet: Redis did
    # The triplet holds the real client's /24: a client elsewhere is new.
    elsewhere, _ = attempt(fleet, "b@grey.example", "127.0.1.5", sender=sender)
    assert elsewhere.code == 451


def test_first_fails_exactly_three_tries_across_the_fleet(fleet: Fleet) -> None:
    replies, servers = codes(fleet, "b@three.example", 8)
    assert replies == [451, 451, 451, 250, 250, 250, 250, 250]
    assert alternate(servers) and set(servers) == {0, 1}


@pytest.mark.parametrize("tls", [False, True], ids=["smtp", "smtps"])
def test_the_servers_see_the_client_not_haproxy(fleet: Fleet, tls: bool) -> None:
    seen = [attempt(fleet, "b@who.example", tls=tls) for _ in range(2)]
    assert [(r.code, r.text) for r, _ in seen] == [(451, "4.7.1 proxied client seen")] * 2
    assert {n for _, n in seen} == {0, 1}
    other, _ = attempt(fleet, "b@who.example", "127.0.0.6", tls=tls)
    assert other.code == 250
    for server in fleet.servers:
        messages = server.lines("message")
        assert {line["client"] for line in messages} <= {CLIENT, "127.0.0.6", "127.0.1.5"}
        assert CLIENT in {line["client"] for line in messages}
        # No session at all from HAProxy's address: its checks go to the control port.
        # A session's line comes when it ends, after its message's.
        wait_until(server.saw_session_from_client, what="a session line from the client")
        assert "127.0.0.1" not in server.session_clients()


def accepted(server: Server) -> int:
    _, text = server.get("/metrics")
    found = re.findall(
        r'^blackhole_messages_total\{[^}]*outcome="accepted"[^}]*\} (\S+)$', text, re.M
    )
    return sum(int(float(value)) for value in found)


def test_the_fleet_total_is_the_sum_of_the_servers_metrics(fleet: Fleet) -> None:
    before = [accepted(server) for server in fleet.servers]
    replies, servers = codes(fleet, "b@ok.example", 6)
    assert replies == [250] * 6 and alternate(servers)
    after = [accepted(server) for server in fleet.servers]
    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 3]


def test_redis_stopped_and_restarted_under_the_fleet(fleet: Fleet) -> None:
    assert codes(fleet, "b@state.example", 2)[0] == [452, 452]
    fleet.redis.stop()
    # Both servers answer stateful rules 451 4.3.0 at once; HAProxy keeps both.
    for _ in range(4):
        started = time.monotonic()
        reply, _ = attempt(fleet, "b@state.example")
        assert (reply.code, reply.text.split()[0]) == (451, "4.3.0")
        assert time.monotonic() - started < 3.0
    replies, servers = codes(fleet, "b@grey.example", 2)
    assert replies == [451, 451] and set(servers) == {0, 1}
    # Rules without state and plain mail go on.
    assert codes(fleet, "b@gone.example", 2)[0] == [550, 550]
    assert codes(fleet, "b@ok.example", 2)[0] == [250, 250]
    for server in fleet.servers:
        body = wait_until(server.unhealthy, what="healthz 503")
        assert body is not None and "state store unreachable" in body

    fleet.redis.start()  # empty: no persistence, the counts start over
    for server in fleet.servers:
        wait_until(server.healthy, what="healthz 200 after the restart")
    replies, servers = codes(fleet, "b@state.example", 2)
    assert replies == [452, 452] and set(servers) == {0, 1}
    for server in fleet.servers:
        log = server.process.text()
        assert len(re.findall(r"state store \S+ unreachable", log)) == 1, log
        assert len(re.findall(r"state store \S+ reachable again", log)) == 1, log


def test_a_stopped_server_is_passed_over(tmp_path: Path, cert_pair: tuple[Path, Path]) -> None:
    with running_fleet(tmp_path, cert_pair) as fleet:
        assert codes(fleet, "b@ok.example", 2)[0] == [250, 250]
        assert fleet.servers[0].process.stop() == 0
        # At once, before the health check has noticed: HAProxy's retry of a
        # refused connection goes to the other server (option redispatch).
        replies, servers = codes(fleet, "b@ok.example", 4)
        assert replies == [250] * 4 and servers == [1] * 4


def doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def promtool(*args: str) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: run scripts/install-test-deps")
    checked = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_pages_prometheus_config_is_valid(tmp_path: Path) -> None:
    found = re.search(
        r"<!-- prometheus\.yml -->\n```yaml\n(.*?)```",
        doc_section("Prometheus over the fleet"),
        re.S,
    )
    assert found is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(found.group(1))
    promtool("check", "config", str(config))


def test_the_pages_fleet_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = re.findall(
        r"^\| [^|]+ \| `([^`]+)` \|$", doc_section("Prometheus over the fleet"), re.M
    )
    assert len(queries) == 6, queries
    rules = tmp_path / "queries.yml"
    # promtool parses every expression of a rules file: the queries, as rules.
    rules.write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "name": "fleet",
                        "rules": [
                            {"record": f"fleet:query{n}", "expr": query}
                            for n, query in enumerate(queries)
                        ],
                    }
                ]
            }
        )
    )
    promtool("check", "rules", str(rules))
