"""The rules in force and the one question the core asks: what happens now?

RULES.md: at each stage the first rule (API rules newest first, then file
rules, in order) whose matchers hold and whose selection says "act" acts; the
others are not consulted for that event. A rule's matches are counted whether
or not it acts, so every rule up to and including the acting one counts.

The rules are indexed by stage: a stage no rule watches costs a dictionary
lookup, and ``stage_bits`` (``stages`` as the core's ``watch`` holds them)
tells the core which stages to report at all. Only rules with a stateful
selection or a delay range (``Rule.stateful``) ask the store.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from blackhole.protocol import hooks as H
from blackhole.protocol.hooks import CONNECT_BIT, Stage, Verdict, bits
from blackhole.protocol.memo import remember
from blackhole.protocol.replies import Reply
from blackhole.rules.gates import ClientGate, Gate, client_gates, gates
from blackhole.rules.match import Facts, crossed, failing
from blackhole.rules.model import Matchers, Rule, Selection
from blackhole.rules.parse import NAME_OF_AN_API_RULE, RulesError
from blackhole.rules.select import in_window, key_value, unit
from blackhole.rules.store import Ask, Store

log = logging.getLogger("blackhole.rules")
# Clients whose barred stages are kept (RuleSet.barred); past it, the cache starts over.
_BARRED_CACHE: Final = 4096

# RULES.md "Selection" and "Actions": the replies a rule gets when it names none.
GREYLISTED = Reply(451, "4.7.1", "Greylisted, please try again later")
CLOSING = Reply(421, "4.3.2", "Service not available, closing channel")
_NO_MATCHERS = Matchers()  # a rule without matchers holds at every event of its stage


class NameInUseError(ValueError):
    """An API rule's name is already taken (the control API answers 409)."""


def _ignore_match(_name: str) -> None:
    return None


def _ignore_change() -> None:
    return None


