"""Input flow control: the core gets input a slice at a time, and none while
the client is behind on reading replies or an answer is delayed.

A client that pipelines commands and never reads the replies once made the
server buffer them without end (20 MB of "EXPN all" became 1 GB of replies):
the rest of a read is held back (``_backlog``) and reading stops until the
transport's write buffer drains (``resume_writing``) or the answer is given.
"""

from __future__ import annotations

from typing import Final

from blackhole.protocol.core import SMTPConnection
from blackhole.server.endings import Endings

# Input goes to the core at most this many bytes at a time. The wordiest
# command, "EXPN all", makes 64 times its size in reply, so one slice adds at
# most about 512 KiB past the transport's high-water mark.
SLICE: Final = 8192


class FlowControl(Endings):
    """Holding input back, and feeding it on."""

    __slots__ = ()

    def pause_writing(self) -> None:
        # The client is not reading its replies as fast as it sends commands.
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.last = self.server.clock()  # the client is reading: not idle
        try:
            self._continue()
        except Exception:
            self._internal_error()

    def _feed(self, core: SMTPConnection, data: bytes) -> None:
        """Give ``data`` to the core a slice at a time; hold the rest back when
        the client is behind on reading replies or an answer is delayed."""
        for start in range(0, len(data), SLICE):
            if self.core is core and (self._write_paused or self._delay is not None):
                self._backlog = data[start:]
                assert self.transport is not None
                self.transport.pause_reading()
                return
            # After STARTTLS (self.core is None) the core still gets the rest:
            # it counts and drops plaintext sent behind the command.
            core.receive_data(data[start : start + SLICE])
            self._pump(core)

    def _continue(self) -> None:
        """Feed held-back input and read again, once nothing holds input back."""
        core = self.core
        transport = self.transport
        if core is None or transport is None or self.closing:
            return  # closed, or in a TLS handshake (start_tls resumes reading)
        if self._write_paused or self._delay is not None:
            return
        backlog, self._backlog = self._backlog, b""
        if backlog:
            self._feed(core, backlog)
        held = self._backlog or self._write_paused or self._delay is not None
        if self.core is core and not self.closing and not held:
            if self._half_closed:
                self._close()  # all it sent before its EOF is answered
            else:
                transport.resume_reading()
