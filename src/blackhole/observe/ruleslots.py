"""Rule names bound to the bounded table of rule counter slots.

Rule names are chosen at run time (the rules file, ``POST /rules``), but the
counter layout is fixed at start-up. So rules count into ``MAX_RULES`` slots
(``observe.layout``), and this table, kept by the one process that owns the
rules in force (the supervisor or the control process), binds each rule's name
to a slot. The slot number travels to the workers with the rule, so that a
worker counts ``rule_hit(slot)`` without any lookup by name.

A slot freed by a removed rule is handed out again only after its counters
have been restarted from zero (``Tally.forget``): the new rule never inherits
the old one's hits. Slot 0 is not in the table: it is ``mode``, the delays of
the config file and the switches (``blackhole_injected_delay_seconds_total``).

The counters outlive the process that keeps the table (the hub may die and be
restarted), so the table can start from the bindings a previous keeper made
(``bound``): those names keep their slots and their counts, which never go
backwards except after ``POST /reset`` (OBSERVE.md "Counting, exactly").
"""

from __future__ import annotations

from collections.abc import Iterable

from blackhole.observe.layout import MAX_RULES, MODE_RULE_SLOT
from blackhole.observe.snapshot import RuleFigures, Snapshot
from blackhole.observe.tally import Tally


class TooManyRulesError(ValueError):
    """More rules in force than there are counter slots."""


class RuleSlots:
    def __init__(
        self, tally: Tally, limit: int = MAX_RULES, bound: Iterable[tuple[str, int]] = ()
    ) -> None:
        """``bound``: ``(name, slot)`` pairs a previous keeper made, kept as they are."""
        self._tally = tally
        self._slots = dict(bound)
        taken = set(self._slots.values())
        # pop() hands out the lowest free slot first.
        self._free = [slot for slot in range(limit, 0, -1) if slot not in taken]

    def bind(self, name: str) -> int:
        """The slot of ``name``, binding a fresh one if it has none."""
        slot = self._slots.get(name)
        if slot is None:
            if not self._free:
                raise TooManyRulesError(f"at most {MAX_RULES} rules can be in force")
            slot = self._free.pop()
            self._tally.forget(self._tally.layout.rule_indices(slot))
            self._slots[name] = slot
        return slot

    def unbind(self, name: str) -> None:
        slot = self._slots.pop(name, None)
        if slot is not None:
            self._free.append(slot)

    def names(self) -> dict[str, int]:
        return dict(self._slots)

    def figures(self, snapshot: Snapshot) -> dict[str, RuleFigures]:
        """Per bound rule name, plus ``mode`` for the delays of modes and switches."""
        figures = {"mode": snapshot.rule(MODE_RULE_SLOT)}
        for name, slot in sorted(self._slots.items()):
            figures[name] = snapshot.rule(slot)
        if "mode" in self._slots:  # a rule may be called "mode": one series, summed
            own, modes = figures["mode"], snapshot.rule(MODE_RULE_SLOT)
            figures["mode"] = RuleFigures(
                own.hits + modes.hits,
                own.actions + modes.actions,
                own.delay_seconds + modes.delay_seconds,
            )
        return figures
