"""Keeping ``workers`` workers alive: start, watch, kill, retire, restart.

The worker side of the supervisor, without signals or the poll loop: every
time comes from the injected clock and every process from the injected
``launch``, so that tests can drive it with fakes and no wall-clock wait.

- A dead worker is replaced at once, then with back-off (``Backoff``).
- A worker that does not answer ``misses`` heartbeats in a row, or is not
  ready ``start_timeout`` seconds after it started, is killed (and so
  replaced).
- A worker that is replaced on purpose (a rolling restart, fewer workers)
  is retired: it finishes its sessions, then exits; one stuck past its
  deadline is killed.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from blackhole.config.model import Config
from blackhole.errors import EX_SOFTWARE, BlackholeError, PermissionDenied
from blackhole.supervisor.backoff import Backoff
from blackhole.supervisor.counting import Counting
from blackhole.supervisor.heartbeat import Heartbeat
from blackhole.supervisor.messages import (
    CounterSlot,
    Failed,
    Ping,
    Pong,
    Ready,
    Reload,
    Reloaded,
    ReloadFailed,
    Retire,
    Settings,
    WorkerSpec,
)
from blackhole.supervisor.process import SPAWN, describe_exit
from blackhole.supervisor.reload import Bound
from blackhole.supervisor.slots import Process, Slot, Slots

log = logging.getLogger("blackhole.supervisor")

# (method, spec, listening sockets, descriptors a forked child must close)
Launch = Callable[[str, WorkerSpec, Sequence[socket.socket], Iterable[int]], Process]


@dataclass(frozen=True, slots=True)
class Timing:
    """The supervisor's clocks; all injectable so that tests never wait long."""

    misses: int = 3  # unanswered heartbeats before a worker counts as hung
    start_timeout: float = 30.0  # from start to "ready", else killed
    stop_margin: float = 5.0  # after grace_period, leftovers are killed
    backoff: Callable[[], Backoff] = Backoff
    clock: Callable[[], float] = time.monotonic


@dataclass(slots=True)
class Phase:
    """Where the server is in its life; decides what a worker's exit means."""

    announced: bool = False  # every worker was ready once: start-up is over
    stopping: bool = False


def _ignore(*_args: object) -> None:
    return None


