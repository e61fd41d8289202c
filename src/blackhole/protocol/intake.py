"""A message's content: DATA and BDAT, read to the end, and the end itself.

``Intake`` runs the two ways content arrives (RFC 5321 DATA, dot-terminated;
RFC 3030 BDAT, counted chunks), refuses a BDAT whose chunk must still be read
and dropped, and ends the message: reported to the adapter
(``MessageReceived``, whose answer comes back through ``send()``) or refused
here (too big, a line too long, a failed chunk). The readers themselves are
``reader.py``'s; the content stage between the end and the report is
``staging.py``'s.
"""

from __future__ import annotations

import re

from blackhole.protocol import modes as M
from blackhole.protocol import replies as R
from blackhole.protocol import states as S
from blackhole.protocol.commands import Commands
from blackhole.protocol.events import MessageReceived
from blackhole.protocol.metering import END
from blackhole.protocol.reader import DATA_PREFIX, ChunkReader, DataReader, HeaderScanner
from blackhole.protocol.replies import Reply

# RFC 3030 section 4: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CRLF.
_BDAT_ARGS = re.compile(r"([0-9]{1,20})(?: +(LAST))? *", re.IGNORECASE)
# The size of a BDAT that is otherwise malformed: its first word, if a number.
_BDAT_SIZE = re.compile(r" *([0-9]{1,20})(?: |$)")


