"""Rule state in shared memory on a real server: workers decide without the hub.

Counts, greylist entries and spent rules live in a region the supervisor
makes (``hub.sharedstore``): a worker decides there itself, so a hub that is
stopped holds no decision up, and a hub that dies loses none of the state.
The hub still reports ``spent`` in ``GET /rules`` and clears it all on
``POST /reset``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from blackhole.hub.sharedstore import RULE_SLOTS
from blackhole.observe.layout import MAX_RULES
from tests.e2e import Factory
from tests.proctools import kill_quietly, wait_until
from tests.rulesrv import rules_server
from tests.serverproc import ServerProcess
from tests.smtpclient import Client
from tests.test_e2e_hub import TOKEN, _hub_pid, call

FIRST_TWO = '[[rule]]\nname = "two"\nat = "rcpt"\nfirst = 2\nreply = "450 4.2.0 Later"\n'
CONTROL = f"control_listen = 127.0.0.1:0\ncontrol_token = {TOKEN}\n"


def replies(port: int, count: int, recipient: str = "b@x.example") -> list[str]:
    """``count`` RCPTs of one recipient in one session: each reply's code and enhanced code."""
    client = Client.connect(port)
    try:
        client.expect("EHLO c.example", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        answers = [client.cmd(f"RCPT TO:<{recipient}>") for _ in range(count)]
        client.cmd("QUIT")
    finally:
        client.close()
    return [f"{reply.code} {reply.text.split()[0]}" for reply in answers]


def _healthy(server: ServerProcess) -> Callable[[], bool]:
    return lambda: call(server, "GET", "/healthz", token=None)[0] == 200


def test_a_stopped_hub_holds_no_decision_up(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, FIRST_TWO, CONTROL, workers=2)
    wait_until(_healthy(server), what="healthz")
    hub = wait_until(lambda: _hub_pid(server), what="the hub process")
    kill_quietly(hub, signal.SIGSTOP)
    try:
        # Through the hub, each of these waited for it, then answered 451 4.3.0.
        assert replies(server.port(), 3) == ["450 4.2.0", "450 4.2.0", "250 2.1.5"]
    finally:
        kill_quietly(hub, signal.SIGCONT)


def test_rule_state_outlives_a_killed_hub(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, FIRST_TWO, CONTROL, workers=2)
    wait_until(_healthy(server), what="healthz")
    hub = wait_until(lambda: _hub_pid(server), what="the hub process")
    assert replies(server.port(), 2) == ["450 4.2.0", "450 4.2.0"]
    kill_quietly(hub, signal.SIGKILL)
    server.wait_for(r"the hub is serving again")
    wait_until(_healthy(server), what="healthz after the restart")
    # The count went on: the first two tries are behind us.
    assert replies(server.port(), 1) == ["250 2.1.5"]


def test_spent_and_reset_through_the_hub(server_factory: Factory, tmp_path: Path) -> None:
    once = '[[rule]]\nname = "once"\nat = "rcpt"\ntimes = 1\nreply = "452 4.2.2 Full"\n'
    server = rules_server(server_factory, tmp_path, once + FIRST_TWO, CONTROL, workers=2)
    wait_until(_healthy(server), what="healthz")

    def spent() -> dict[str, bool]:
        status, _kind, rules = call(server, "GET", "/rules")
        assert status == 200
        return {rule["name"]: rule["spent"] for rule in rules}

    assert spent() == {"once": False, "two": False}
    assert replies(server.port(), 4) == ["452 4.2.2", "450 4.2.0", "450 4.2.0", "250 2.1.5"]
    assert spent() == {"once": True, "two": False}
    assert call(server, "POST", "/reset")[0] == 204
    assert spent() == {"once": False, "two": False}
    assert replies(server.port(), 2) == ["452 4.2.2", "450 4.2.0"]


def _stateful(name: str) -> dict[str, object]:
    """A rule that counts every RCPT (so it takes a slot of the table) and never acts."""
    return {"name": name, "at": "rcpt", "every": 1000000, "reply": "452 4.2.2 x"}


def _fill_the_rule_table(server: ServerProcess) -> None:
    """Every slot of the shared rule table taken by the state of rules no longer in force.

    At most ``MAX_RULES`` rules are in force, and the table holds the state of
    ``RULE_SLOTS`` (4 x ``MAX_RULES``) rules. What is left over: a hub that
    dies loses its API rules, while their state stays in the region it does
    not own until a reload or ``POST /reset`` forgets it. So: ``MAX_RULES``
    stateful API rules, one RCPT for each to take its slot, the hub killed,
    over again until the table is full.
    """
    for round_ in range(RULE_SLOTS // MAX_RULES):
        for n in range(MAX_RULES):
            status, _kind, body = call(server, "POST", "/rules", _stateful(f"g{round_}-{n}"))
            assert status == 201, body
        assert replies(server.port(), 1) == ["250 2.1.5"]
        hub = _hub_pid(server)
        kill_quietly(hub, signal.SIGKILL)
        wait_until(lambda: _hub_pid(server) not in (0, hub), what="the hub restarted")  # noqa: B023
        wait_until(_healthy(server), what="healthz after the restart")


def test_a_full_rule_table_answers_451_for_that_event_only(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, "", CONTROL)
    wait_until(_healthy(server), what="healthz")
    _fill_the_rule_table(server)
    assert call(server, "POST", "/rules", _stateful("last"))[0] == 201
    client = Client.connect(server.port())
    try:
        client.expect("EHLO c.example", 250)
        client.expect("MAIL FROM:<a@example.com>", 250)
        client.expect("RCPT TO:<b@x.example>", 451, "4.3.0")  # "last" finds no room
        client.expect("RSET", 250)  # the session carries on
    finally:
        client.close()
    server.wait_for(r"ERROR .*the shared rule state holds at most \d+ rules with state")


def test_a_reload_gives_back_the_table_room_of_rules_that_are_gone(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, "", CONTROL)
    wait_until(_healthy(server), what="healthz")
    _fill_the_rule_table(server)
    assert call(server, "POST", "/rules", _stateful("last"))[0] == 201
    assert replies(server.port(), 1) == ["451 4.3.0"]  # the table is full
    (tmp_path / "rules.toml").write_text(FIRST_TWO)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\)")
    # The hub forgets the state of every rule not in force as it takes the new
    # rules, alongside the workers: until then "two" finds no room either.
    wait_until(lambda: replies(server.port(), 1) == ["450 4.2.0"], what="room for two")
    assert replies(server.port(), 2) == ["450 4.2.0", "250 2.1.5"]
