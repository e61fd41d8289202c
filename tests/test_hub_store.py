"""RemoteStore against a real hub process: counts shared exactly across processes."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blackhole.config.model import Config
from blackhole.hub.client import HubClient, HubUnavailableError
from blackhole.observe.layout import Layout
from blackhole.rules.model import Rule, Selection
from blackhole.rules.parse import parse_text
from blackhole.rules.store import Ask
from blackhole.supervisor import hubkeeper
from blackhole.supervisor.hubkeeper import HubKeeper

SCRIPT = Path(__file__).with_name("hubclient_script.py")


@pytest.fixture
def hub() -> Iterator[HubKeeper]:
    keeper = HubKeeper()
    keeper.bind_store()
    keeper.configure(Config(), None, Layout(["smtp://127.0.0.1:25"]))
    keeper.start_and_wait([])
    try:
        yield keeper
    finally:
        keeper.stop()


def test_two_processes_share_first_n_exactly(hub: HubKeeper) -> None:
    assert hub.path is not None
    clients = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), hub.path, str(worker), "200", "3"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for worker in (1, 2)
    ]
    results = [json.loads(client.communicate(timeout=30)[0]) for client in clients]
    assert [client.returncode for client in clients] == [0, 0]
    # 400 matches of one `first = 3` rule from two processes: exactly 3 act.
    assert sum(result["acts"] for result in results) == 3


def test_an_unreachable_hub_answers_at_once_with_a_typed_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        client = HubClient(str(tmp_path / "no-hub.sock"), 1, timeout=0.5)
        assert not await client.start(0.1)
        ask = Ask("id", "name", "key", Selection(first=1), time.time(), 0.0, 1)
        started = time.monotonic()
        with pytest.raises(HubUnavailableError):
            await client.store.decide(ask)
        assert time.monotonic() - started < 0.5
        await client.close()

    asyncio.run(scenario())


def test_a_hub_that_does_not_answer_is_a_typed_error_at_the_timeout(tmp_path: Path) -> None:
    # A hub that accepts and then never answers (hung): each decision fails
    # with HubUnavailableError once the client's timeout has run out.
    async def scenario() -> None:
        path = str(tmp_path / "mute.sock")
        server = await asyncio.start_unix_server(lambda _r, _w: None, path)
        client = HubClient(path, 1, timeout=0.3)
        await client.start(0.2)  # connected, but no API rules ever come
        ask = Ask("id", "name", "key", Selection(first=1), time.time(), 0.0, 1)
        started = time.monotonic()
        with pytest.raises(HubUnavailableError, match=r"did not answer in 0\.3s"):
            await client.store.decide(ask)
        assert 0.3 <= time.monotonic() - started < 2.0
        assert client.pending == {}
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_a_restarted_hub_is_reconnected_to(hub: HubKeeper) -> None:
    assert hub.path is not None
    path = hub.path

    async def scenario() -> None:
        client = HubClient(path, 1)
        assert await client.start(10.0)
        ask = Ask("id", "name", "key", Selection(first=1), time.time(), 0.0, 1)
        assert (await client.store.decide(ask)).act
        hub.kill()  # SIGKILL: the hub's state goes with it
        hub.start([])
        while not hub.ready:  # the keeper's channel, read as the supervisor would
            hub.receive()
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = await client.store.decide(ask)
                break
            except HubUnavailableError:
                assert time.monotonic() < deadline, "never reconnected"
                await asyncio.sleep(0.02)
        assert answer.act and answer.count == 1  # a new hub starts empty
        await client.close()

    asyncio.run(scenario())


def test_a_sigterm_while_the_hub_starts_does_not_kill_it() -> None:
    # A SIGTERM to the whole group (Ctrl-C, `timeout`) may come while the new
    # hub still imports its modules; it must be ignored, not be a failed start.
    keeper = HubKeeper()
    keeper.bind_store()
    keeper.configure(Config(), None, Layout(["smtp://127.0.0.1:25"]))
    try:
        keeper.start([])
        assert keeper.process is not None
        os.kill(keeper.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while not keeper.ready and keeper.process.control is not None:
            assert time.monotonic() < deadline
            select.select([keeper.process.control], [], [], 1)
            keeper.receive()
        assert keeper.ready
    finally:
        keeper.stop()


def _post(port: int, path: str, body: dict[str, object]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body).encode())
        return conn.getresponse().status
    finally:
        conn.close()


def test_api_rules_reach_every_worker_before_the_answer_and_new_workers_at_once() -> None:
    keeper = HubKeeper()
    keeper.bind_control(Config(control_listen=("127.0.0.1", 0)))
    keeper.bind_store()
    keeper.configure(Config(), None, Layout(["smtp://127.0.0.1:25"]))
    keeper.start_and_wait([])
    assert keeper.path is not None and keeper.control is not None
    path, port = keeper.path, keeper.control.getsockname()[1]
    seen: list[list[str]] = []

    async def scenario() -> None:
        first = HubClient(path, 1, lambda rules: seen.append([r.name for r in rules]))
        assert await first.start(10.0)
        rule = {"name": "full", "at": "rcpt", "reply": "452 4.2.2 Full"}
        status = await asyncio.to_thread(_post, port, "/rules", rule)
        # 201 came only once this worker had the rule: no wait needed here.
        assert status == 201 and seen[-1] == ["full"]
        late = HubClient(path, 2)
        assert await late.start(10.0)
        assert [r.name for r in late.api_rules] == ["full"]
        for client in (first, late):
            await client.close()

    try:
        asyncio.run(scenario())
    finally:
        keeper.stop()


def _rules(*names: str) -> tuple[Rule, ...]:
    text = "".join(f'[[rule]]\nname = "{n}"\nat = "noop"\nreply = "250 2.0.0 {n}"\n' for n in names)
    return parse_text(text).rules


@pytest.fixture
def hub_with_api() -> Iterator[tuple[HubKeeper, int]]:
    """A hub with the control API (no worker) and its port."""
    keeper = HubKeeper()
    keeper.bind_control(Config(control_listen=("127.0.0.1", 0)))
    keeper.bind_store()
    keeper.configure(Config(), None, Layout(["smtp://127.0.0.1:25"]))
    keeper.start_and_wait([])
    assert keeper.control is not None
    try:
        yield keeper, keeper.control.getsockname()[1]
    finally:
        keeper.stop()


def test_claiming_file_rule_names_reports_the_api_rules_that_hold_them(
    hub_with_api: tuple[HubKeeper, int],
) -> None:
    keeper, port = hub_with_api
    assert _post(port, "/rules", {"name": "x", "at": "rset", "reply": "250 2.0.0 api"}) == 201
    assert keeper.claim_names(_rules("n", "x")) == (("x",), 1)
    # Refused: nothing was taken, so "n" is still free for the API.
    assert _post(port, "/rules", {"name": "n", "at": "rset", "reply": "250 2.0.0 api"}) == 201
    assert keeper.claim_names(_rules("m")) == ((), 2)
    # Taken at once, before the reload goes on: no API rule may take the name now.
    assert _post(port, "/rules", {"name": "m", "at": "rset", "reply": "250 2.0.0 api"}) == 409


def test_a_hub_that_does_not_answer_a_claim_leaves_the_check_to_the_workers(
    hub_with_api: tuple[HubKeeper, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keeper, port = hub_with_api
    assert _post(port, "/rules", {"name": "x", "at": "rset", "reply": "250 2.0.0 api"}) == 201
    monkeypatch.setattr(hubkeeper, "CLAIM_TIMEOUT", 0.2)
    assert keeper.process is not None
    keeper.process.signal(signal.SIGSTOP)
    try:
        assert keeper.claim_names(_rules("x"))[0] == ()
    finally:
        keeper.process.signal(signal.SIGCONT)
    assert "the hub did not answer in 0.2s" in caplog.text
    # Its late answer (the clash of "x") is not taken for the next claim's.
    assert keeper.claim_names(_rules("y"))[0] == ()