class Fleet:
    def __init__(self, launch: Launch, timing: Timing, phase: Phase) -> None:
        self.launch = launch
        self.timing = timing
        self.clock = timing.clock
        self.phase = phase
        self.slots = Slots()
        self.settings: Settings | None = None
        self.bound: Bound = []
        self.method = SPAWN
        self.hub_path: str | None = None  # the hub's socket, passed to every worker
        self.state_fd: int | None = None  # the rule state region, passed to every worker
        # When the server started: every worker's rule windows count from it.
        self.started = time.time()
        self.next_ping = 0.0
        # Descriptors of the supervisor's own that a forked worker must close.
        self.own_fds: Callable[[], list[int]] = list
        # Told when a slot's worker is ready, and when any slot's state moved
        # (a reload waits for every worker to serve the new settings).
        self.on_ready: Callable[[Slot], None] = _ignore
        self.on_change: Callable[[], None] = _ignore
        # The shared counters (None: workers count privately, as in tests
        # that drive the fleet with fake processes).
        self.counting: Counting | None = None

    @property
    def config(self) -> Config:
        assert self.settings is not None
        return self.settings.config

    # --- starting and stopping processes ---------------------------------------------

    def add(self, number: int) -> None:
        slot = Slot(number, self._heartbeat(), self.timing.backoff())
        self.slots.add(slot)
        self.start(slot)

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(self.config.heartbeat_interval, self.timing.misses)

    def start(self, slot: Slot) -> None:
        assert self.settings is not None
        slot.start_at = None
        listeners = tuple(lst for lst, _ in self.bound)
        counting = self.counting
        counters = None
        if counting is not None:
            counters = CounterSlot(counting.tally.fd, counting.acquire(), counting.names)
        spec = WorkerSpec(
            slot.number,
            self.settings,
            listeners,
            hub=self.hub_path,
            counters=counters,
            started=self.started,
            state_fd=self.state_fd,
        )
        sockets = [sock for _listener, sock in self.bound]
        close_in_child = [fd for process in self.slots.processes() for fd in process.fds()]
        close_in_child += self.own_fds()
        try:
            process = self.launch(self.method, spec, sockets, close_in_child)
        except OSError as exc:
            if counting is not None and counters is not None:
                counting.release_slot(counters.slot)
            message = f"cannot start worker {slot.number}: {exc.strerror or exc}"
            if not self.phase.announced:
                raise PermissionDenied(message) from None
            delay = slot.backoff.delay(0.0)
            log.error("%s; trying again in %gs", message, delay)
            slot.start_at = self.clock() + delay
            return
        if counting is not None and counters is not None:
            counting.bind(process.pid, counters.slot)
        slot.process = process
        slot.ready = False
        slot.started_at = self.clock()
        slot.generation = self.settings.generation
        slot.kill_reason = slot.kill_cause = None
        slot.failure = None
        slot.rules_refused = False
        slot.heartbeat = self._heartbeat()
        log.debug("worker %d starting (pid %d, %s)", slot.number, process.pid, self.method)

    def kill(self, slot: Slot, reason: str, cause: str) -> None:
        assert slot.process is not None
        slot.kill_reason, slot.kill_cause = reason, cause
        log.warning("worker %d (pid %d) %s: killing it", slot.number, slot.process.pid, reason)
        slot.process.signal(signal.SIGKILL)

    def retire(self, process: Process) -> None:
        """Let ``process`` finish its sessions and exit, without replacing it."""
        grace = self.config.grace_period
        # Its sessions end on their own within grace, then get another grace
        # period after being told to go (Worker.stop): past that, it is stuck.
        process.deadline = self.clock() + 2 * grace + self.timing.stop_margin
        self.slots.retiring.append(process)
        if not process.send(Retire()):
            process.signal(signal.SIGTERM)

    def signal_all(self, signum: int) -> None:
        for process in self.slots.processes():
            process.signal(signum)

    def kill_all(self) -> None:
        """SIGKILL every process and wait for each; nothing is left to supervise."""
        processes = list(self.slots.processes())
        for process in processes:
            process.signal(signal.SIGKILL)
        for process in processes:
            process.reap()
            self._fold(process)
        self.slots.clear()

    def _fold(self, process: Process) -> None:
        """A reaped worker's counts join the retired totals (observe.tally)."""
        if self.counting is not None:
            self.counting.release(process.pid)

    def broadcast(self, message: object) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.ready:
                slot.process.send(message)

    def roll(self) -> None:
        """Replace every worker; each old one serves until its successor is ready."""
        for slot in self.slots:
            if slot.process is not None:
                if slot.predecessor is None and slot.ready:
                    slot.predecessor = slot.process
                else:
                    self.retire(slot.process)
                slot.process, slot.ready = None, False
            self.start(slot)

    def resize(self, workers: int) -> None:
        for number in range(1, workers + 1):
            if number not in self.slots:
                log.info("starting worker %d (workers = %d)", number, workers)
                self.add(number)
        for number in [n for n in self.slots.numbers() if n > workers]:
            slot = self.slots.pop(number)
            log.info("stopping worker %d (workers = %d)", number, workers)
            for process in (slot.process, slot.predecessor):
                if process is not None:
                    self.retire(process)

    # --- the watchdog ---------------------------------------------------------------

    def deadlines(self) -> list[float]:
        """When ``tick`` has something to do next (besides the messages)."""
        times = [p.deadline for p in self.slots.retiring if p.deadline is not None]
        for slot in self.slots:
            if slot.start_at is not None:
                times.append(slot.start_at)
            if slot.process is not None and not slot.ready:
                times.append(slot.started_at + self.timing.start_timeout)
            if slot.ready:
                times.append(self.next_ping)
                if slot.heartbeat.outstanding_since is not None:
                    times.append(slot.heartbeat.outstanding_since + slot.heartbeat.timeout)
        return times

    def tick(self) -> None:
        """Start what is due, kill what is stuck, ping who is due a heartbeat."""
        now = self.clock()
        for old in self.slots.retiring:
            if old.deadline is not None and now > old.deadline:
                log.warning("worker %d (pid %d) is still draining: killing it", old.number, old.pid)
                old.deadline = None
                old.signal(signal.SIGKILL)
        ping = now >= self.next_ping
        if ping:
            self.next_ping = now + self.config.heartbeat_interval
        for slot in self.slots:
            process = slot.process
            if process is None:
                if slot.start_at is not None and now >= slot.start_at:
                    self.start(slot)
                continue
            if slot.kill_reason is not None:
                continue
            if not slot.ready:
                if now - slot.started_at > self.timing.start_timeout:
                    timeout = self.timing.start_timeout
                    self.kill(slot, f"did not start within {timeout:g}s", "start_timeout")
                continue
            overdue = slot.heartbeat.overdue(now)
            if overdue is not None:
                self.kill(slot, f"did not answer the heartbeat for {overdue:.1f}s", "heartbeat")
            elif ping:
                process.send(Ping(slot.heartbeat.sent(now)))

    # --- what the workers say, and how they end --------------------------------------

    def receive(self, process: Process) -> None:
        messages = process.receive()
        slot = self.slots.slot_of(process)
        if messages is None or slot is None:
            return  # EOF (the sentinel follows), or a retiring worker
        for message in messages:
            if isinstance(message, Pong):
                slot.heartbeat.answered(message.seq)
            elif isinstance(message, Ready):
                self._ready(slot)
            elif isinstance(message, Reloaded):
                slot.generation = max(slot.generation, message.generation)
                slot.rules_refused = bool(message.rules_refused)
                for problem in message.rules_refused:
                    log.error("worker %d keeps its previous rules: %s", slot.number, problem)
                self.on_change()
            elif isinstance(message, ReloadFailed):
                log.error("worker %d: %s", slot.number, message.message)
                slot.kill_reason = "could not apply the new configuration"
                slot.kill_cause = "reload_failed"
                process.signal(signal.SIGTERM)  # replaced by one started with it
            elif isinstance(message, Failed):
                slot.failure = message

    def _ready(self, slot: Slot) -> None:
        assert slot.process is not None and self.settings is not None
        slot.ready = True
        if self.phase.stopping:
            return  # it got SIGTERM already; nothing to announce any more
        if slot.predecessor is not None:
            self.retire(slot.predecessor)
            slot.predecessor = None
        if slot.generation < self.settings.generation:
            slot.process.send(Reload(self.settings))  # a reload came while it started
        self.on_ready(slot)

    def exited(self, process: Process) -> None:
        """``process``'s sentinel is readable: reap it, and replace it if it was serving."""
        if process.returncode is not None:
            return
        # Its last words (a start-up failure, say) are read before its death.
        while process.control is not None:
            self.receive(process)
        code = process.reap()
        self._fold(process)
        if process in self.slots.retiring:
            self.slots.retiring.remove(process)
            exit_text = describe_exit(code)
            log.debug("worker %d (pid %d, retired) %s", process.number, process.pid, exit_text)
            return
        replaced = self.slots.successor_slot(process)
        if replaced is not None:
            replaced.predecessor = None
            exit_text = describe_exit(code)
            log.warning("old worker %d (pid %d) %s", replaced.number, process.pid, exit_text)
            return
        slot = self.slots.slot_of(process)
        if slot is None:  # pragma: no cover - every process belongs somewhere
            return
        self._lost(slot, process, code)

    def _lost(self, slot: Slot, process: Process, code: int) -> None:
        now = self.clock()
        uptime = now - slot.started_at
        reason = describe_exit(code)
        if slot.kill_reason is not None:
            reason += f" ({slot.kill_reason})"
        if slot.failure is not None:
            reason += f": {slot.failure.message}"
        slot.process, slot.ready = None, False
        if self.phase.stopping:
            log.info("worker %d (pid %d) %s", slot.number, process.pid, reason)
            return
        if not self.phase.announced:
            raise _startup_error(slot, reason)
        if self.counting is not None:
            self.counting.restarted(slot.kill_cause or _exit_cause(code))
        delay = slot.backoff.delay(uptime)
        slot.start_at = now + delay
        if delay == 0:
            what = "starting a new one"
        else:
            what = f"restarting it in {delay:g}s ({slot.backoff.failures} quick exits in a row)"
        log.warning(
            "worker %d (pid %d) %s, %.1fs after it started; %s",
            slot.number,
            process.pid,
            reason,
            uptime,
            what,
        )
        self.on_change()


# The signals of a fault in the process itself (a bug in C code, an abort);
# any other signal came from outside: kill -9, the OOM killer, a SIGTERM.
_FAULTS = frozenset(
    (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGSYS)
)


def _exit_cause(code: int) -> str:
    """OBSERVE.md blackhole_worker_restarts_total's reason for an exit we did not ask for."""
    if code >= 0:
        return "exited"
    return "crashed" if -code in _FAULTS else "killed"


def _startup_error(slot: Slot, reason: str) -> BlackholeError:
    """A worker died before the server was up: the server fails with its reason."""
    failure = slot.failure
    if failure is not None:
        error = BlackholeError(failure.message)
        error.exit_code = failure.exit_code
    else:
        error = BlackholeError(f"worker {slot.number} {reason} during start-up")
        error.exit_code = EX_SOFTWARE
    return error
