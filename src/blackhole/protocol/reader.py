"""Message content readers: DATA (dot-stuffed) and the header switch scanner.

Both work on the connection's input ``bytearray`` in place and throw content
away as soon as it is counted, so memory stays flat whatever the message size.
All searching is done over whole chunks, by ``bytes.find``/``count`` and two
compiled patterns (C speed); nothing here loops over lines in Python on the
hot path.
"""

from __future__ import annotations

import re
from typing import Final

from blackhole.protocol.limits import MAX_HEADER_SCAN, MAX_TEXT_LINE

# RFC 5321 section 4.1.1.4: the content ends with <CRLF>.<CRLF>, and only that:
# a bare <LF>.<LF> (or <CR>.<CR>, <LF>.<CRLF>...) never ends it, which is what
# defeats SMTP smuggling (CVE-2023-51764 and friends).
TERMINATOR: Final = b"\r\n.\r\n"
# Bytes kept back after a chunk with no terminator: enough for a terminator
# that straddles two reads to be found whole in the next one.
_KEEP: Final = len(TERMINATOR) - 1
# RFC 5321 section 4.5.2: a line that starts with "." had one more "." put in
# front by the client; every "<CRLF>." inside the content is one stuffed dot.
_STUFFED: Final = b"\r\n."
# These searches run over every octet of every message. A pattern of literal
# octets scans about twice as fast as bytes.find() of the same octets (CPython
# 3.11, 64 KB of generated, prose or base64 content: 19 us against 40 us for
# _STUFFED), though callgrind counts more instructions for it.
_FIRST_STUFFED: Final = re.compile(re.escape(_STUFFED))
_TERMINATOR: Final = re.compile(re.escape(TERMINATOR))
# RFC 5322 section 2.1: the header section ends at the first empty line, ended
# by CRLF or (leniently) a bare LF: one search for the earlier of the two.
_BLANK_LINE: Final = re.compile(rb"\n\r?\n")
DATA_PREFIX: Final = b"\r\n"

# Header field names are case-insensitive (RFC 5322 section 1.2.2). Lowering
# the kept header section and finding the prefix costs a few instructions per
# octet; an IGNORECASE regex search cost ten times as many, on every message.
_SWITCH_PREFIX: Final = b"x-blackhole-"


