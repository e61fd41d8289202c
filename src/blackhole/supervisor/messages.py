"""What the supervisor and a worker say to each other.

The channel is a private ``socketpair`` between two processes of the same
program; its framing (pickled dataclasses, length-prefixed) is
``blackhole.framing``'s, shared with the hub's channels and re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from blackhole.config.model import Config, Listener
from blackhole.framing import ChannelError, FrameReader, encode


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
    # The listeners' own cert=/key= pairs, as configured, with their copies.
    listener_tls: tuple[tuple[tuple[str, str], TLSFiles], ...] = ()


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
    order; ``fds`` are their descriptor numbers in the worker (spawn only);
    ``hub`` is the path of the hub's socket (``blackhole.hub``); ``started``
    is when the server started (wall clock), the same for every worker and
    every restart: rule windows count from it (RULES.md "window").
    """

    number: int
    settings: Settings
    listeners: tuple[Listener, ...]
    fds: tuple[int, ...] = ()
    hub: str | None = None
    started: float | None = None
    counters: CounterSlot | None = None
    # The rule state region (``hub.sharedstore``), inherited like the
    # counters' (None: decisions go to the hub, whose store is Redis).
    state_fd: int | None = None


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
    # The new file rules' problems when the worker kept its previous rules
    # (one named like an API rule the supervisor could not check, the hub not
    # answering); the rest of the configuration is applied all the same.
    rules_refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReloadFailed:
    generation: int
    message: str


__all__ = ["ChannelError", "FrameReader", "encode"]
