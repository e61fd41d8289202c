"""Worker slots: which process serves as worker N, and which are on their way out.

Pure bookkeeping: no signals sent, no clock read. A slot outlives its
processes (a crash or a rolling restart puts a new process in the same
slot), so a slot's back-off and a worker's number survive its replacement.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from blackhole.supervisor.backoff import Backoff
from blackhole.supervisor.heartbeat import Heartbeat
from blackhole.supervisor.messages import Failed


class Process(Protocol):
    """What the supervisor needs of a worker process (``process.WorkerProcess``)."""

    number: int
    pid: int
    sentinel: int  # readable once the process is gone
    control: socket.socket | None  # the control channel, None once closed
    returncode: int | None
    deadline: float | None  # retiring: killed if still there then

    def fds(self) -> list[int]: ...

    def send(self, message: object) -> bool: ...

    def receive(self) -> list[object] | None: ...

    def signal(self, signum: int) -> None: ...

    def reap(self) -> int: ...


@dataclass(slots=True)
class Slot:
    """Worker number ``number``: whatever process currently fills it."""

    number: int
    heartbeat: Heartbeat
    backoff: Backoff
    process: Process | None = None
    ready: bool = False
    started_at: float = 0.0
    generation: int = 0  # of the Settings the process serves with
    start_at: float | None = None  # a (re)start is due then
    kill_reason: str | None = None  # why we killed it, for the exit line
    kill_cause: str | None = None  # and as blackhole_worker_restarts_total's reason
    failure: Failed | None = None  # what it said before dying at start-up
    rules_refused: bool = False  # it kept its previous file rules at the last reload
    # The previous process, still serving the old listeners until this one is
    # ready (a reload that changed listeners): no refused connection meanwhile.
    predecessor: Process | None = None


class Slots:
    """The slots by number, plus retired processes still finishing their sessions."""

    def __init__(self) -> None:
        self._by_number: dict[int, Slot] = {}
        self.retiring: list[Process] = []

    def __iter__(self) -> Iterator[Slot]:
        return iter(list(self._by_number.values()))

    def __len__(self) -> int:
        return len(self._by_number)

    def __contains__(self, number: int) -> bool:
        return number in self._by_number

    def add(self, slot: Slot) -> None:
        self._by_number[slot.number] = slot

    def pop(self, number: int) -> Slot:
        return self._by_number.pop(number)

    def numbers(self) -> list[int]:
        return list(self._by_number)

    def processes(self) -> Iterator[Process]:
        """Every live process: current ones, predecessors and retiring ones."""
        for slot in self._by_number.values():
            if slot.process is not None:
                yield slot.process
            if slot.predecessor is not None:
                yield slot.predecessor
        yield from self.retiring

    def slot_of(self, process: Process) -> Slot | None:
        """The slot ``process`` currently fills (not as a predecessor)."""
        for slot in self._by_number.values():
            if slot.process is process:
                return slot
        return None

    def successor_slot(self, process: Process) -> Slot | None:
        """The slot in which ``process`` serves on until its successor is ready."""
        for slot in self._by_number.values():
            if slot.predecessor is process:
                return slot
        return None

    def all_ready(self) -> bool:
        return all(slot.ready for slot in self._by_number.values())

    def clear(self) -> None:
        self._by_number.clear()
        self.retiring.clear()