class Intake(Commands):
    """The DATA and BDAT handlers, and the end of a message."""

    def _message_complete(self, size: int, headers: HeaderScanner | None) -> None:
        # In staging.py: the content stage, then the message. A method, not a
        # TYPE_CHECKING stub: mypyc compiles no conditional class bodies.
        raise NotImplementedError

    @property
    def in_content(self) -> bool:
        """Inside a message's content, or at a content stage within it."""
        mode = self._resume if self._mode is M.STAGE else self._mode
        return mode is M.DATA or mode is M.BDAT

    @property
    def content_read(self) -> int | None:
        """Bytes of this transaction's message data read so far, for a
        session that ends in the middle of it; None when none was read."""
        reader = self._reader
        if reader is not None:
            # Past its end (an end stage or an answer pending), what the
            # input holds is commands pipelined behind it, not content.
            held = reader.read_so_far(self._in) if self.in_content else reader.size
            return held or None
        chunks = self._chunks
        return chunks.size or None if chunks is not None else None

    def check_data(self, arg: str) -> str | Reply:
        if arg.strip():
            return R.R501_NO_ARGS
        if self.binarymime:
            return R.R503_BINARYMIME_DATA  # RFC 3030 section 3
        return arg

    def do_data(self, arg: str) -> None:
        self._out.append(R.R354_DATA.wire)
        self._reader = DataReader(self.settings.max_message_size, self._headers())
        self._mode = M.DATA
        if self._in:
            self._in[0:0] = DATA_PREFIX  # content pipelined behind DATA: the prefix first
        else:
            # The usual case, nothing read past DATA: an append, where the
            # compiled build makes a slice object for the insertion.
            self._in += DATA_PREFIX

    def _data_done(self, reader: DataReader) -> None:
        if reader.oversize:
            self._refuse_message(R.R552_TOO_BIG)
        elif reader.long_line:
            self._refuse_message(R.R500_LINE_TOO_LONG)
        else:
            self._message_complete(reader.size, reader.headers)

    def _refuse_message(self, reply: Reply) -> None:
        """Fail the message once its content has been read to the end."""
        self._prompted_by(END)
        self._answer_end(reply)
        self._mode = M.COMMAND

    def _answer_end(self, reply: Reply) -> None:
        """Answer the end of the content with a failure; the transaction is over.

        RFC 2033 4.2 and 4.3: in LMTP the end of DATA, and a BDAT LAST, get
        one reply per accepted recipient, whatever they say: a pipelining
        client counts the replies it reads by its recipients.
        """
        if self.settings.lmtp:
            self._out.extend([reply.wire] * len(self.recipients))
        else:
            self._out.append(reply.wire)
        self._end_transaction()

    def _emit_message(
        self, size: int, headers: HeaderScanner | None, reply: Reply | None = None
    ) -> None:
        mode = delay = None
        if headers is not None and self.settings.dynamic_switch:
            mode, delay = headers.switches()
        collected = headers if self.settings.collect_headers else None
        sender, final = self.sender or "", self._final
        self.events.append(
            MessageReceived(
                size,
                sender,
                self.recipients,
                mode,
                delay,
                collected,
                reply or final,
                self.settings.lmtp,
            )
        )
        # Postfix: the junk command count is reset after mail is delivered.
        self._junk = 0
        self._mode = M.WAITING

    def check_bdat(self, arg: str) -> re.Match[str] | Reply:
        # A refusal here goes to skip_bdat (the row's refuse handler), which
        # reads the chunk when its size can be read.
        if self._bdat_failed:
            return R.R503_BDAT_FAILED
        m = _BDAT_ARGS.fullmatch(arg)
        return R.R501_BDAT_SYNTAX if m is None else m

    def do_bdat(self, m: re.Match[str]) -> None:
        # A rule's reply for this BDAT answers its chunk (not a LAST one: the
        # message's answer comes from send()).
        self._chunk_reply, self._override = self._override, None
        self._read_chunk(int(m.group(1)), m.group(2) is not None, counting=True)

    def skip_bdat(self, arg: str, refusal: Reply) -> None:
        """A refused BDAT (out of sequence, malformed, by a rule, or after a
        failed chunk): its chunk is read and dropped, then ``refusal``.

        RFC 3030 section 2: the chunk's octets follow the command whatever
        the answer, so they must never be read as commands; only a size that
        cannot be read leaves nothing to skip (its octets will fail as
        commands). Inside a transaction a refused chunk fails it: the client
        sends no more chunks, and those it had pipelined are read and
        refused here (503), never taken for a shorter message.
        """
        m = _BDAT_ARGS.fullmatch(arg)
        if m is not None:
            size, last = int(m.group(1)), m.group(2) is not None
        else:
            sized = _BDAT_SIZE.match(arg)
            if sized is None:
                self._out.append(R.R501_BDAT_SYNTAX.wire)
                return
            size, last = int(sized.group(1)), False  # malformed: not taken for LAST
        if self.state is S.RCPT or self.state is S.BDAT:
            # Failed: chunks already pipelined are refused (check_bdat); the
            # LAST or any other command ends the transaction (Dispatch._line).
            self.state = S.BDAT
            self._bdat_failed = True
        self._chunk_reply = refusal
        self._read_chunk(size, last, counting=False)

    def _read_chunk(self, size: int, last: bool, *, counting: bool) -> None:
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = ChunkReader(self._headers())
        chunks.start(size, last, counting)
        self._mode = M.BDAT
        if not chunks.left:
            self._bdat_chunk_done(chunks)

    def _bdat_chunk_done(self, chunks: ChunkReader) -> None:
        self._mode = M.COMMAND
        reply, self._chunk_reply = self._chunk_reply, None
        if not chunks.counting:
            assert reply is not None
            if chunks.last and self._bdat_failed:
                # The failed transaction's last chunk ends it, answered as any
                # refused last chunk is (RFC 2033 4.3: per recipient in LMTP).
                self._refuse_message(reply)
            else:
                self._out.append(reply.wire)
        elif chunks.size > self.settings.max_message_size:
            # RFC 3030 section 2: an error on any chunk fails the transaction.
            if chunks.last:
                self._refuse_message(R.R552_TOO_BIG)
            else:
                self._bdat_failed = True
                self._out.append(R.R552_TOO_BIG.wire)
        elif chunks.last:
            self._message_complete(chunks.size, chunks.headers)
        else:
            self._out.append((reply or R.bdat_chunk(chunks.size)).wire)
