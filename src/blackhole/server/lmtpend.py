"""LMTP ``end`` under rules: every recipient decided on its own (RFC 2033 section 4.2).

RULES.md "LMTP": after the end of data, one reply per accepted recipient, in
RCPT order, each decided by the ``end`` rules (the recipient matcher sees the
one being answered), then the address conventions, then the mode. The
replies go out together, after the longest delay any of them drew, as the
mode's answers do without rules (``SMTPProtocol.answer``).

A verdict that ends the session (drop, reset, hang, close or a 421) for any
recipient ends it as the first such one says; the recipients after it are
not evaluated (their rules count nothing). ``close`` answers that recipient
and every later one with its 421: an LMTP client expects a reply for each
recipient, and 421 is the one that tells it the server is going away.

The observation is told which rule answered each recipient
(``SessionObservation.answered_by``), so that each recipient's event log
line and record name the rule of its own reply.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived
from blackhole.protocol.hooks import Stage, Verdict
from blackhole.protocol.replies import Reply
from blackhole.server.rulefacts import end_facts
from blackhole.server.rulestate import run_now

if TYPE_CHECKING:
    import asyncio

    from blackhole.server.steering import Steering

Verdicts = list[Verdict | None]


def ends_session(verdict: Verdict) -> bool:
    reply = verdict.reply
    return (
        verdict.drop
        or verdict.reset
        or verdict.hang
        or verdict.close
        or (reply is not None and reply.code == 421)
    )


async def _each(steering: Steering, core: SMTPConnection, event: MessageReceived) -> Verdicts:
    verdicts: Verdicts = []
    for recipient in event.recipients:
        facts = end_facts(steering.where, core, event, recipient)
        verdict = await steering.evaluate(Stage.END, facts)
        verdicts.append(verdict)
        if verdict is not None and ends_session(verdict):
            break
    return verdicts


def _rules(verdicts: Verdicts, recipients: int) -> list[str | None]:
    """The rule that answers each recipient: its own verdict's, and from a
    verdict that ends the session on, that one's for every later recipient too
    (its 421, or the drop that leaves them unanswered)."""
    rules = [None if verdict is None else verdict.rule for verdict in verdicts]
    last = verdicts[-1] if verdicts else None
    if last is not None and ends_session(last):
        rules += [last.rule] * (recipients - len(rules))
    return rules


def decide(steering: Steering, core: SMTPConnection, event: MessageReceived) -> bool:
    """Answer an LMTP message; True if the answer comes later."""
    coro: Coroutine[Any, Any, Verdicts] = _each(steering, core, event)
    if steering.rules.stateful(Stage.END):
        # The store may make each recipient's decision wait: a task decides.
        task = steering.session.loop.create_task(coro)
        task.add_done_callback(lambda t: _decided(steering, core, event, t))
        return True
    return _act(steering, core, event, run_now(coro), later=False)


def _decided(
    steering: Steering, core: SMTPConnection, event: MessageReceived, task: asyncio.Task[Verdicts]
) -> None:
    session = steering.session
    if task.cancelled() or session.core is not core or session.closing:
        return
    _act(steering, core, event, task.result(), later=True)


def _act(
    steering: Steering,
    core: SMTPConnection,
    event: MessageReceived,
    verdicts: Verdicts,
    later: bool,
) -> bool:
    session = steering.session
    replies: list[Reply] = []
    delay = 0.0
    ender: Verdict | None = None
    session.obs.answered_by(_rules(verdicts, len(event.recipients)))
    for recipient, verdict in zip(event.recipients, verdicts, strict=False):
        if verdict is not None:
            steering.note(Stage.END, verdict)
            if ends_session(verdict):
                ender = verdict
                delay = max(delay, verdict.delay)
                break
        rule_delay = verdict.delay if verdict is not None else 0.0
        if verdict is not None and verdict.reply is not None:
            reply, mode_delay = verdict.reply, 0.0
        else:
            reply, mode_delay = session._decide(event, recipient)  # the mode decides
        replies.append(reply)
        delay = max(delay, rule_delay + mode_delay)

    def finish(_: Verdict | None) -> bool:
        if ender is None:
            core.send(replies)
            return False
        return steering.end(core, event, ender, replies)

    if delay > 0:
        # A timer, not a sleep; the session's input is held meanwhile.
        session.hold(delay, lambda: steering.resume(core, finish, None))
        return True
    if later:
        steering.resume(core, finish, None)
        return True
    return finish(None)
