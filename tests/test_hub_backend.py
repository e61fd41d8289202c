"""The hub's control API backend: adding rules while the workers apply them.

The hub runs in this process with a worker link whose acknowledgements the
test schedules, so that a DELETE can be served while a POST still waits for
the workers (OBSERVE.md "POST /rules": every worker applies the rule before
the answer is sent).
"""

from __future__ import annotations

import asyncio

import pytest

from blackhole.control.backend import RuleError
from blackhole.hub.apirules import ApiRuleBook
from blackhole.hub.backend import HubBackend
from blackhole.hub.hubside import Hub, WorkerLink
from blackhole.hub.wire import ApiRules
from blackhole.observe.layout import MAX_RULES, Layout
from blackhole.observe.tally import Tally

RULE = {"name": "held", "at": "rcpt", "reply": "450 4.0.0 held"}


class DeletingWorker(WorkerLink):
    """A worker that applies the first rule list only after ``DELETE /rules/held``."""

    def __init__(self, hub: Hub, backend: HubBackend) -> None:
        super().__init__(hub)
        self.backend = backend
        self.worker = 1
        self.deleted = False

    def send(self, message: object) -> None:
        if isinstance(message, ApiRules):
            self.hub.spawn(self._apply(message.version))

    async def _apply(self, version: int) -> None:
        if not self.deleted:
            self.deleted = True
            await self.backend.remove_rule(RULE["name"])
        self.acked = max(self.acked, version)
        self.hub.changed()


def test_a_rule_deleted_during_its_push_is_answered_as_added() -> None:
    async def scenario() -> None:
        hub = Hub(ApiRuleBook(), record=0)
        backend = HubBackend(hub, Layout(["test"]), tally=None, workers=1)
        worker = DeletingWorker(hub, backend)
        hub.links.add(worker)
        answer = await backend.add_rule(dict(RULE), None)
        assert worker.deleted
        assert answer == {**RULE, "expires": None, "source": "api", "hits": 0, "spent": False}
        assert backend.rules() == []

    asyncio.run(scenario())


def test_a_rule_over_the_slots_is_a_400_and_leaves_the_book_as_it_was() -> None:
    async def scenario() -> None:
        layout = Layout(["test"])
        tally = Tally.create(layout, 1)
        try:
            backend = HubBackend(Hub(ApiRuleBook(), record=0), layout, tally, workers=1)
            for number in range(MAX_RULES):
                await backend.add_rule({**RULE, "name": f"r{number}"}, None)
            with pytest.raises(RuleError) as caught:
                await backend.add_rule({**RULE, "name": "over"}, None)
            assert caught.value.field == "rule"
            assert f"at most {MAX_RULES} rules" in str(caught.value)
            assert "over" not in {entry["name"] for entry in backend.rules()}
            # The name is free and the next slot freed goes to it.
            await backend.remove_rule("r0")
            assert (await backend.add_rule({**RULE, "name": "over"}, None))["name"] == "over"
        finally:
            tally.close()

    asyncio.run(scenario())
