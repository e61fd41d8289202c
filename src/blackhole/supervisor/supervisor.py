"""The supervisor: binds, drops root, keeps ``workers`` workers alive, drains.

One process, one thread, no event loop: a ``poll`` over the workers' process
sentinels, their control channels and a self-pipe that signal handlers write
to. That is what lets it notice a dead worker the moment it dies, and what
makes forking a worker from it safe when spawning is impossible.

Start-up, in an order that leaves no privilege behind: pidfile, user lookup,
mail name, TLS files (read while still root), bind every listener, hand the
TLS directory to the user and drop privileges, start the workers, and print
the "listening on" line only when every worker serves.

Signals: TERM/INT drain (workers finish the transaction in progress within
``grace_period``; a second TERM/INT kills them at once); HUP re-reads the
config, certificates and log file and applies them to new sessions.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from blackhole.config.model import Config
from blackhole.errors import EX_OK, EX_SOFTWARE, BlackholeError, ConfigError, PermissionDenied
from blackhole.observe.logs import setup_logging
from blackhole.server.app import startup_line
from blackhole.server.mailname import resolve_mailname
from blackhole.server.sockets import bind_all
from blackhole.supervisor.daemon import Readiness
from blackhole.supervisor.heartbeat import Backoff, Heartbeat
from blackhole.supervisor.messages import (
    Failed,
    Ping,
    Pong,
    Ready,
    Reload,
    Reloaded,
    ReloadFailed,
    ReopenLogs,
    Retire,
    Settings,
    WorkerSpec,
)
from blackhole.supervisor.notify import sd_notify
from blackhole.supervisor.pidfile import PidFile
from blackhole.supervisor.privileges import resolve_target, warn_if_root
from blackhole.supervisor.process import (
    FORK,
    SPAWN,
    WorkerProcess,
    describe_exit,
    fork_worker,
    spawn_worker,
)
from blackhole.supervisor.reload import Bound, close_all, prepare
from blackhole.supervisor.signals import SignalQueue
from blackhole.supervisor.startup import become
from blackhole.supervisor.tlsfiles import TLSStore
from blackhole.supervisor.worker_main import set_title

log = logging.getLogger("blackhole.supervisor")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class Timing:
    """The supervisor's clocks; all injectable so that tests never wait long."""

    misses: int = 3  # unanswered heartbeats before a worker counts as hung
    start_timeout: float = 30.0  # from start to "ready", else killed
    stop_margin: float = 5.0  # after grace_period, leftovers are killed
    backoff: Callable[[], Backoff] = Backoff
    clock: Callable[[], float] = time.monotonic


@dataclass(slots=True)
class Slot:
    """Worker number ``number``: whatever process currently fills it."""

    number: int
    heartbeat: Heartbeat
    backoff: Backoff
    process: WorkerProcess | None = None
    ready: bool = False
    started_at: float = 0.0
    generation: int = 0  # of the Settings the process serves with
    start_at: float | None = None  # a (re)start is due then
    kill_reason: str | None = None  # why we killed it, for the exit line
    failure: Failed | None = None  # what it said before dying at start-up
    # The previous process, still serving the old listeners until this one is
    # ready (a reload that changed listeners): no refused connection meanwhile.
    predecessor: WorkerProcess | None = None


@dataclass(slots=True)
class _State:
    announced: bool = False
    stopping: bool = False
    stop_deadline: float = 0.0
    killed_leftovers: bool = False
    next_ping: float = 0.0
    reload_pending: int | None = None  # generation not yet acknowledged by all


