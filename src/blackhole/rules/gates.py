"""A first look at a stage event: can any rule of the stage hold at all?

RULES.md "Matchers": a rule acts only when every matcher it sets holds. When
every rule watching a stage sets a matcher on the stage's own value (``helo``
at helo, ``sender`` at mail, ``recipient`` at rcpt; at end the recipients or
the sender), one regex that is the union of those globs is a necessary
condition for any of them to hold. An event whose value it does not match
goes by as if the stage were not watched: no facts are built, no rule is
tried, nothing is counted (a rule that does not hold counts no match).

The client does not change during a session, so a stage whose every rule
sets a ``client`` matcher is ruled in or out once per client address
(``ClientGate``): with no network of those rules holding the client, the
session does not stop at that stage at all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from blackhole.protocol.hooks import Stage
from blackhole.protocol.memo import remember
from blackhole.rules.model import Rule
from blackhole.rules.values import IPNetwork

# The Facts fields a stage's event carries itself, in the order they are tried.
_FIELDS: dict[Stage, tuple[str, ...]] = {
    Stage.HELO: ("helo",),
    Stage.MAIL: ("sender",),
    Stage.RCPT: ("recipient",),
    Stage.END: ("recipient", "sender"),
}


# How many values a gate remembers its answer for (then it starts afresh).
# A load mostly repeats a few names and addresses; looking one up costs a
# fifth of matching it against the union of up to 256 rules' globs.
REMEMBERED: Final = 4096


@dataclass(frozen=True, slots=True)
class Gate:
    """The union of a stage's rules' globs on one field."""

    field: str  # "helo", "sender" or "recipient"
    regex: re.Pattern[str]
    # value -> whether the union matches it: the answer never changes, as a
    # gate is made for one set of rules (a reload makes new gates).
    seen: dict[str, bool] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def admits(self, value: str | None) -> bool:
        # A matcher on an unknown value never holds (rules.match.failing).
        if value is None:
            return False
        seen = self.seen
        known = seen.get(value)
        if known is None:
            known = remember(seen, value, self.regex.fullmatch(value) is not None, REMEMBERED)
        return known

    def admits_any(self, values: Iterable[str]) -> bool:
        # At end a recipient matcher holds when any recipient matches.
        for value in values:  # noqa: SIM110 - a loop, not any(): no generator per message
            if self.admits(value):
                return True
        return False


def gates(by_stage: Mapping[Stage, Sequence[Rule]]) -> dict[Stage, Gate]:
    """The stages whose every rule sets a matcher on one field of the event."""
    found: dict[Stage, Gate] = {}
    for stage, fields in _FIELDS.items():
        rules = by_stage.get(stage)
        if not rules:
            continue
        for field in fields:
            globs = [getattr(rule.matchers, field) for rule in rules]
            if all(g is not None for g in globs):
                # Each rule's globs are already one case-insensitive regex
                # (rules.values.globs); the union keeps its flags.
                union = "|".join(f"(?:{g.regex.pattern})" for g in globs)
                found[stage] = Gate(field, re.compile(union, re.IGNORECASE | re.DOTALL))
                break
    return found


@dataclass(frozen=True, slots=True)
class ClientGate:
    """The union of a stage's rules' client networks."""

    networks: tuple[IPNetwork, ...]

    def admits(self, client: str | None) -> bool:
        # As rules.match.failing: an unknown or unparsable client never holds.
        if client is None:
            return False
        try:
            ip = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self.networks)


def client_gates(by_stage: Mapping[Stage, Sequence[Rule]]) -> dict[Stage, ClientGate]:
    """The stages whose every rule sets a client matcher."""
    found: dict[Stage, ClientGate] = {}
    for stage, rules in by_stage.items():
        nets = [rule.matchers.client for rule in rules]
        if rules and all(n is not None for n in nets):
            found[stage] = ClientGate(tuple(net for n in nets if n is not None for net in n))
    return found
