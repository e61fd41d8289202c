"""One session under rules: evaluate at each watched stage (``server.carrying`` acts).

``SMTPProtocol`` makes a ``Steering`` when the worker has rules or address
conventions, and calls it when the core reports a stage and when a message
ends. Order (RULES.md): rules first, then address conventions, then the mode.

Rules without state, and rules counting in a store that answers at once
(shared memory), decide in the same callback, without a task or a coroutine
(``RuleSet.evaluate_now``). Rules that count in a
store across processes (Redis, through the hub) may wait for it: a task
decides, and the core holds the session's
input until the verdict is applied. A store that fails answers ``451 4.3.0``
for that event; the session carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from blackhole.protocol import hooks as H
from blackhole.protocol import replies as R
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived, StageReached
from blackhole.protocol.hooks import Stage, Verdict
from blackhole.rules.addresses import address_verdict
from blackhole.rules.engine import RuleSet
from blackhole.rules.match import Facts
from blackhole.rules.store import StoreUnavailableError
from blackhole.server import lmtpend
from blackhole.server.carrying import Carrying, Done, for_each
from blackhole.server.rulefacts import Where, command_facts, end_facts, stage_facts
from blackhole.server.rulestate import WorkerRules

if TYPE_CHECKING:
    from blackhole.server.connection import SMTPProtocol

log: Final = logging.getLogger("blackhole.rules")


class Steering(Carrying):
    """The rules' side of one session: the deciding half (``Carrying`` acts)."""

    __slots__ = (
        "_barred",
        "_client",
        "_core",
        "_debug",
        "_early",
        "_generation",
        "_where",
        "rules",
    )

    def __init__(self, session: SMTPProtocol, rules: WorkerRules, core: SMTPConnection) -> None:
        super().__init__(session)
        self.rules = rules
        self._core = core
        # At debug level every rule that does not hold says so. The worker
        # read the level once (ServerState): a logging call costs about 1,000
        # instructions, and this was read at every watched event.
        self._debug = session.server.rules_debug
        # A verdict screen() reached for the stage event the core reports next.
        self._early: Verdict | None = None
        self._client = session.client[0] if session.client is not None else None
        self._where: Where | None = None  # made when a stage is first evaluated
        # The stages no rule can act on for this client (rules.gates), for
        # the rules in force at ``generation``.
        self._generation = rules.ruleset.generation
        self._barred = rules.ruleset.barred(self._client)
        if H.CONNECT in self._barred and not self._screen_off():
            # The greeting is the core's first step, so its stage is screened
            # here, before start(): by the client, the only thing known yet.
            # (No conventions here: the rules' stages are the ruleset's.)
            core.watch = rules.ruleset.stage_bits_after_connect
        else:
            core.watch = rules.stage_bits
        core.content_thresholds = rules.content_thresholds
        core.screen = self.screen

    def follow(self, core: SMTPConnection) -> None:
        """The rules changed while the session runs: the core watches what
        they watch from now on (screen() rebars the client by generation)."""
        core.watch = self.rules.stage_bits
        core.follow_thresholds(self.rules.content_thresholds)

    @property
    def where(self) -> Where:
        """The session's fixed facts; most sessions under rules that match
        nothing never need them (and the socket's address they read)."""
        where = self._where
        if where is None:
            session = self.session
            assert session.transport is not None
            listener = session.ctx.listener
            where = self._where = Where.of(
                session.session_id, session.transport, listener.host, session.client, listener.name
            )
        return where

    # --- the first look (rules.gates) ----------------------------------------------

    def _screen_off(self) -> bool:
        # Conventions decide on their own; at debug level every rule that
        # does not hold says so.
        return bool(self.rules.conventions) or self._debug

    def _rebar(self, ruleset: RuleSet) -> None:
        """The rules changed (API, SIGHUP): which stages this client is barred from."""
        self._generation = ruleset.generation
        self._barred = ruleset.barred(self._client)

    # screen() and _screen_end() run at every watched command and message:
    # their checks are written out rather than shared through more calls.
    def screen(self, stage: Stage, value: str | None) -> bool:
        """The core's question at a command stage: must it stop for the rules?

        No when no rule can act on ``value`` (rules.gates), and no when the
        rules, decided here at once, do not act: the command then runs as if
        its stage were not watched, without the event, the pause and the
        resolve that a stop costs. A rule that acts is applied when the
        core reports the stage (``reached``), with the verdict reached here.
        """
        rules = self.rules
        if rules.conventions or self._debug:
            return True  # as _screen_off()
        ruleset = rules.ruleset
        if ruleset.generation != self._generation:
            self._rebar(ruleset)
        # Each test first asks whether there is anything to look up: hashing
        # a Stage (a str subclass) costs a few hundred instructions.
        barred = self._barred
        if barred and stage in barred:
            return False
        gates = ruleset.gates
        if gates:
            gate = gates.get(stage)
            if gate is not None and not gate.admits(value):
                return False
        waiting = ruleset.waiting_stages
        if stage is H.MAIL or (waiting and stage in waiting):
            # Decided when reached: mail's event brings what only the core
            # knows (SIZE=, the new message's number); a waiting store, a task.
            return True
        # Any other command stage: the facts its event will bring.
        facts = command_facts(self.where, self._core, stage, value)
        verdict = self.evaluate_now(stage, facts, False)  # not at debug level: see above
        if verdict is None:
            return False
        self._early = verdict
        return True

    def _screen_end(self, event: MessageReceived) -> bool:
        rules = self.rules
        if rules.conventions:
            return True  # as _screen_off()
        ruleset = rules.ruleset
        if H.END not in ruleset.stages:
            return False  # no rule at end (the core reports every message)
        if self._debug:
            return True  # as _screen_off()
        if ruleset.generation != self._generation:
            self._rebar(ruleset)
        if H.END in self._barred:
            return False
        gate = ruleset.gates.get(H.END)
        if gate is None:
            return True
        if gate.field == "recipient":
            return gate.admits_any(event.recipients)
        return gate.admits(event.sender)

    # --- the two entry points -----------------------------------------------------

    def reached(self, core: SMTPConnection, event: StageReached) -> bool:
        """A watched stage; True if its verdict comes later (the pump stops)."""
        stage = event.stage
        verdict = self._early
        if verdict is not None:  # screen() decided
            self._early = None
            return self._act(core, stage, verdict, self._resolver(core, stage), later=False)
        facts = stage_facts(self.where, core, event)
        waiting = self.rules.ruleset.waiting_stages
        if waiting and stage in waiting:
            return self._later(core, stage, facts, self._resolver(core, stage))
        verdict = self.evaluate_now(stage, facts, self._debug)
        if verdict is None:
            # No rule acts (the usual case): the command runs as usual.
            core.resolve(None)
            return False
        return self._act(core, stage, verdict, self._resolver(core, stage), later=False)

    def _resolver(self, core: SMTPConnection, stage: Stage) -> Done:
        def done(verdict: Verdict | None) -> bool:
            if verdict is not None and verdict.tls is not None and stage is H.STARTTLS:
                self.tls_fault = verdict.tls
            core.resolve(verdict)
            return False

        return done

    def message(self, core: SMTPConnection, event: MessageReceived) -> bool:
        """A message has ended (``end``); True if its answer comes later."""
        session = self.session
        if event.reply is not None:
            # A content rule chose the message's answer already.
            core.send(for_each(event, event.reply))
            return False

        if event.lmtp:
            return lmtpend.decide(self, core, event)
        if not self._screen_end(event):
            return session.answer(core, event)  # no rule can act: the mode decides

        def done(verdict: Verdict | None) -> bool:
            if verdict is None or not (
                verdict.reply or verdict.close or verdict.drop or verdict.reset or verdict.hang
            ):
                return session.answer(core, event)  # the mode decides
            return self.end(core, event, verdict)

        facts = end_facts(self.where, core, event)
        if H.END in self.rules.ruleset.waiting_stages:
            return self._later(core, H.END, facts, done)
        verdict = self.evaluate_now(H.END, facts, self._debug)
        return self._act(core, H.END, verdict, done, later=False)

    # --- deciding -------------------------------------------------------------------

    def _later(self, core: SMTPConnection, stage: Stage, facts: Facts, done: Done) -> bool:
        """Decide in a task: a store across processes may make the rules wait."""
        task = self.session.loop.create_task(self.evaluate(stage, facts))
        task.add_done_callback(lambda t: self._decided(core, stage, t, done))
        return True

    def evaluate_now(self, stage: Stage, facts: Facts, debug: bool) -> Verdict | None:
        """``evaluate`` where no rule waits: rules without state, or a store
        that answers at once (shared memory). No task, no coroutine."""
        try:
            verdict = self.rules.ruleset.evaluate_now(stage, facts, time.time(), debug)
        except Exception as exc:
            return self._failed(stage, exc)
        if verdict is None and self.rules.conventions:
            verdict = address_verdict(self.rules.conventions, stage, facts)
        return verdict

    async def evaluate(self, stage: Stage, facts: Facts) -> Verdict | None:
        """Rules, then address conventions; a failing store answers 451 4.3.0."""
        try:
            verdict = await self.rules.ruleset.evaluate(stage, facts, time.time())
        except Exception as exc:
            return self._failed(stage, exc)
        if verdict is None and self.rules.conventions:
            verdict = address_verdict(self.rules.conventions, stage, facts)
        return verdict

    def _failed(self, stage: Stage, exc: Exception) -> Verdict:
        # An outage (StoreUnavailableError) is logged once where it is
        # seen, by the hub or the store; here it would be once per event.
        unavailable = isinstance(exc, StoreUnavailableError)
        log.log(
            logging.DEBUG if unavailable else logging.WARNING,
            "[%s] rules store failed at %s, answering 451 4.3.0: %s",
            self.session.session_id,
            stage,
            exc,
        )
        return Verdict("(store unavailable)", reply=R.R451_INTERNAL)

    def _decided(
        self, core: SMTPConnection, stage: Stage, task: asyncio.Task[Verdict | None], done: Done
    ) -> None:
        if task.cancelled() or self.session.core is not core or self.session.closing:
            return
        self._act(core, stage, task.result(), done, later=True)