class Supervisor:
    def __init__(
        self, config: Config, readiness: Readiness | None = None, timing: Timing | None = None
    ) -> None:
        self.config = config
        self.readiness = readiness if readiness is not None else Readiness()
        self.timing = timing if timing is not None else Timing()
        self.clock = self.timing.clock
        self.state = _State()
        self.slots: dict[int, Slot] = {}
        self.retiring: list[WorkerProcess] = []
        self.bound: Bound = []
        self.settings: Settings | None = None
        self.method = SPAWN
        self.pidfile: PidFile | None = None
        self.tls_store: TLSStore | None = None
        self.signals = SignalQueue((*_STOP_SIGNALS, signal.SIGHUP))
        self._as_user = ""

    # --- the whole life ---------------------------------------------------------------

    def run(self) -> int:
        """Start, supervise until stopped; returns the exit code (0 on a clean stop)."""
        set_title("blackhole: master")
        self.signals.install()
        try:
            self._start_up()
            return self._loop()
        finally:
            self._kill_leftovers()
            close_all([sock for _listener, sock in self.bound])
            if self.tls_store is not None:
                self.tls_store.cleanup()
            if self.pidfile is not None:
                self.pidfile.release()
            self.signals.restore()

    def _start_up(self) -> None:
        config = self.config
        if config.pidfile is not None:
            self.pidfile = PidFile(config.pidfile)
            self.pidfile.acquire()
        target = resolve_target(config.user, config.group)
        mailname = resolve_mailname(config.mailname)
        self.tls_store = TLSStore()
        tls = self.tls_store.prepare(config, mailname)
        self.bound = bind_all(config.listeners)
        if target is not None:
            if self.pidfile is not None and os.geteuid() == 0:
                self.pidfile.remove_at_exit_as_root()
            became = become(target, config, self.tls_store)
            self.method = became.method
            if not became.reads_anything:
                # Files a reload reads must now be readable by this user: say so.
                self._as_user = f" (files are read as user {target.name} now)"
            if self.pidfile is not None and not self.pidfile.removable():
                log.debug(
                    "user %s cannot write %s: the pidfile janitor removes the pidfile at exit",
                    target.name,
                    self.pidfile.path.parent,
                )
        warn_if_root(config.user)  # only once it is sure to run: not before a failed bind
        self.settings = Settings(config, mailname, tls, generation=1)
        for number in range(1, config.workers + 1):
            self._add_slot(number)

    # --- the loop -------------------------------------------------------------------

    def _loop(self) -> int:
        while True:
            if self.state.stopping and not any(True for _ in self._processes()):
                log.info("stopped")
                return EX_OK
            self._wait()
            self._handle_signals()
            self._tick()

    def _processes(self) -> Iterator[WorkerProcess]:
        for slot in self.slots.values():
            if slot.process is not None:
                yield slot.process
            if slot.predecessor is not None:
                yield slot.predecessor
        yield from self.retiring

    def _wait(self) -> None:
        poller = select.poll()
        handlers: dict[int, Callable[[], None]] = {self.signals.read_fd: self.signals.drain}
        for process in list(self._processes()):
            handlers[process.sentinel] = functools.partial(self._exited, process)
            if process.control is not None:
                handlers[process.control.fileno()] = functools.partial(self._receive, process)
        for fd in handlers:
            poller.register(fd, select.POLLIN)
        timeout = max(0.0, min(1.0, self._next_deadline() - self.clock()))
        ready = [fd for fd, _mask in poller.poll(timeout * 1000)]
        if self.signals.read_fd in ready:
            # Signals first: a SIGTERM sent to the whole process group (Ctrl-C,
            # `timeout`, `kill -- -PGID`) also ends a worker, and its exit must
            # be read as part of the stop, not as a crash.
            ready.remove(self.signals.read_fd)
            self.signals.drain()
            self._handle_signals()
        for fd in ready:
            handlers[fd]()

    def _next_deadline(self) -> float:
        now = self.clock()
        times = [now + 1.0]
        if self.state.stopping:
            times.append(self.state.stop_deadline)
        times.extend(p.deadline for p in self.retiring if p.deadline is not None)
        for slot in self.slots.values():
            if slot.start_at is not None:
                times.append(slot.start_at)
            if slot.process is not None and not slot.ready:
                times.append(slot.started_at + self.timing.start_timeout)
            if slot.ready:
                times.append(self.state.next_ping)
                if slot.heartbeat.outstanding_since is not None:
                    times.append(slot.heartbeat.outstanding_since + slot.heartbeat.timeout)
        return min(times)

    def _tick(self) -> None:
        now = self.clock()
        if self.state.stopping:
            if now >= self.state.stop_deadline and not self.state.killed_leftovers:
                self.state.killed_leftovers = True
                log.warning("grace period over: killing the workers still draining")
                for leftover in self._processes():
                    leftover.signal(signal.SIGKILL)
            return
        for old in self.retiring:
            if old.deadline is not None and now > old.deadline:
                log.warning("worker %d (pid %d) is still draining: killing it", old.number, old.pid)
                old.deadline = None
                old.signal(signal.SIGKILL)
        ping = now >= self.state.next_ping
        if ping:
            self.state.next_ping = now + self.settings_config.heartbeat_interval
        for slot in list(self.slots.values()):
            process = slot.process
            if process is None:
                if slot.start_at is not None and now >= slot.start_at:
                    self._start(slot)
                continue
            if slot.kill_reason is not None:
                continue
            if not slot.ready:
                if now - slot.started_at > self.timing.start_timeout:
                    self._kill(slot, f"did not start within {self.timing.start_timeout:g}s")
                continue
            overdue = slot.heartbeat.overdue(now)
            if overdue is not None:
                self._kill(slot, f"did not answer the heartbeat for {overdue:.1f}s")
            elif ping:
                process.send(Ping(slot.heartbeat.sent(now)))

    # --- workers -----------------------------------------------------------------------

    @property
    def settings_config(self) -> Config:
        assert self.settings is not None
        return self.settings.config

    def _add_slot(self, number: int) -> None:
        interval = self.settings_config.heartbeat_interval
        slot = Slot(number, Heartbeat(interval, self.timing.misses), self.timing.backoff())
        self.slots[number] = slot
        self._start(slot)

    def _supervisor_fds(self) -> list[int]:
        fds = [fd for process in self._processes() for fd in process.fds()]
        fds.extend(self.signals.fds())
        if self.readiness.fd is not None:
            fds.append(self.readiness.fd)
        return fds

    def _start(self, slot: Slot) -> None:
        assert self.settings is not None
        slot.start_at = None
        spec = WorkerSpec(slot.number, self.settings, tuple(lst for lst, _ in self.bound))
        sockets = [sock for _listener, sock in self.bound]
        try:
            if self.method == FORK:
                process = fork_worker(spec, sockets, self._supervisor_fds())
            else:
                process = spawn_worker(spec, sockets)
        except OSError as exc:
            message = f"cannot start worker {slot.number}: {exc.strerror or exc}"
            if not self.state.announced:
                raise PermissionDenied(message) from None
            delay = slot.backoff.delay(0.0)
            log.error("%s; trying again in %gs", message, delay)
            slot.start_at = self.clock() + delay
            return
        slot.process = process
        slot.ready = False
        slot.started_at = self.clock()
        slot.generation = self.settings.generation
        slot.kill_reason = None
        slot.failure = None
        slot.heartbeat = Heartbeat(self.settings_config.heartbeat_interval, self.timing.misses)
        log.debug("worker %d starting (pid %d, %s)", slot.number, process.pid, self.method)

    def _kill(self, slot: Slot, reason: str) -> None:
        assert slot.process is not None
        slot.kill_reason = reason
        log.warning("worker %d (pid %d) %s: killing it", slot.number, slot.process.pid, reason)
        slot.process.signal(signal.SIGKILL)

    def _retire(self, process: WorkerProcess) -> None:
        """Let ``process`` finish its sessions and exit, without replacing it."""
        grace = self.settings_config.grace_period
        # Its sessions end on their own within grace, then get another grace
        # period after being told to go (Worker.stop): past that, it is stuck.
        process.deadline = self.clock() + 2 * grace + self.timing.stop_margin
        self.retiring.append(process)
        if not process.send(Retire()):
            process.signal(signal.SIGTERM)

    def _slot_of(self, process: WorkerProcess) -> Slot | None:
        for slot in self.slots.values():
            if slot.process is process:
                return slot
        return None

    def _receive(self, process: WorkerProcess) -> None:
        messages = process.receive()
        slot = self._slot_of(process)
        if messages is None or slot is None:
            return  # EOF (the sentinel follows), or a retiring worker
        for message in messages:
            if isinstance(message, Pong):
                slot.heartbeat.answered(message.seq)
            elif isinstance(message, Ready):
                self._ready(slot)
            elif isinstance(message, Reloaded):
                slot.generation = max(slot.generation, message.generation)
                self._check_reloaded()
            elif isinstance(message, ReloadFailed):
                log.error("worker %d: %s", slot.number, message.message)
                slot.kill_reason = "could not apply the new configuration"
                process.signal(signal.SIGTERM)  # replaced by one started with it
            elif isinstance(message, Failed):
                slot.failure = message

    def _ready(self, slot: Slot) -> None:
        assert slot.process is not None and self.settings is not None
        slot.ready = True
        if self.state.stopping:
            return  # it got SIGTERM already; nothing to announce any more
        if slot.predecessor is not None:
            self._retire(slot.predecessor)
            slot.predecessor = None
        if slot.generation < self.settings.generation:
            slot.process.send(Reload(self.settings))  # a reload came while it started
        if self.state.announced:
            log.info("worker %d is serving (pid %d)", slot.number, slot.process.pid)
            self._check_reloaded()
        elif all(s.ready for s in self.slots.values()):
            self._announce()

    def _exited(self, process: WorkerProcess) -> None:
        if process.returncode is not None:
            return
        # Its last words (a start-up failure, say) are read before its death.
        while process.control is not None:
            self._receive(process)
        code = process.reap()
        if process in self.retiring:
            self.retiring.remove(process)
            exit_text = describe_exit(code)
            log.debug("worker %d (pid %d, retired) %s", process.number, process.pid, exit_text)
            return
        for replaced in self.slots.values():
            if replaced.predecessor is process:
                replaced.predecessor = None
                exit_text = describe_exit(code)
                log.warning("old worker %d (pid %d) %s", replaced.number, process.pid, exit_text)
                return
        slot = self._slot_of(process)
        if slot is None:  # pragma: no cover - every process belongs somewhere
            return
        now = self.clock()
        uptime = now - slot.started_at
        reason = describe_exit(code)
        if slot.kill_reason is not None:
            reason += f" ({slot.kill_reason})"
        if slot.failure is not None:
            reason += f": {slot.failure.message}"
        slot.process, slot.ready = None, False
        if self.state.stopping:
            log.info("worker %d (pid %d) %s", slot.number, process.pid, reason)
            return
        if not self.state.announced:
            failure = slot.failure
            error = BlackholeError(f"worker {slot.number} {reason} during start-up")
            if failure is not None:
                error = BlackholeError(failure.message)
                error.exit_code = failure.exit_code
            else:
                error.exit_code = EX_SOFTWARE
            raise error
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
        self._check_reloaded()

    def _announce(self) -> None:
        assert self.settings is not None
        self.state.announced = True
        line = startup_line(
            self.settings.config,
            self.bound,
            self.settings.mailname,
            self.settings.tls is not None,
            len(self.slots),
        )
        log.info("%s", line)
        self.readiness.ready(line)
        sd_notify(f"READY=1\nMAINPID={os.getpid()}")

    # --- signals ---------------------------------------------------------------------

    def _handle_signals(self) -> None:
        for signum in self.signals.take():
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if not self.state.stopping:
                    self._reload()
            elif self.state.stopping:
                self._stop_now(name)
            else:
                self._begin_stop(name)

    def _begin_stop(self, name: str) -> None:
        grace = self.settings_config.grace_period
        self.state.stopping = True
        self.state.stop_deadline = self.clock() + grace + self.timing.stop_margin
        log.info(
            "%s: stopping; sessions in flight have up to %gs to finish their transaction",
            name,
            grace,
        )
        sd_notify("STOPPING=1")
        # Our copies of the listening sockets go now, so that once the
        # workers close theirs the ports refuse instead of queueing.
        close_all([sock for _listener, sock in self.bound])
        self.bound = []
        for slot in self.slots.values():
            slot.start_at = None
        for process in self._processes():
            process.signal(signal.SIGTERM)

    def _stop_now(self, name: str) -> None:
        log.warning("%s again: stopping now, sessions in flight are cut", name)
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        processes = list(self._processes())
        for process in processes:
            process.signal(signal.SIGKILL)
        for process in processes:
            process.reap()
        self.slots.clear()
        self.retiring.clear()

    # --- SIGHUP ------------------------------------------------------------------------

    def _reopen_logs(self, config: Config) -> None:
        try:
            setup_logging(config)
        except ConfigError as exc:
            log.error("cannot reopen the log: %s", exc)

    def _reload(self) -> None:
        assert self.settings is not None and self.tls_store is not None
        old = self.settings
        source = old.config.config_file
        if source is None:
            log.info("SIGHUP: no config file to re-read (started without -c); logs reopened")
            self._reopen_logs(old.config)
            self._broadcast(ReopenLogs(old.config))
            return
        log.info("SIGHUP: reloading %s", source)
        try:
            prepared = prepare(old, self.bound, self.tls_store)
        except BlackholeError as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            for problem in problems:
                log.error("reload refused: %s", problem)
            log.error("still serving with the previous configuration%s", self._as_user)
            self._reopen_logs(old.config)
            self._broadcast(ReopenLogs(old.config))
            return
        self.settings = prepared.settings
        config = prepared.settings.config
        rebound = prepared.rebound
        self.state.reload_pending = self.settings.generation
        self.bound = rebound.bound
        close_all(rebound.removed)
        if rebound.changed:
            log.info("listeners changed: starting workers on the new set")
            self._roll()
        else:
            self._broadcast(Reload(self.settings))
        self._resize(config.workers)
        for slot in self.slots.values():
            slot.heartbeat.interval = config.heartbeat_interval
        self._check_reloaded()

    def _broadcast(self, message: object) -> None:
        for slot in self.slots.values():
            if slot.process is not None and slot.ready:
                slot.process.send(message)

    def _roll(self) -> None:
        """Replace every worker; each old one serves until its successor is ready."""
        for slot in self.slots.values():
            if slot.process is not None:
                if slot.predecessor is None and slot.ready:
                    slot.predecessor = slot.process
                else:
                    self._retire(slot.process)
                slot.process, slot.ready = None, False
            self._start(slot)

    def _resize(self, workers: int) -> None:
        for number in range(1, workers + 1):
            if number not in self.slots:
                log.info("starting worker %d (workers = %d)", number, workers)
                self._add_slot(number)
        for number in [n for n in self.slots if n > workers]:
            slot = self.slots.pop(number)
            log.info("stopping worker %d (workers = %d)", number, workers)
            for process in (slot.process, slot.predecessor):
                if process is not None:
                    self._retire(process)

    def _check_reloaded(self) -> None:
        pending = self.state.reload_pending
        if pending is None or self.settings is None:
            return
        for slot in self.slots.values():
            if slot.process is None or not slot.ready or slot.generation < pending:
                return
            if slot.predecessor is not None:
                return
        self.state.reload_pending = None
        settings = self.settings
        line = startup_line(
            settings.config,
            self.bound,
            settings.mailname,
            settings.tls is not None,
            len(self.slots),
        )
        log.info("configuration reloaded (generation %d): %s", pending, line)