class RuleSet:
    """The rules in force for one server, with their shared store.

    ``started`` is when the server started (file rules' windows count from
    it); ``seed`` is the rules file's, else the config file's. ``hits`` counts
    this process's matches by rule name; ``on_match`` is told of each match
    too (a worker counts it for /stats and GET /rules, summed over workers),
    and ``on_change`` of each change of the rules in force (a worker's open
    sessions follow it).
    """

    __slots__ = (
        "_api",
        "_asking",
        "_barred",
        "_by_stage",
        "_client_gates",
        "_file",
        "content_thresholds",
        "gates",
        "generation",
        "hits",
        "on_change",
        "on_match",
        "reads_headers",
        "seed",
        "stage_bits",
        "stage_bits_after_connect",
        "stages",
        "started",
        "store",
        "waiting_stages",
    )

    def __init__(
        self,
        file_rules: Sequence[Rule],
        *,
        seed: int,
        started: float,
        store: Store,
    ) -> None:
        self._file: tuple[Rule, ...] = tuple(file_rules)
        self._api: tuple[Rule, ...] = ()
        self.seed = seed
        self.started = started
        self.store = store
        self.hits: Counter[str] = Counter()
        self.on_match: Callable[[str], None] = _ignore_match
        self.on_change: Callable[[], None] = _ignore_change
        self._by_stage: dict[Stage, tuple[tuple[Rule, bool, bool], ...]] = {}
        self.stages: frozenset[Stage] = frozenset()
        self.stage_bits = 0  # stages as hooks.bits(), what a session's core watches
        self.stage_bits_after_connect = 0
        self.waiting_stages: frozenset[Stage] = frozenset()
        self.content_thresholds: tuple[int, ...] = ()
        self.gates: dict[Stage, Gate] = {}
        self._client_gates: dict[Stage, ClientGate] = {}
        self._barred: dict[str | None, frozenset[Stage]] = {}
        self._asking = Ask("", "", "", Selection(), 0.0, 0.0, 0)  # evaluate_now's question
        self.generation = 0  # moves on at every change of the rules in force
        self._index()

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule in force, in the order they are consulted."""
        return self._api + self._file

    def _index(self) -> None:
        by_stage: dict[Stage, list[Rule]] = {}
        for rule in self.rules:
            by_stage.setdefault(rule.stage, []).append(rule)
        # Each rule with what is known of it before any event: whether it has
        # matchers to check (a content rule always has its after_bytes) and
        # whether it decides in the store.
        self._by_stage = {
            stage: tuple(
                (
                    rule,
                    rule.matchers != _NO_MATCHERS or stage is Stage.CONTENT,
                    rule.stateful,
                )
                for rule in rules
            )
            for stage, rules in by_stage.items()
        }
        self.stages = frozenset(self._by_stage)
        self.stage_bits = bits(self.stages)
        # What a session watches once its client is barred from connect.
        self.stage_bits_after_connect = self.stage_bits & ~CONNECT_BIT
        # A value no rule of its stage can match skips the stage (rules.gates).
        self.gates = gates(by_stage)
        self._client_gates = client_gates(by_stage)
        self._barred = {}
        self.generation += 1
        # Asked for every stage event: worked out here, once per change of
        # the rules, not each time. The stages whose decision may have to
        # wait for the store: those of stateful rules, unless the store
        # answers at once (in this process or in shared memory).
        self.waiting_stages = (
            frozenset()
            if self.store.synchronous
            else frozenset(r.stage for r in self.rules if r.stateful)
        )
        # Collecting a message's header fields costs every message: only
        # sessions that begin while a rule can read them do it.
        self.reads_headers = any(r.matchers.header is not None for r in self.rules)
        # The byte counts at which content is reported: every rule's after_bytes.
        self.content_thresholds = tuple(
            sorted(
                {
                    r.actions.after_bytes
                    for r in by_stage.get(Stage.CONTENT, ())
                    if r.actions.after_bytes > 0
                }
            )
        )
        self.on_change()

    def barred(self, client: str | None) -> frozenset[Stage]:
        """The stages at which no rule can hold for ``client`` (rules.gates.ClientGate).

        Worked out once per client address while the rules stay the same: a
        load test comes from few addresses, and this is asked per session.
        """
        found = self._barred.get(client)
        if found is None:
            found = frozenset(
                stage for stage, gate in self._client_gates.items() if not gate.admits(client)
            )
            remember(self._barred, client, found, _BARRED_CACHE)
        return found

    async def _keep_state(self) -> None:
        await self.store.keep(frozenset(rule.fingerprint for rule in self.rules))

    def add(self, rule: Rule) -> None:
        """An API rule, checked before every other from now on."""
        if any(r.name == rule.name for r in self.rules):
            raise NameInUseError(f'rule "{rule.name}" already exists')
        self._api = (rule, *self._api)
        self._index()

    async def remove(self, name: str) -> bool:
        """Remove the API rule ``name`` (and its state); False if there is none."""
        kept = tuple(r for r in self._api if r.name != name)
        if len(kept) == len(self._api):
            return False
        self._api = kept
        self._index()
        await self._keep_state()
        return True

    def replace_api(self, rules: Sequence[Rule]) -> None:
        """The API rules as the hub holds them (newest first); state lives in the store."""
        self._api = tuple(rules)
        self._index()

    async def remove_api(self) -> None:
        self._api = ()
        self._index()
        await self._keep_state()

    async def expire(self, now: float) -> list[str]:
        """Remove API rules whose ``ttl`` ran out; their names."""
        gone = [r.name for r in self._api if r.expires is not None and now >= r.expires]
        if gone:
            self._api = tuple(r for r in self._api if r.name not in gone)
            self._index()
            await self._keep_state()
        return gone

    def clashes(self, file_rules: Iterable[Rule]) -> list[str]:
        """A problem for each of ``file_rules`` named like an API rule in force."""
        api_names = {r.name for r in self._api}
        return [
            f'rule "{r.name}": {NAME_OF_AN_API_RULE}' for r in file_rules if r.name in api_names
        ]

    async def reload(self, file_rules: Iterable[Rule], seed: int) -> None:
        """New file rules (SIGHUP): a rule keeps its state only if its name and
        definition are unchanged (same fingerprint); API rules stay. A file rule
        named like an API rule is a ``RulesError``."""
        rules = tuple(file_rules)
        clashes = self.clashes(rules)
        if clashes:
            # Refused whole, like any broken rules file: the old rules stay in force.
            raise RulesError(clashes)
        self._file = rules
        self.seed = seed
        self._index()
        await self._keep_state()

    async def reset(self) -> None:
        """POST /reset: counts, greylist entries and spent rules start over."""
        self.hits.clear()
        await self.store.reset()

    async def spent(self) -> frozenset[str]:
        """Names of the rules that used up their ``times``."""
        acted = await self.store.acted()
        return frozenset(
            r.name
            for r in self.rules
            if r.selection.times is not None and acted.get(r.fingerprint, 0) >= r.selection.times
        )

    async def evaluate(self, stage: Stage, facts: Facts, now: float) -> Verdict | None:
        """The verdict of the first rule that acts on this event, else None."""
        rules = self._by_stage.get(stage)
        if rules is None:
            return None
        debug = log.isEnabledFor(logging.DEBUG)
        for rule, check, stateful in rules:
            if not self._holds(rule, check, facts, now, debug):
                continue
            if stateful:
                ask = self._ask(rule, facts, now)
                answer = await self.store.decide(ask)
                verdict = self._selected(
                    rule, facts, ask.key, answer.act, answer.count, debug=debug
                )
            else:
                verdict = self._stateless(rule, facts, now, debug)
            if verdict is not None:
                return verdict
        return None

    def evaluate_now(self, stage: Stage, facts: Facts, now: float, debug: bool) -> Verdict | None:
        """``evaluate`` for a store that answers at once (``Store.synchronous``).

        The same steps, without a coroutine, and with one question to the
        store reused from decision to decision (the store has answered it
        before the next is asked): this runs at every watched event of a
        server whose workers share their state in memory. ``debug``: the
        rules log at debug level (the caller has asked the logger already).
        """
        rules = self._by_stage.get(stage)
        if rules is None:
            return None
        for rule, check, stateful in rules:
            if not self._holds(rule, check, facts, now, debug):
                continue
            if stateful:
                ask = self._ask(rule, facts, now, self._asking)
                answer = self.store.decide_now(ask)
                if not answer.act and not debug:
                    continue  # a match not selected: nothing more to do
                verdict = self._selected(
                    rule, facts, ask.key, answer.act, answer.count, debug=debug
                )
            else:
                verdict = self._stateless(rule, facts, now, debug)
            if verdict is not None:
                return verdict
        return None

    def _holds(self, rule: Rule, check: bool, facts: Facts, now: float, debug: bool) -> bool:
        """Whether ``rule`` matches this event; a match is counted."""
        stage = facts.stage
        if rule.expires is not None and now >= rule.expires:
            return False
        if check:
            miss = failing(rule.matchers, facts)
            if miss is None and stage is H.CONTENT and not crossed(rule.actions.after_bytes, facts):
                miss = "after_bytes"
            if miss is not None:
                if debug:
                    log.debug(
                        "[%s] rule %s at %s: %s does not hold",
                        facts.session,
                        rule.name,
                        stage,
                        miss,
                    )
                return False
        self.hits[rule.name] += 1
        self.on_match(rule.name)
        return True

    def _elapsed(self, rule: Rule, now: float) -> float:
        return now - (self.started if rule.started is None else rule.started)

    def _ask(self, rule: Rule, facts: Facts, now: float, ask: Ask | None = None) -> Ask:
        """The store's question for a match of a stateful rule, written into
        ``ask`` (a synchronous store's, asked again at once) or a new one."""
        if ask is None:
            ask = Ask.__new__(Ask)  # every field is set below
        selection = rule.selection
        ask.rule_id = rule.fingerprint
        ask.rule = rule.name
        ask.key = key_value(selection.key, facts)
        ask.selection = selection
        ask.now = now
        ask.elapsed = self._elapsed(rule, now)
        ask.seed = self.seed
        return ask

    def _stateless(self, rule: Rule, facts: Facts, now: float, debug: bool) -> Verdict | None:
        # No count is needed: no selection to count for, no delay range to draw.
        act = in_window(rule.selection, self._elapsed(rule, now))
        return self._selected(rule, facts, "", act, self.hits[rule.name], debug=debug)

    def _selected(
        self, rule: Rule, facts: Facts, key: str, act: bool, count: int, *, debug: bool
    ) -> Verdict | None:
        """The verdict of a rule that matched, if its selection says "act"."""
        if debug:
            log.debug(
                "[%s] rule %s at %s: match %d of %r %s",
                facts.session,
                rule.name,
                rule.stage,
                count,
                key,
                "acts" if act else "not selected",
            )
        return self._verdict(rule, key, count) if act else None

    def _verdict(self, rule: Rule, key: str, count: int) -> Verdict:
        actions = rule.actions
        reply = actions.reply
        if reply is None and rule.selection.greylist is not None:
            reply = GREYLISTED
        elif reply is None and actions.close:
            reply = CLOSING
        delay = 0.0
        if actions.delay is not None:
            low, high = actions.delay
            delay = low + (high - low) * unit(self.seed, rule.name, key, count, "delay")
        return Verdict(
            rule=rule.name,
            reply=reply,
            delay=delay,
            close=actions.close,
            drop=actions.drop,
            reset=actions.reset,
            hang=actions.hang,
            tarpit=actions.tarpit,
            tls=actions.tls,
        )
