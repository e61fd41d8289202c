"""A first look at a stage event: can any rule of the stage hold at all?

RULES.md "Matchers": a rule acts only when every matcher it sets holds. When
every rule watching a stage sets a matcher on the stage's own value (``helo``
at helo, ``sender`` at mail, ``recipient`` at rcpt; at end the recipients or
the sender), one regex that is the union of those globs is a necessary
condition for any of them to hold. An event whose value it does not match
goes by as if the stage were not watched: no facts are built, no rule is
tried, nothing is counted (a rule that does not hold counts no match).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from blackhole.protocol.hooks import Stage
from blackhole.rules.model import Rule

# The Facts fields a stage's event carries itself, in the order they are tried.
_FIELDS: dict[Stage, tuple[str, ...]] = {
    Stage.HELO: ("helo",),
    Stage.MAIL: ("sender",),
    Stage.RCPT: ("recipient",),
    Stage.END: ("recipient", "sender"),
}


@dataclass(frozen=True, slots=True)
class Gate:
    """The union of a stage's rules' globs on one field."""

    field: str  # "helo", "sender" or "recipient"
    regex: re.Pattern[str]

    def admits(self, value: str | None) -> bool:
        # A matcher on an unknown value never holds (rules.match.failing).
        return value is not None and self.regex.fullmatch(value) is not None

    def admits_any(self, values: Iterable[str]) -> bool:
        # At end a recipient matcher holds when any recipient matches.
        fullmatch = self.regex.fullmatch
        return any(fullmatch(value) is not None for value in values)


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