class HeaderScanner:
    """Keeps the header section (up to a cap): X-Blackhole-* switches, header rules.

    RFC 5322 section 2.1: the header section ends at the first empty line. The
    classic server also read switches from the body; this one never does.
    """

    __slots__ = ("_buf", "_fields", "done", "end")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fields: list[tuple[str, str]] | None = None  # parsed once done
        self.done = False
        # Once done: the bytes the header section took, its blank line
        # included (as sent, dot-stuffing and all); the cap when it is longer.
        self.end = 0

    def ended_within(self, size: int) -> bool:
        """Whether the header section had ended by the ``size``-th content byte."""
        return self.done and self.end <= size

    def feed(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        """Take ``data[start:end]``; only the header part of it is ever copied."""
        if self.done:
            return
        if end is None:
            end = len(data)
        buf = self._buf
        stop = min(end, start + MAX_HEADER_SCAN - len(buf))
        # Cut at a blank line found in the new bytes (no copy needed to look).
        blank = _BLANK_LINE.search(data, start, stop)
        if blank is not None:
            stop = blank.start() + 1  # after the last header line's LF
            if not buf and data[start] != 13 and data[start] != 10:
                # The usual case: the whole header section in the first read.
                # What the general path below finds, without its searches.
                buf += data[start:stop]
                self.end = blank.end() - start  # the blank line included
                self.done = True
                return
        old = len(buf)
        buf += data[start:stop]
        if buf.startswith(b"\r\n") or buf.startswith(b"\n"):
            self.end = 2 if buf[0] == 13 else 1
            buf.clear()  # no header section at all
            self.done = True
            return
        # A blank line split across two reads is found where the parts join:
        # an LF, then an empty line ended by CRLF or a bare LF ("\r\n\r\n"
        # holds "\n\r\n"), exactly the two patterns looked for above.
        joined = _BLANK_LINE.search(buf, max(0, old - 2))
        if joined is not None:
            del buf[joined.start() + 1 :]  # after the last header line's LF
            self.end = joined.end()
            self.done = True
        elif blank is not None:
            self.end = len(buf) + blank.end() - stop  # and the blank line's rest
            self.done = True
        elif len(buf) >= MAX_HEADER_SCAN:
            # Stopped by the cap, not by the blank line: a field cut in the
            # middle could read as another valid value ("30" as "3"), so only
            # whole lines are kept.
            del buf[buf.rfind(b"\n") + 1 :]
            self.end = MAX_HEADER_SCAN
            self.done = True

    def switches(self) -> tuple[str | None, str | None]:
        """(X-Blackhole-Mode, X-Blackhole-Delay) raw values; the last one wins."""
        if self._buf.lower().find(_SWITCH_PREFIX) < 0:  # the fields are parsed only if found
            return None, None
        mode = delay = None
        for name, value in self.fields():
            lowered = name.lower()
            if lowered == "x-blackhole-mode":
                mode = value
            elif lowered == "x-blackhole-delay":
                delay = value
        return mode, delay

    def fields(self) -> list[tuple[str, str]]:
        """The header section kept so far, as (name, value) pairs."""
        if self._fields is not None:
            return self._fields
        fields = _header_fields(bytes(self._buf))
        if self.done:  # no more bytes can come: parsed once for every reader
            self._fields = fields
        return fields


def _header_fields(buf: bytes) -> list[tuple[str, str]]:
    """Unfolded ``(name, stripped value)`` pairs (RFC 5322 2.2.3).

    A line is read as UTF-8 (RFC 6532: internationalised headers), else as
    Latin-1, which decodes any byte: header rules match text, and a header
    that is not UTF-8 must not be able to hide from them or break the session.
    """
    fields: list[tuple[str, str]] = []
    for raw in buf.replace(b"\r\n", b"\n").split(b"\n"):
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            line = raw.decode("latin-1")
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        if colon:
            fields.append((name.strip(), value.strip()))
    return fields


class DataReader:
    """Reads one DATA content section from the front of the input buffer.

    The core puts ``DATA_PREFIX`` in front of the buffer when DATA starts, so
    that an empty message (``.<CRLF>`` right after 354) and a first line that
    starts with a dot look like every other line.
    """

    __slots__ = ("_dot", "_line", "_skip", "headers", "long_line", "max_size", "size")

    def __init__(self, max_size: int, headers: HeaderScanner | None) -> None:
        self.max_size = max_size
        self.size = 0
        self.long_line = False
        self._skip = len(DATA_PREFIX)  # prefix bytes not yet consumed: not content
        self._line = 0  # length of the partial line left at the end of the last chunk
        self._dot = False  # that partial line starts with a (stuffed) dot
        self.headers = headers

    @property
    def oversize(self) -> bool:
        return self.size > self.max_size

    def consume(self, buf: bytearray) -> bool:
        """Count and drop content from ``buf``; True once the terminator is consumed.

        On True, ``buf`` holds what followed the terminator (pipelined commands).
        """
        # The terminator starts with a "<CRLF>." as every stuffed dot does:
        # one search for the first of them usually settles the chunk, where
        # a search for the terminator and a count of the dots read it twice.
        found = _FIRST_STUFFED.search(buf)
        first = -1 if found is None else found.start()
        end = -1  # where the terminator starts, once found
        stuffed = 0
        if first >= 0:
            if len(buf) > first + 4 and buf[first + 3] == 13 and buf[first + 4] == 10:
                end = first  # the terminator itself: no stuffed dot before it
            else:
                term = _TERMINATOR.search(buf, first)
                end = -1 if term is None else term.start()
                # The content ends with the CRLF that starts the terminator;
                # the stuffed dots are those whose CRLF starts before ``end``.
                if end >= 0:
                    stuffed = buf.count(_STUFFED, first, end + 2)
        if end >= 0:
            self._account(buf, end + 2, stuffed)
            del buf[: end + len(TERMINATOR)]
            return True
        n = len(buf) - _KEEP
        if n > 0:
            # count(_STUFFED, first, n + 2) counts the occurrences that *start*
            # before n, so one straddling the cut is counted now and never again.
            self._account(buf, n, buf.count(_STUFFED, first, n + 2) if first >= 0 else 0)
            del buf[:n]
        return False

    def read_so_far(self, buf: bytearray) -> int:
        """The content read when the session ends before the terminator:
        what was counted, and what ``buf`` still holds back (the last few
        octets, in case they began a terminator), less any prefix byte and
        stuffed dot among them."""
        held = bytes(buf[min(self._skip, len(buf)) :])
        return self.size + len(held) - held.count(_STUFFED)

    def _account(self, buf: bytearray, n: int, stuffed: int) -> None:
        skip = min(self._skip, n)
        self._skip -= skip
        self.size += n - skip - stuffed
        if self.oversize:
            return  # discarding: nothing more to learn from this message
        if self.headers is not None and not self.headers.done:
            self.headers.feed(buf, skip, n)
        if not self.long_line:
            self._check_lines(buf, n)

    def _check_lines(self, buf: bytearray, n: int) -> None:
        # RFC 5321 4.5.3.1.6: text lines of at most 1000 octets, CRLF
        # included, one more for a line that starts with a stuffed dot
        # (section 4.5.2). Rather than split the chunk into lines (an object
        # per line), jump: from a line start s, the last LF in the next MAX
        # octets proves every line starting before it is short enough, so
        # each rfind skips a whole window of short lines at C speed. Only a
        # line longer than MAX is looked at: it passes if it is MAX + 1 and
        # starts with a dot.
        limit = MAX_TEXT_LINE
        # The first window is what the line in progress may still take.
        reach = min(n, limit - self._line)
        last = buf.rfind(b"\n", 0, reach) if reach > 0 else -1
        searched = reach  # no LF after ``last`` up to here
        if last < 0:
            last = self._first_line(buf, n, reach)
            if last < 0:
                return
            searched = last + 1
        start = last + 1
        while n - start > limit:
            searched = start + limit
            last = buf.rfind(b"\n", start, searched)
            if last < 0:
                if buf[start] != 46 or buf[searched] != 10:  # ".", LF
                    self.long_line = True
                    return
                last = searched
            start = last + 1
        # The line left in progress: none when the chunk ends one (as the
        # content always does), else from the chunk's last LF on.
        if buf[n - 1] == 10:
            self._line = 0
            return
        if searched < n:
            last = buf.rfind(b"\n", start, n)
            if last >= 0:
                start = last + 1
        self._line = n - start
        self._dot = buf[start] == 46

    def _first_line(self, buf: bytearray, n: int, reach: int) -> int:
        """The chunk's first LF, past ``reach``, once the line in progress is
        found short enough through it; -1 when it is too long or goes on."""
        limit = MAX_TEXT_LINE
        first = buf.find(b"\n", max(reach, 0), n) if reach < n else -1
        if first < 0:
            if not self._line:
                self._dot = buf[0] == 46  # "."
            self._line += n
            if self._line > limit + self._dot:  # over, even before its LF
                self.long_line = True
            return -1
        # Past the window: it is short enough only as MAX + 1 octets that
        # start with a dot.
        dot = self._dot if self._line else buf[0] == 46
        if self._line + first + 1 > limit + dot:
            self.long_line = True
            return -1
        return first


class ChunkReader:
    """Reads the BDAT chunks of one message (RFC 3030 section 2).

    A chunk is exactly the announced number of octets, whatever they are: no
    dot-stuffing, no terminator, no line rules. A refused chunk is read and
    dropped all the same (its bytes must never be taken for commands), but
    does not count toward the message.
    """

    __slots__ = ("counting", "headers", "last", "left", "size")

    def __init__(self, headers: HeaderScanner | None) -> None:
        self.size = 0
        self.left = 0
        self.last = False
        self.counting = False
        self.headers = headers

    def start(self, size: int, last: bool, counting: bool) -> None:
        self.left = size
        self.last = last
        self.counting = counting

    def consume(self, buf: bytearray) -> bool:
        """Take what belongs to the chunk from ``buf``; True once it is complete."""
        n = min(self.left, len(buf))
        if self.counting:
            self.size += n
            headers = self.headers
            if headers is not None and not headers.done:
                headers.feed(buf, 0, n)
        del buf[:n]
        self.left -= n
        return not self.left
