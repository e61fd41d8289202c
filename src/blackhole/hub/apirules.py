"""The API rules the hub keeps: added and removed through the control API.

OBSERVE.md "POST /rules": a rule is the fields of RULES.md plus an optional
``ttl``; a bad field is a 400 naming it, a name in use (by an API rule or a
file rule) a 409. API rules are consulted before file rules, newest first
(RULES.md "Where rules come from"). The same ``ApiRule`` value goes to every
worker, which turns it into the same ``Rule`` with ``to_rule``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from blackhole.control.backend import RuleConflictError, RuleError, UnknownRuleError
from blackhole.hub.wire import JSON, ApiRule
from blackhole.observe.layout import rules_fit
from blackhole.rules.model import Rule
from blackhole.rules.parse import RulesError, parse_object

# parse_object's problems read 'rule "NAME": KEY: message' (the name part only
# when the rule has one, the key part only when one key is at fault).
_PROBLEM = re.compile(r'^(?:rule "[^"]*": )?(?:(?P<field>[a-z_]+): )?(?P<message>.*)$', re.DOTALL)


def to_rule(api: ApiRule) -> Rule:
    """The ``Rule`` an ``ApiRule`` stands for; raises ``RulesError`` if it is bad."""
    raw = dict(api.fields)
    if api.ttl is not None:
        raw["ttl"] = api.ttl
    return parse_object(raw, now=api.started)


def rule_error(exc: RulesError) -> RuleError:
    """The first problem, as the 400 that names its field (``rule`` if none)."""
    problem = exc.problems[0] if exc.problems else str(exc)
    found = _PROBLEM.match(problem)
    assert found is not None  # the pattern matches any text
    field = found.group("field") or "rule"
    message = "; ".join(exc.problems)
    return RuleError(field, message.removeprefix(f"{field}: "))


class ApiRuleBook:
    """API rules newest first, and the names the file rules hold."""

    def __init__(self, file_rules: Iterable[Rule] = ()) -> None:
        self._entries: list[tuple[ApiRule, Rule]] = []
        self.file_rules: tuple[Rule, ...] = tuple(file_rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rule for _api, rule in self._entries)

    def wire(self) -> tuple[ApiRule, ...]:
        return tuple(api for api, _rule in self._entries)

    def add(self, fields: JSON, ttl: float | None, now: float) -> Rule:
        api = ApiRule(dict(fields), ttl, now)
        try:
            rule = to_rule(api)
        except RulesError as exc:
            raise rule_error(exc) from None
        if any(r.name == rule.name for r in (*self.rules, *self.file_rules)):
            raise RuleConflictError(rule.name)
        self._entries.insert(0, (api, rule))
        return rule

    def claim(self, file_rules: Iterable[Rule]) -> tuple[tuple[str, ...], int]:
        """New file rules (SIGHUP): (the names of them API rules hold, how many
        API rules there are). Taken, unless a name clashes or they and the API
        rules would not fit in the counter slots (``observe.layout.rules_fit``).

        Taken at once, before the reload is committed: from then on an API
        rule cannot take one of their names, as it cannot take a file rule's.
        """
        rules = tuple(file_rules)
        held = {rule.name for rule in self.rules}
        clashes = tuple(rule.name for rule in rules if rule.name in held)
        if not clashes and rules_fit(len(rules), len(held)):
            self.file_rules = rules
        return clashes, len(held)

    def remove(self, name: str) -> Rule:
        for index, (_api, rule) in enumerate(self._entries):
            if rule.name == name:
                del self._entries[index]
                return rule
        raise UnknownRuleError(name)

    def clear(self) -> list[Rule]:
        gone = list(self.rules)
        self._entries.clear()
        return gone

    def expire(self, now: float) -> list[Rule]:
        """Remove the rules whose ``ttl`` ran out by ``now``; those rules."""
        gone = [r for r in self.rules if r.expires is not None and now >= r.expires]
        self._entries = [(a, r) for a, r in self._entries if r not in gone]
        return gone

    def next_expiry(self) -> float | None:
        times = [r.expires for r in self.rules if r.expires is not None]
        return min(times) if times else None
