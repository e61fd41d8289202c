"""What the control API needs from the server: the ``Backend`` protocol and its errors.

The HTTP layer (``control.app``) only parses, checks and renders; every
figure and every change goes through a ``Backend``. The server's backend (a
later step of the integration) lives where the counts and the rules are
owned, the supervisor or its control process:

- ``health`` from the supervisor's slots (a worker not serving is missing);
- ``figures`` from ``Tally.snapshot()``, ``RuleSlots.figures`` and the
  supervisor's worker and restart counts (``observe.snapshot.Figures``);
- ``add_rule`` parses with the rules package (``blackhole.rules``) and raises
  ``RuleError`` naming the bad field, ``RuleConflictError`` for a name in use; it
  returns only once every worker has acknowledged the new rule (OBSERVE.md:
  "every worker applies it before the answer is sent"), hence ``async``;
- ``messages`` from the ``observe.record.Recorder`` fed by the workers.

Anything else a backend raises is a bug: the app logs it and answers 500
without the exception text, and the server keeps running.
"""

from __future__ import annotations

from typing import Any, Protocol

from blackhole.observe.snapshot import Figures

JSON = dict[str, Any]


class RuleError(ValueError):
    """A rule that cannot be added: ``field`` names what is wrong with it (400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RuleConflictError(Exception):
    """A rule of that name is already in force (409)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a rule named {name!r} is already in force")
        self.name = name


class UnknownRuleError(Exception):
    """No API rule of that name (404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no API rule named {name!r}")
        self.name = name


class Backend(Protocol):
    def health(self) -> tuple[bool, list[str]]:
        """``(True, [])`` while every worker serves, else what is missing."""
        ...

    def figures(self) -> Figures: ...

    def rules(self) -> list[JSON]:
        """Every rule in force (API rules first), with source, hits, spent, expires."""
        ...

    async def add_rule(self, fields: JSON, ttl: float | None) -> JSON:
        """The rule as stored; raises ``RuleError`` or ``RuleConflictError``."""
        ...

    async def remove_rule(self, name: str) -> None:
        """Raises ``UnknownRuleError``."""
        ...

    async def remove_all_rules(self) -> None: ...

    async def reset(self) -> None:
        """Zero the counters, the rule state and the recorded messages."""
        ...

    def messages(self, limit: int | None) -> list[JSON]:
        """The newest ``limit`` recorded messages (all if ``None``), newest first."""
        ...
