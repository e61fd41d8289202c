"""The supervisor: binds, drops root, keeps ``workers`` workers alive, drains.

One process, one thread, no event loop: a ``poll`` over the workers' process
sentinels, their control channels and a self-pipe that signal handlers write
to. That is what lets it notice a dead worker the moment it dies, and what
makes forking a worker from it safe when spawning is impossible.

Start-up, in an order that leaves no privilege behind: pidfile, user lookup,
mail name, TLS files (read while still root), bind every listener, hand the
TLS directory to the user and drop privileges, start the workers, and print
the "listening on" line only when every worker serves.

The rooms it delegates to: ``fleet`` (the workers: start, watch, restart,
retire), ``hubkeeper`` (the hub: started before the workers, restarted if it
dies, stopped after them), ``draining`` (TERM/INT), ``reloading`` (HUP),
``signals`` (the self-pipe). This module owns the start-up order and the loop
that feeds them.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
from collections.abc import Callable

from blackhole.config.model import Config
from blackhole.errors import EX_OK
from blackhole.hub.sharedstore import SharedStore
from blackhole.net import host_port
from blackhole.server.app import startup_line
from blackhole.server.mailname import resolve_mailname
from blackhole.server.observing import listener_labels
from blackhole.server.sockets import bind_all
from blackhole.supervisor.counting import Console, Counting
from blackhole.supervisor.daemon import Readiness
from blackhole.supervisor.draining import Drain
from blackhole.supervisor.fdlimit import raise_open_files_limit
from blackhole.supervisor.fleet import Fleet, Launch, Phase, Timing
from blackhole.supervisor.hubkeeper import HubKeeper
from blackhole.supervisor.hubsockets import load_token
from blackhole.supervisor.lifeline import take_lifeline
from blackhole.supervisor.messages import Settings
from blackhole.supervisor.notify import sd_notify
from blackhole.supervisor.orphans import is_init, reap_orphans
from blackhole.supervisor.pidfile import PidFile
from blackhole.supervisor.privileges import resolve_target, warn_if_root
from blackhole.supervisor.process import launch
from blackhole.supervisor.reload import close_all
from blackhole.supervisor.reloading import Reloader
from blackhole.supervisor.signals import SignalQueue
from blackhole.supervisor.slots import Slot
from blackhole.supervisor.startup import become, start_method
from blackhole.supervisor.tlsfiles import TLSStore
from blackhole.supervisor.worker_main import set_title

__all__ = ["Supervisor", "Timing"]

log = logging.getLogger("blackhole.supervisor")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(
        self,
        config: Config,
        readiness: Readiness | None = None,
        timing: Timing | None = None,
        launcher: Launch = launch,
    ) -> None:
        self.config = config
        self.readiness = readiness if readiness is not None else Readiness()
        self.timing = timing if timing is not None else Timing()
        self.clock = self.timing.clock
        self.phase = Phase()
        self.fleet = Fleet(launcher, self.timing, self.phase)
        self.fleet.own_fds = self._own_fds
        self.fleet.on_ready = self._on_ready
        self.fleet.on_change = self._on_change
        self.drain = Drain(self.fleet)
        self.hub = HubKeeper(self.clock)
        self.reloader: Reloader | None = None
        self.pidfile: PidFile | None = None
        self.tls_store: TLSStore | None = None
        # As PID 1 (a container) every orphan of the namespace becomes our
        # child: SIGCHLD wakes the loop to reap those (orphans.py).
        init = (signal.SIGCHLD,) if is_init() else ()
        self.signals = SignalQueue((*_STOP_SIGNALS, signal.SIGHUP, *init))
        # The shared counters (``counting.tally`` is what the control API reads).
        self.counting: Counting | None = None
        self.console: Console | None = None
        # The test process that started us, if any (lifeline.py).
        self.lifeline = take_lifeline(os.environ)
        # The rule state every worker decides in (None with state_url: Redis).
        self.state: SharedStore | None = None

    # --- the whole life ---------------------------------------------------------------

    def run(self) -> int:
        """Start, supervise until stopped; returns the exit code (0 on a clean stop)."""
        set_title("blackhole: master")
        self.signals.install()
        try:
            self._start_up()
            return self._loop()
        finally:
            self.fleet.kill_all()
            self.hub.stop()  # after the workers: they ask it for decisions while they drain
            close_all(self.fleet.bound)
            if self.tls_store is not None:
                self.tls_store.cleanup()
            if self.pidfile is not None:
                self.pidfile.release()
            if self.counting is not None:
                self.counting.close()
            if self.state is not None:
                self.state.close()
            self.signals.restore()

    def _start_up(self) -> None:
        config = self.config
        raise_open_files_limit()  # inherited by the hub and the workers
        if config.pidfile is not None:
            self.pidfile = PidFile(config.pidfile)
            self.pidfile.acquire()
        target = resolve_target(config.user, config.group)
        mailname = resolve_mailname(config.mailname)
        self.tls_store = TLSStore()
        tls = self.tls_store.prepare(config, mailname)
        listener_tls = self.tls_store.prepare_listeners(config)
        token = load_token(config)  # before the drop: a root-only secret file is fine
        self.fleet.bound = bind_all(config.listeners)
        self.hub.bind_control(config)
        as_user = ""
        # Without a user switch every path stays readable: spawn, unless the
        # environment forces a method (the testing API forks, to start fast).
        self.fleet.method = start_method([], None)
        if target is not None:
            if self.pidfile is not None and os.geteuid() == 0:
                self.pidfile.remove_at_exit_as_root()
            became = become(target, config, self.tls_store)
            self.fleet.method = became.method
            if not became.reads_anything:
                # Files a reload reads must now be readable by this user: say so.
                as_user = f" (files are read as user {target.name} now)"
            if self.pidfile is not None and not self.pidfile.removable():
                log.debug(
                    "user %s cannot write %s: the pidfile janitor removes the pidfile at exit",
                    target.name,
                    self.pidfile.path.parent,
                )
        warn_if_root(config.user)  # only once it is sure to run: not before a failed bind
        self.reloader = Reloader(self.fleet, self.tls_store, as_user, self.hub.claim_names)
        self.fleet.settings = Settings(config, mailname, tls, 1, listener_tls)
        names = listener_labels(self.fleet.bound)
        self.counting = self.fleet.counting = Counting(names, config.workers)
        self.console = Console(self.counting.tally, config.stats_interval, self.clock)
        if config.state_url is None:
            # Made once for the server's life: a changed state_url needs a restart.
            self.state = SharedStore.create()
            self.fleet.state_fd = self.state.fd
        self._start_hub(config, token)
        for number in range(1, config.workers + 1):
            self.fleet.add(number)

    def _start_hub(self, config: Config, token: str | None) -> None:
        self.hub.method = self.fleet.method
        self.hub.bind_store()
        counting = self.counting
        assert counting is not None  # made first: the hub serves its figures
        self.hub.configure(
            config,
            token,
            counting.tally.layout,
            counting.tally.fd,
            started=self.fleet.started,
            state_fd=self.fleet.state_fd,
        )
        self.hub.start_and_wait(self._own_fds())
        self.fleet.hub_path = self.hub.path
        if self.hub.control is not None:
            host, port = self.hub.control.getsockname()[:2]
            log.info("control API serving on http://%s", host_port(host, port))

    # --- the loop -------------------------------------------------------------------

    def _loop(self) -> int:
        while True:
            if self.drain.done():
                if self.console is not None:
                    self.console.summary()  # every worker is reaped and folded
                log.info("stopped")
                return EX_OK
            self._wait()
            self._handle_signals()
            if self.phase.stopping:
                self.drain.tick()
            else:
                self.fleet.tick()
                self.hub.tick(self._own_fds)
                if self.console is not None:
                    self.console.interval = self.fleet.config.stats_interval
                    self.console.tick()

    def _wait(self) -> None:
        poller = select.poll()
        handlers: dict[int, Callable[[], None]] = {self.signals.read_fd: self.signals.drain}
        for process in list(self.fleet.slots.processes()):
            handlers[process.sentinel] = functools.partial(self.fleet.exited, process)
            if process.control is not None:
                handlers[process.control.fileno()] = functools.partial(self.fleet.receive, process)
        hub = self.hub.process
        if hub is not None:
            handlers[hub.sentinel] = lambda: self.hub.exited(self.phase.stopping)
            if hub.control is not None:
                handlers[hub.control.fileno()] = self.hub.on_channel
        if self.lifeline is not None:
            handlers[self.lifeline] = self._parent_gone
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

    def _parent_gone(self) -> None:
        assert self.lifeline is not None
        os.close(self.lifeline)
        self.lifeline = None
        if not self.phase.stopping:
            self.drain.on_signal("the process that started the server has gone")

    def _next_deadline(self) -> float:
        if self.phase.stopping:
            # Only the drain ticks now: the fleet's and the hub's deadlines,
            # left in the past (a ping due), made every poll return at once.
            return min(self.clock() + 1.0, self.drain.deadline)
        times = [self.clock() + 1.0, *self.fleet.deadlines(), *self.hub.deadlines()]
        if self.console is not None and (stats := self.console.deadline()) is not None:
            times.append(stats)
        return min(times)

    def _own_fds(self) -> list[int]:
        """The supervisor's descriptors besides the workers': closed in forked workers."""
        fds = self.signals.fds() + self.hub.fds()
        if self.lifeline is not None:
            fds.append(self.lifeline)
        if self.readiness.fd is not None:
            fds.append(self.readiness.fd)
        return fds

    def _children(self) -> set[int]:
        """Pids of the processes we started: reaped through their sentinels, not here."""
        pids = {process.pid for process in self.fleet.slots.processes()}
        if self.hub.process is not None:
            pids.add(self.hub.process.pid)
        return pids

    # --- what the fleet reports -------------------------------------------------------

    def _on_ready(self, slot: Slot) -> None:
        assert slot.process is not None
        self.hub.fleet_changed(self.fleet.slots, len(self.fleet.slots))
        if self.phase.announced:
            log.info("worker %d is serving (pid %d)", slot.number, slot.process.pid)
            self._on_change()
        elif self.fleet.slots.all_ready():
            self._announce()

    def _on_change(self) -> None:
        self.hub.fleet_changed(self.fleet.slots, len(self.fleet.slots))
        if self.reloader is not None:
            self.reloader.check()

    def _announce(self) -> None:
        settings = self.fleet.settings
        assert settings is not None
        self.phase.announced = True
        line = startup_line(
            settings.config,
            self.fleet.bound,
            settings.mailname,
            settings.tls is not None,
            len(self.fleet.slots),
        )
        log.info("%s", line)
        self.readiness.ready(line)
        sd_notify(f"READY=1\nMAINPID={os.getpid()}")

    # --- signals ---------------------------------------------------------------------

    def _handle_signals(self) -> None:
        for signum in self.signals.take():
            if signum == signal.SIGCHLD:
                reap_orphans(self._children())
            elif signum == signal.SIGHUP:
                if not self.phase.stopping and self.reloader is not None:
                    applied = self.reloader.reload()
                    layout = None if self.counting is None else self.counting.tally.layout
                    # Refused, the old config stays whole, its token too; the
                    # hub reopens its log all the same (logrotate).
                    self.hub.reload(self.fleet.config, layout, new_token=applied)
            else:
                self.drain.on_signal(signal.Signals(signum).name)
