"""What the supervisor and a worker say to each other, and how it is framed.

The channel is a private ``socketpair`` between two processes of the same
program, so messages are pickled dataclasses (never data from the network),
each sent as one frame: a 4-byte big-endian length, then the pickle.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass

from blackhole.config.model import Config, Listener
from blackhole.errors import BlackholeError

_HEADER = struct.Struct("!I")
# A Config pickles to a few kilobytes; anything near this is a bug, not a message.
MAX_FRAME = 16 * 1024 * 1024


class ChannelError(BlackholeError):
    """The other end sent something that is not a frame: treat it as dead."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Certificate files a worker loads its TLS context from.

    An ``ssl.SSLContext`` cannot cross a process boundary, so the supervisor
    passes file paths (copies it made while it could still read the
    originals) and each worker builds its own context.
    """

    cert: str
    key: str
    dhparams: str | None = None
    less_secure: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a worker serves with; a reload sends a new one."""

    config: Config
    mailname: str
    tls: TLSFiles | None
    generation: int


@dataclass(frozen=True, slots=True)
class CounterSlot:
    """Where a worker counts (``observe.tally``): the shared region's descriptor
    (the same number in the worker: it is inherited), the worker's own slot,
    and the listener labels the region's layout was made from."""

    fd: int
    slot: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker is started with.

    ``listeners`` describe the listening sockets passed alongside, in the same
    order; ``fds`` are their descriptor numbers in the worker (spawn only).
    """

    number: int
    settings: Settings
    listeners: tuple[Listener, ...]
    fds: tuple[int, ...] = ()
    counters: CounterSlot | None = None


# --- supervisor -> worker ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    spec: WorkerSpec


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int


@dataclass(frozen=True, slots=True)
class Reload:
    settings: Settings


@dataclass(frozen=True, slots=True)
class ReopenLogs:
    config: Config


@dataclass(frozen=True, slots=True)
class Retire:
    """Stop accepting and exit once the sessions in flight have ended on their own.

    Sent to a worker whose successor serves already (after a reload changed
    the listeners, or ``workers`` went down): unlike SIGTERM, idle sessions
    are not told 421, so no client sees the replacement.
    """


# --- worker -> supervisor ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker could not start; it exits with ``exit_code`` right after."""

    exit_code: int
    message: str


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int


@dataclass(frozen=True, slots=True)
class Reloaded:
    generation: int


@dataclass(frozen=True, slots=True)
class ReloadFailed:
    generation: int
    message: str


def encode(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class FrameReader:
    """Turns a byte stream back into messages, whatever the chunking."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[object]:
        self._buffer += data
        messages: list[object] = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ChannelError(f"frame of {length} bytes on the control channel")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            try:
                # Only ever our own process at the other end of a socketpair.
                messages.append(pickle.loads(payload))  # noqa: S301
            except Exception as exc:
                raise ChannelError(f"unreadable frame on the control channel: {exc!r}") from None
        return messages
