"""Stopping at the rules' stages, and applying their verdicts to a command.

The core reports a watched stage (``StageReached``) and holds its input; the
adapter's ``resolve()`` then runs one of two closures kept here: ``apply``
(the success path, with the rule's reply if it gave one) or ``refuse`` (the
failure path, with the rule's reply). Nothing here runs unless a stage is
watched: the hot path only ever tests ``watch``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any, Final

from blackhole.protocol import hooks as H
from blackhole.protocol import modes as M
from blackhole.protocol import replies as R
from blackhole.protocol import states as S
from blackhole.protocol.events import StageReached
from blackhole.protocol.hooks import Stage
from blackhole.protocol.intake import Intake
from blackhole.protocol.modes import Mode
from blackhole.protocol.reader import ChunkReader, HeaderScanner
from blackhole.protocol.replies import Reply
from blackhole.protocol.states import State

# Final: read directly by the compiled build, where re.Match is a lookup in
# the re module at every watched command.
_MATCH: Final = re.Match

# A row of states.TABLE with its method names resolved, as the core dispatches it.
Entry = tuple[
    Callable[..., Any] | None,  # check(self, arg) -> facts | Reply
    Callable[..., None],  # commit(self, facts)
    State,  # next state on success
    Stage | None,  # the rules stage reported
    int,  # that stage's bit (hooks.BIT), 0 for none
    bool,  # a junk command
    Reply | None,  # the 503 when refused in this state
    Callable[..., None] | None,  # refuser(self, arg, reply): BDAT reads its chunk
]


class Staging(Intake):
    """The stage and verdict half of ``SMTPConnection``."""

    content_thresholds: tuple[int, ...]
    screen: Callable[[Stage, str | None], bool] | None
    # states.TABLE or LMTP_TABLE, resolved: a verb's entry per state, indexed
    # by the state (set by SMTPConnection; dispatch.py).
    _dispatch: tuple[dict[str, Entry], ...]

    def _line(self, raw: bytes, staged: bool = False) -> None:
        # In dispatch.py. A method, not a TYPE_CHECKING stub: mypyc compiles no
        # conditional class bodies.
        raise NotImplementedError

    def _greet(self, reply: Reply | None) -> None:
        greeting = reply or R.greeting(self.settings.mailname, self.settings.lmtp)
        self._out.append(greeting.wire)

    def _refuse_session(self, reply: Reply) -> None:
        # RFC 5321 3.1: after a 554-style greeting only QUIT is of any use.
        self._out.append(reply.wire)
        self.state = S.REFUSED

    def _command_stage(self, raw: bytes, verb: str, text: str) -> None:
        # RULES.md "command": every command line, before it is dispatched; a
        # rule's reply here is the answer and the command does not run.
        def apply(reply: Reply | None) -> None:
            if reply is None:
                self._line(raw, staged=True)
            else:
                refuse(reply)

        def refuse(reply: Reply) -> None:
            # As any refusal of the command: its row's handler if it has one
            # (BDAT's chunk still follows, RFC 3030 2; AUTH's failure counts
            # under the mechanism it names).
            entry = self._dispatch[self.state].get(verb)
            refuser = None if entry is None else entry[7]
            if refuser is None:
                self._out.append(reply.wire)
            else:
                refuser(self, text.partition(" ")[2], reply)

        if verb == "AUTH":
            # RFC 4954 4: an initial response holds credentials; rules see
            # the mechanism, never them.
            text = " ".join(text.split()[:2])
        event = StageReached(H.COMMAND, verb, text, message=self.message_number)
        self._pause(event, M.COMMAND, apply, refuse)

    def _command_reached(self, verb: str, entry: Entry, facts: Any) -> None:
        stage = entry[3]
        assert stage is not None
        # What the stage is about (StageReached.value), from the checked facts:
        # HELO's, RCPT's and VRFY's checks give the name or address as a str.
        if stage is H.MAIL:
            value = facts.address
        elif stage is H.HELO or stage is H.RCPT or stage is H.VRFY:
            value = facts
        else:
            value = None
        screen = self.screen
        if screen is not None and not screen(stage, value):
            self.state = entry[2]  # as unwatched: no event, no pause
            entry[1](self, facts)
            return
        self._stop_at(verb, entry, facts, value)

    def _stop_at(self, verb: str, entry: Entry, facts: Any, value: str | None) -> None:
        """Report the stage and hold the command until the verdict.

        Apart from ``_command_reached``: its closures are objects made at
        every call, which a command the screen lets through never needs.
        """
        _, commit, next_state, stage, _, _, _, refuser = entry
        assert stage is not None
        # type(), not isinstance(): re.Match cannot be subclassed, and in the
        # compiled build isinstance() of a class it does not own is a call.
        arg = facts.string if type(facts) is _MATCH else facts
        size = None
        message = self.message_number
        if stage is H.MAIL:
            size, message = facts.size, message + 1

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

        self._pause(StageReached(stage, verb, value, size, message), M.COMMAND, apply, refuse)

    def _check_threshold(self, size: int, headers: HeaderScanner | None, resume: Mode) -> None:
        """While content arrives: report the next threshold ``size`` has reached.

        One event per threshold, each with the threshold as its byte count, so
        that every rule acts at its own ``after_bytes`` however the content
        was cut into reads; the next is checked once this one is resolved.
        """
        if not self.watch & H.CONTENT_BIT:
            return
        at = self._next_threshold(size)
        if at is None:
            return

        def keep(reply: Reply | None) -> None:
            self._keep_final(reply)
            self._check_threshold(size, headers, resume)

        self._pause(self._content_event(at, headers), resume, keep, keep)

    def _chunk_complete(self, chunks: ChunkReader) -> None:
        """A BDAT chunk has been read to its end: first the thresholds it
        reached and a read ending inside it would have reported, then its
        answer. The same events in the same order however the chunk came in
        (one read, or many); a LAST chunk's are the message's below.
        """
        if chunks.counting and not chunks.last and self.watch & H.CONTENT_BIT:
            at = self._next_threshold(chunks.size)
            if at is not None:

                def keep(reply: Reply | None) -> None:
                    self._keep_final(reply)
                    self._chunk_complete(chunks)

                self._pause(self._content_event(at, chunks.headers), M.BDAT, keep, keep)
                return
        self._bdat_chunk_done(chunks)

    def _message_complete(self, size: int, headers: HeaderScanner | None) -> None:
        """The content has ended: the thresholds it reached and not yet reported,
        or the end itself if none was (the content stage is reported at least
        once per message, with every header read); then the message."""
        if self.watch & H.CONTENT_BIT:
            at = self._next_threshold(size)
            ended = at is None and not self._content_at and not self._content_ended
            if ended:
                at = size
                self._content_ended = True
            if at is not None:

                def done(reply: Reply | None) -> None:
                    self._keep_final(reply)
                    self._message_complete(size, headers)

                self._pause(self._content_event(at, headers, ended), M.COMMAND, done, done)
                return
        self._emit_message(size, headers)

    def follow_thresholds(self, thresholds: tuple[int, ...]) -> None:
        """The content rules changed, maybe mid-message: the thresholds still
        to report are those past the last one reported."""
        self.content_thresholds = thresholds
        self._content_next = bisect.bisect_right(thresholds, self._content_at)

    def _next_threshold(self, size: int) -> int | None:
        thresholds = self.content_thresholds
        i = self._content_next
        if i < len(thresholds) and thresholds[i] <= size:
            self._content_next = i + 1
            return thresholds[i]
        return None

    def _content_event(
        self, at: int, scanner: HeaderScanner | None, ended: bool = False
    ) -> StageReached:
        before, self._content_at = self._content_at, at
        headers = None
        # The header section as read, once it has ended within the first
        # ``at`` bytes (RFC 5322 2.1: at the first empty line), or the content
        # has: the same whatever the reads were. Else unknown: a header
        # matcher does not hold yet.
        if (
            self.settings.collect_headers
            and scanner is not None
            and (ended or scanner.ended_within(at))
        ):
            headers = scanner.fields()
        return StageReached(
            H.CONTENT, size=at, message=self.message_number, before=before, headers=headers
        )

    def _keep_final(self, reply: Reply | None) -> None:
        # A content rule's reply is the message's answer once the content has
        # ended; the first one given stands.
        if reply is not None and self._final is None:
            self._final = reply
