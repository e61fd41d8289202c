"""The control API's ``Backend`` in the hub (``control.backend``).

- health: the supervisor tells the hub which worker slots serve
  (``FleetState``); a slot serves for the API once its worker is also
  connected to the hub, since only then does it see the API rules; and the
  state store (``state_url``) must be reachable.
- figures: ``Tally.snapshot()`` over the counters region when the supervisor
  passes one (``counters``), else an empty snapshot of the same layout.
- rules: API rules (newest first) then file rules, with ``hits`` (the rule's
  counter slot), ``spent`` (from the shared store) and, for API rules,
  ``expires``: seconds until the ttl removes it (null: never).
- add, remove: through ``ApiRuleBook`` and ``Hub.push``, so every worker has
  applied the change when the answer goes; a removed rule's state is dropped.
  A rule beyond the counter slots (``observe.layout.MAX_RULES`` rules in
  force, file rules included) is refused with a 400 and not kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from blackhole.control.backend import JSON, RuleError
from blackhole.hub.hubside import Hub
from blackhole.hub.spec import FleetState
from blackhole.observe.layout import Layout
from blackhole.observe.ruleslots import RuleSlots, TooManyRulesError
from blackhole.observe.snapshot import Figures, RuleFigures, Snapshot
from blackhole.observe.tally import Tally
from blackhole.rules.model import Rule
from blackhole.rules.store import StoreUnavailableError

log = logging.getLogger("blackhole.hub")


def _unreported(_slots: tuple[tuple[str, int], ...]) -> None:
    return None


class HubBackend:
    def __init__(
        self,
        hub: Hub,
        layout: Layout,
        tally: Tally | None,
        workers: int,
        *,
        started: float | None = None,
        bound: Iterable[tuple[str, int]] = (),
        on_bound: Callable[[tuple[tuple[str, int], ...]], None] = _unreported,
    ) -> None:
        """``bound``: the rule slots a previous hub bound (``HubSpec.rule_slots``);
        ``on_bound``: told every binding after a change, before the workers are."""
        self.hub = hub
        self.layout = layout
        self.tally = tally
        self.slots = RuleSlots(tally, bound=bound) if tally is not None else None
        self._on_bound = on_bound
        hub.rule_slots = self.slots
        # Every worker is missing until the supervisor says otherwise (its
        # report follows the hub's Ready): /healthz must not say ok before.
        self.fleet = FleetState(workers, ())
        self.started = started if started is not None else time.time()  # the server's start
        self._expiry: asyncio.TimerHandle | None = None

    # --- reading ----------------------------------------------------------------------

    def health(self) -> tuple[bool, list[str]]:
        connected = self.hub.connected()
        missing = []
        for number in range(1, self.fleet.workers + 1):
            if number not in self.fleet.serving:
                missing.append(f"worker {number} is not serving")
            elif number not in connected:
                missing.append(f"worker {number} is not connected to the hub")
        trouble = self.hub.store.trouble()
        if trouble is not None:
            missing.append(trouble)  # rules that need state answer 451 meanwhile
        return not missing, missing

    def _snapshot(self) -> Snapshot:
        return self.tally.snapshot() if self.tally is not None else Snapshot.empty(self.layout)

    def figures(self) -> Figures:
        snapshot = self._snapshot()
        rules = self.slots.figures(snapshot) if self.slots is not None else {}
        return Figures(
            snapshot=snapshot,
            rules=rules,
            workers=len(self.fleet.serving),
            uptime=max(0.0, time.time() - self.started),
        )

    def rules(self) -> list[JSON]:
        acted = self.hub.store.acted_now()
        figures = self.figures().rules
        now = time.time()
        book = self.hub.book
        return [self._entry(rule, figures, acted, now) for rule in (*book.rules, *book.file_rules)]

    def _entry(
        self, rule: Rule, figures: Mapping[str, RuleFigures], acted: Mapping[str, int], now: float
    ) -> JSON:
        """One rule as GET /rules lists it (and POST /rules answers it)."""
        hits = figures.get(rule.name, RuleFigures(0, 0, 0.0)).hits
        times = rule.selection.times
        entry: JSON = {"name": rule.name, "at": str(rule.stage), **dict(rule.fields)}
        if rule.source == "api":
            left = None if rule.expires is None else round(max(0.0, rule.expires - now), 3)
            entry["expires"] = left
        entry.update(
            source=rule.source,
            hits=hits,
            spent=times is not None and acted.get(rule.fingerprint, 0) >= times,
        )
        return entry

    def messages(self, limit: int | None) -> list[JSON]:
        return self.hub.recorder.messages(limit)

    # --- changing ---------------------------------------------------------------------

    def relabel(self, layout: Layout) -> None:
        """A reload added listeners: figures from now on name them too."""
        self.layout = layout
        if self.tally is not None:
            self.tally.relabel(layout)

    def file_rules(self, rules: Iterable[Rule]) -> None:
        """The rules file in force (at start, at SIGHUP): each name gets a counter slot.

        A name the new file no longer has gives its slot back, unless an API
        rule still holds it; the caller pushes the new table to the workers.
        """
        if self.slots is None:
            return
        names = [rule.name for rule in rules]
        held = set(names) | {rule.name for rule in self.hub.book.rules}
        for name in self.slots.names():
            if name not in held:
                self.slots.unbind(name)
        try:
            for name in names:
                self.slots.bind(name)
        except TooManyRulesError as exc:
            log.warning("rule counts: %s; the rules after that are not counted", exc)
        self._report()

    async def add_rule(self, fields: JSON, ttl: float | None) -> JSON:
        rule = self.hub.book.add(fields, ttl, time.time())
        if self.slots is not None:
            try:
                self.slots.bind(rule.name)
            except TooManyRulesError as exc:
                # No worker could count it: refuse it, and leave the book as it was.
                self.hub.book.remove(rule.name)
                raise RuleError("rule", f"{exc}; remove one first") from None
            self._report()
        # The answer is the rule as added, made now: while the push below is
        # awaited, its ttl may run out or a DELETE may remove it.
        added = self._entry(rule, self.figures().rules, self.hub.store.acted_now(), time.time())
        await self._changed([])
        return added

    async def remove_rule(self, name: str) -> None:
        await self._changed([self.hub.book.remove(name)])

    async def remove_all_rules(self) -> None:
        await self._changed(self.hub.book.clear())

    async def reset(self) -> None:
        # The store first: if Redis is down (503), nothing has been reset.
        await self.hub.store.reset()
        if self.tally is not None:
            self.tally.reset()
        self.hub.recorder.clear()

    async def _changed(self, gone: Iterable[Rule]) -> None:
        """Forget what removed rules leave behind, push the new list, re-arm the ttl timer."""
        gone = list(gone)
        ids = {rule.fingerprint for rule in gone}
        if ids:
            store = self.hub.store
            try:
                await store.keep(frozenset(store.acted_now()) - ids)
            except StoreUnavailableError as exc:
                # The rule goes all the same; its entries expire in 2 days.
                log.warning("cannot forget the state of removed rules: %s", exc)
        if self.slots is not None and gone:
            for rule in gone:
                self.slots.unbind(rule.name)
            self._report()
        self._arm()
        await self.hub.push()

    def _report(self) -> None:
        """Tell the supervisor the bindings (``on_bound``), so that a hub
        restarted after this one keeps them and the counts behind them."""
        assert self.slots is not None
        self._on_bound(tuple(self.slots.names().items()))

    def _arm(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        when = self.hub.book.next_expiry()
        if when is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, when - time.time())
            self._expiry = loop.call_later(delay, lambda: self.hub.spawn(self._expire()))

    async def _expire(self) -> None:
        await self._changed(self.hub.book.expire(time.time()))
