"""Stopping at the rules' stages, and applying their verdicts to a command.

The core reports a watched stage (``StageReached``) and holds its input; the
adapter's ``resolve()`` then runs one of two closures kept here: ``apply``
(the success path, with the rule's reply if it gave one) or ``refuse`` (the
failure path, with the rule's reply). Nothing here runs unless a stage is
watched: the hot path only ever tests ``watch``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from blackhole.protocol import replies as R
from blackhole.protocol.commands import Commands
from blackhole.protocol.events import StageReached
from blackhole.protocol.hooks import Stage
from blackhole.protocol.modes import Mode
from blackhole.protocol.replies import Reply
from blackhole.protocol.states import State

# A row of states.TABLE with its method names resolved, as the core dispatches it.
Entry = tuple[
    Callable[..., Any] | None,  # check(self, arg) -> facts | Reply
    Callable[..., None],  # commit(self, facts)
    State,  # next state on success
    Stage | None,  # the rules stage reported
    bool,  # a junk command
    Reply | None,  # the 503 when refused in this state
    Callable[..., None] | None,  # refuser(self, arg, reply): BDAT reads its chunk
]


class Staging(Commands):
    """The stage and verdict half of ``SMTPConnection``."""

    content_threshold: int | None

    if TYPE_CHECKING:

        def _line(self, raw: bytes, staged: bool = False) -> None: ...

    def _greet(self, reply: Reply | None) -> None:
        greeting = reply or R.greeting(self.settings.mailname, self.settings.lmtp)
        self._out.append(greeting.wire)

    def _refuse_session(self, reply: Reply) -> None:
        # RFC 5321 3.1: after a 554-style greeting only QUIT is of any use.
        self._out.append(reply.wire)
        self.state = State.REFUSED

    def _command_stage(self, raw: bytes, verb: str, text: str) -> None:
        # RULES.md "command": every command line, before it is dispatched; a
        # rule's reply here is the answer and the command does not run.
        def apply(reply: Reply | None) -> None:
            if reply is None:
                self._line(raw, staged=True)
            else:
                self._out.append(reply.wire)

        def refuse(reply: Reply) -> None:
            self._out.append(reply.wire)

        if verb == "AUTH":
            # RFC 4954 4: an initial response holds credentials; rules see
            # the mechanism, never them.
            text = " ".join(text.split()[:2])
        event = StageReached(Stage.COMMAND, verb, text, message=self.message_number)
        self._pause(event, Mode.COMMAND, apply, refuse)

    def _command_reached(self, verb: str, entry: Entry, facts: Any) -> None:
        _, commit, next_state, stage, _, _, refuser = entry
        assert stage is not None
        # What the stage is about (StageReached.value), from the checked facts.
        arg = facts.string if isinstance(facts, re.Match) else facts
        value = arg if stage in (Stage.HELO, Stage.RCPT, Stage.VRFY) else None
        size = None
        message = self.message_number
        if stage is Stage.MAIL:
            value, size, message = facts.address, facts.size, message + 1

        def apply(reply: Reply | None) -> None:
            self.state = next_state
            mark = len(self._out)
            self._override = reply
            commit(self, facts)
            if self._override is not None:  # not taken by the command itself
                del self._out[mark:]
                self._out.append(self._override.wire)
                self._override = None

        def refuse(reply: Reply) -> None:
            if refuser is None:
                self._out.append(reply.wire)
            else:
                refuser(self, arg, reply)

        self._pause(StageReached(stage, verb, value, size, message), Mode.COMMAND, apply, refuse)

    def _check_threshold(self, size: int, resume: Mode) -> None:
        threshold = self.content_threshold
        if self._content_seen or threshold is None or size < threshold:
            return
        if Stage.CONTENT not in self.watch:
            return
        self._content_seen = True

        def keep(reply: Reply | None) -> None:
            # A reply here is the message's answer, once the content has ended.
            self._final = reply

        event = StageReached(Stage.CONTENT, size=size, message=self.message_number)
        self._pause(event, resume, keep, keep)
