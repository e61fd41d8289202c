"""Answering a message: the mode's reply (and delay), and answers held back.

A message's answer comes from the steering's rules when the worker has any,
else from the mode (``policy``). A delayed answer is a timer, never a sleep:
input is held meanwhile (``server.flow``) and other sessions run on.

Reading goes on while an answer waits: what the client pipelines is held
back (and reading stops at its first byte), but a client that hangs up is
seen at once. Its session ends then, and its message counts as dropped: it
never saw the answer. Paused, the socket's EOF or reset went unnoticed until
the delay ran out, and the answer was counted as given to a client long gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived
from blackhole.protocol.replies import Reply
from blackhole.server.flow import FlowControl

log: Final = logging.getLogger("blackhole.session")


class Answers(FlowControl):
    """A message's answer, now or later."""

    __slots__ = ()

    def _message(self, core: SMTPConnection, event: MessageReceived) -> bool:
        """Answer a complete message; True if the answer is delayed."""
        self.server.stats.messages += 1
        self.obs.message_read(event)
        if self.steer is not None:
            return self.steer.message(core, event)  # end rules, then address conventions
        return self.answer(core, event)

    def answer(self, core: SMTPConnection, event: MessageReceived) -> bool:
        """The mode's answer to a message; True if it is delayed."""
        reply: Reply | list[Reply]
        if event.lmtp:
            # RFC 2033 4.2: one reply per recipient, each decided on its own;
            # they go out together, after the longest delay any of them drew.
            decided = [self._decide(event, recipient) for recipient in event.recipients]
            reply, delay = [r for r, _ in decided], max(seconds for _, seconds in decided)
        else:
            reply, delay = self._decide(event, None)
        if self.debug:
            log.debug(
                "[%s] message of %d bytes to %d recipient(s): %s in %.3gs",
                self.session_id,
                event.size,
                len(event.recipients),
                reply.code if isinstance(reply, Reply) else " ".join(str(r.code) for r in reply),
                delay,
            )
        if delay > 0:
            self.obs.delayed(delay)
            # Answer later; other sessions are not blocked by this.
            self._delay = self.loop.call_later(delay, self._deliver, reply)
            return True
        core.send(reply)
        return False

    def _decide(self, event: MessageReceived, recipient: str | None) -> tuple[Reply, float]:
        """(reply, delay) for a message (SMTP), or for one recipient of it (LMTP)."""
        return self.server.policy.decide(self.ctx.defaults, event.mode, event.delay)

    def _deliver(self, reply: Reply | list[Reply]) -> None:
        self._delay = None
        core = self.core
        if core is None or self.transport is None or self.closing:
            return
        self.last = self.server.clock()
        self.obs.meter.start()  # delay excluded
        try:
            core.send(reply)
            self._pump(core)
            self._continue()
        except Exception:
            self._internal_error()

    # --- held answers (server.steering) ---------------------------------------------

    def hold(self, delay: float, then: Callable[[], None]) -> None:
        """Run ``then`` in ``delay`` seconds; input is held meanwhile."""
        self._delay = self.loop.call_later(delay, self._held, then)

    def _held(self, then: Callable[[], None]) -> None:
        self._delay = None
        self.last = self.server.clock()
        self.obs.meter.start()  # the injected delay excluded
        then()

    def carry_on(self, core: SMTPConnection) -> None:
        """A held answer was given: write it and read on."""
        self._pump(core)
        self._continue()

    def touch(self) -> None:
        self.last = self.server.clock()  # a tarpit's bytes are a sign of life
