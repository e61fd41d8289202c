"""The supervisor's side of the hub (``blackhole.hub``): bind, start, restart, stop.

The supervisor runs no event loop, so the hub is a child process, started the way workers are
(spawned, or forked when the user cannot run a fresh interpreter) and watched through the same
sentinel and channel:

- before privileges are dropped, ``bind_control`` binds ``control_listen`` (a privileged port
  works; a bind error stops start-up with its exit code);
- after the drop, ``bind_store`` makes a private directory (mode 0700, owned by the user the
  workers run as) with the UNIX socket the workers connect to;
- ``start`` launches the hub with both sockets and waits until it serves, before the first
  worker starts;
- a hub whose loop is stuck (SIGSTOP, a blocking call: no control API answer, no rule
  decided) misses its heartbeats, as a worker would, and is killed;
- a hub that dies is restarted (at once, then with back-off) on the same sockets: workers
  reconnect by themselves. API rules and recorded messages are lost; rule counts, greylist
  entries and spent rules are not (they live in the supervisor's shared region,
  ``hub.sharedstore``, or in Redis), and the new hub binds the file rules to the counter
  slots the old one reported (``RuleSlotsBound``), so their hits and actions carry on;
- ``stop`` ends it once the workers are gone (they ask it for decisions while they drain).
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from blackhole.config.model import Config
from blackhole.errors import EX_SOFTWARE, BlackholeError, ConfigError
from blackhole.hub.spec import (
    ClaimNames,
    FleetState,
    HubReload,
    HubSpec,
    NamesClaimed,
    RuleSlotsBound,
    StartHub,
    StopHub,
    file_rules_of,
)
from blackhole.observe.layout import Layout
from blackhole.rules.model import Rule
from blackhole.supervisor.backoff import Backoff
from blackhole.supervisor.heartbeat import Heartbeat
from blackhole.supervisor.hubsockets import bind_control, load_token, socket_directory
from blackhole.supervisor.leftovers import PrivateDirectory
from blackhole.supervisor.messages import Failed, Ping, Pong, Ready
from blackhole.supervisor.process import (
    FORK,
    WorkerProcess,
    describe_exit,
    fork_process,
    spawn_process,
)
from blackhole.supervisor.slots import Slots

log = logging.getLogger("blackhole.supervisor")

# How the supervisor runs a spawned hub (see worker_main.BOOTSTRAP). The
# supervisor package is imported first, as for a worker, so that the modules
# load in one order whatever the entry point.
BOOTSTRAP = (
    "import sys; sys.path[:] = sys.argv[2:]; "
    "import blackhole.supervisor; "
    "from blackhole.hub.main import spawned_main; "
    "spawned_main(int(sys.argv[1]))"
)
START_TIMEOUT = 30.0  # seconds from launch to Ready
STOP_TIMEOUT = 5.0  # seconds from StopHub to exit, then SIGKILL
# The hub answers ClaimNames in microseconds; the supervisor waits this long,
# well within a worker's heartbeat timeout, before it reloads unchecked.
CLAIM_TIMEOUT = 2.0
HUB_NUMBER = 0  # the hub's number in log lines and WorkerProcess


class HubKeeper:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.control: socket.socket | None = None
        self.store: socket.socket | None = None
        self.directory: PrivateDirectory | None = None
        self.process: WorkerProcess | None = None
        self.spec: HubSpec | None = None
        self.method = "spawn"
        self.backoff = Backoff()
        self.start_at: float | None = None
        self.started_at = 0.0
        self.ready = False
        self.fleet = FleetState(0, ())
        self._first_start = -1.0
        self._failure: str | None = None  # what a hub said before dying at start-up
        self._failure_code: int | None = None
        self._claims = 0  # ClaimNames sent so far
        self._claimed: NamesClaimed | None = None  # the latest answer
        self.heartbeat: Heartbeat | None = None  # while it serves
        self.next_ping = 0.0

    @property
    def path(self) -> str | None:
        """Where workers connect (None until ``bind_store``)."""
        return None if self.directory is None else str(self.directory.path / "hub.sock")

    def bind_control(self, config: Config) -> None:
        if config.control_listen is not None:
            self.control = bind_control(config.control_listen)

    def bind_store(self) -> None:
        self.directory = socket_directory()
        store = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            store.bind(str(self.directory.path / "hub.sock"))
            store.listen(128)  # workers that connect while the hub restarts wait here
        except OSError:
            store.close()
            raise
        self.store = store

    def fds(self) -> list[int]:
        """Every descriptor of the hub's that a forked worker must close."""
        fds = [s.fileno() for s in (self.control, self.store) if s is not None]
        if self.process is not None:
            fds += self.process.fds()
        return fds

    # --- starting ---------------------------------------------------------------------

    def configure(
        self,
        config: Config,
        token: str | None,
        layout: Layout,
        counters_fd: int | None = None,
        *,
        started: float | None = None,
        state_fd: int | None = None,
    ) -> None:
        """``counters_fd``: the counters region (``observe.tally``) the API's figures
        come from, passed to the hub as a worker's slot is passed to it;
        ``state_fd`` the rule state region (``hub.sharedstore``)."""
        assert self.store is not None
        control_fd = None if self.control is None else self.control.fileno()
        self.spec = HubSpec(
            config,
            token,
            self.store.fileno(),
            control_fd,
            layout,
            counters_fd=counters_fd,
            file_rules=file_rules_of(config),
            record=config.record,
            started=started,
            state_fd=state_fd,
        )
        # Until the supervisor says otherwise, every worker is still missing.
        self.fleet = FleetState(config.workers, ())

    def start(self, close_in_child: Iterable[int]) -> None:
        """Launch the hub; ``OSError`` if it cannot be started."""
        assert self.spec is not None
        self.start_at = None
        self.ready = False
        self.started_at = self.clock()
        if self._first_start < 0:
            self._first_start = self.started_at
        spec = self.spec
        fds = (spec.store_fd, spec.control_fd, spec.counters_fd, spec.state_fd)
        keep = [fd for fd in fds if fd is not None]
        if self.method == FORK:
            # The supervisor's descriptors, less the two the hub serves on.
            close = [fd for fd in close_in_child if fd not in keep]
            self.process = _fork(self.spec, close)
        else:
            self.process = _spawn(self.spec, keep)

    def start_and_wait(self, close_in_child: Iterable[int]) -> None:
        """At start-up: launch the hub and return once it serves, else raise."""
        self.start(close_in_child)
        assert self.process is not None
        deadline = self.clock() + START_TIMEOUT
        while not self.ready:
            left = deadline - self.clock()
            control = self.process.control
            if left <= 0 or control is None:
                break
            fds = [control.fileno(), self.process.sentinel]
            readable, _, _ = select.select(fds, [], [], left)
            if fds[0] in readable:
                self.receive()
            elif readable:
                break
        if not self.ready:
            failure = self._failure or "did not start"
            self.kill()
            error = BlackholeError(f"the hub {failure}")
            error.exit_code = self._failure_code or EX_SOFTWARE
            raise error

    def on_channel(self) -> None:
        """The supervisor's loop saw the channel readable: read it, unless a
        ``claim_names`` since then read it all (a read blocks up to the channel's
        send timeout when nothing is there)."""
        control = self.process.control if self.process is not None else None
        if control is not None and select.select([control.fileno()], [], [], 0)[0]:
            self.receive()

    def receive(self) -> None:
        if self.process is None:
            return
        for message in self.process.receive() or []:
            if isinstance(message, Ready):
                restarted = self.started_at > self._first_start
                self.ready = True
                self.process.send(self.fleet)
                if self.spec is not None:
                    self.heartbeat = Heartbeat(self.spec.config.heartbeat_interval)
                    self.next_ping = self.clock()
                if restarted:
                    log.info("the hub is serving again (pid %d)", message.pid)
                else:
                    log.debug("hub serving (pid %d)", message.pid)
            elif isinstance(message, Failed):
                self._failure, self._failure_code = message.message, message.exit_code
            elif isinstance(message, Pong) and self.heartbeat is not None:
                self.heartbeat.answered(message.seq)
            elif isinstance(message, NamesClaimed):
                self._claimed = message
            elif isinstance(message, RuleSlotsBound) and self.spec is not None:
                self.spec = replace(self.spec, rule_slots=message.slots)

    def claim_names(self, file_rules: tuple[Rule, ...]) -> tuple[tuple[str, ...], int]:
        """SIGHUP: (the names of ``file_rules`` that API rules hold now, how many API
        rules there are); the reload is refused on a clash or when the two are more
        than ``MAX_RULES``, else the hub has taken ``file_rules`` (``ApiRuleBook.claim``).

        Asked of the hub and awaited here, the supervisor running no event
        loop. A hub that is not serving has no API rules yet: a hub starts
        without any. One that does not answer in ``CLAIM_TIMEOUT`` leaves the
        check to the workers, which refuse a file rule named like an API rule.
        """
        process = self.process
        if process is None or not self.ready:
            return (), 0
        self._claims += 1
        number = self._claims
        if not process.send(ClaimNames(number, file_rules)):
            return (), 0  # its channel is closed: it is dying, with its API rules
        deadline = self.clock() + CLAIM_TIMEOUT
        while self._claimed is None or self._claimed.number != number:
            left = deadline - self.clock()
            control = process.control
            if control is None or self.process is not process:
                return (), 0
            if left <= 0:
                log.warning(
                    "reload: the hub did not answer in %gs: the rules file's names are"
                    " not checked against the API rules",
                    CLAIM_TIMEOUT,
                )
                return (), 0
            if select.select([control.fileno()], [], [], left)[0]:
                self.receive()
        return self._claimed.clashes, self._claimed.api_rules

    # --- watching ---------------------------------------------------------------------

    def deadlines(self) -> list[float]:
        due = [self.start_at] if self.start_at is not None else []
        return [*due, self.next_ping] if self.heartbeat is not None else due

    def tick(self, close_in_child: Callable[[], Iterable[int]]) -> None:
        self._check_alive()
        if self.start_at is None or self.clock() < self.start_at:
            return
        try:
            self.start(close_in_child())
        except OSError as exc:
            delay = self.backoff.delay(0.0)
            log.error("cannot start the hub: %s; trying again in %gs", exc, delay)
            self.start_at = self.clock() + delay

    def _check_alive(self) -> None:
        process, beat = self.process, self.heartbeat
        if process is None or beat is None:
            return
        now = self.clock()
        overdue = beat.overdue(now)
        if overdue is not None:
            log.warning(
                "the hub (pid %d) did not answer the heartbeat for %.1fs: killing it",
                process.pid,
                overdue,
            )
            self.heartbeat = None
            process.signal(signal.SIGKILL)  # exited() restarts it
        elif now >= self.next_ping:
            self.next_ping = now + beat.interval
            process.send(Ping(beat.sent(now)))

    def exited(self, stopping: bool) -> None:
        """The hub's sentinel is readable: reap it and, unless stopping, restart it."""
        process = self.process
        if process is None:
            return
        while process.control is not None:
            self.receive()
        code = process.reap()
        self.process, self.ready, self.heartbeat = None, False, None
        if stopping:
            return
        uptime = self.clock() - self.started_at
        delay = self.backoff.delay(uptime)
        self.start_at = self.clock() + delay
        log.warning(
            "the hub (pid %d) %s; restarting it%s: API rules and recorded messages start empty",
            process.pid,
            describe_exit(code),
            "" if delay == 0 else f" in {delay:g}s",
        )

    def fleet_changed(self, slots: Slots, workers: int) -> None:
        serving = tuple(s.number for s in slots if s.ready and s.process is not None)
        self.fleet = FleetState(workers, serving)
        if self.process is not None and self.ready:
            self.process.send(self.fleet)

    def reload(self, config: Config, layout: Layout | None = None, new_token: bool = True) -> None:
        """SIGHUP: the token re-read if ``new_token`` (kept if its file went bad since the
        reload checked it); ``layout``: the counters', with the listeners the reload added."""
        before = self.spec.token if self.spec is not None else None
        try:
            token = load_token(config) if new_token else before
        except ConfigError as exc:
            log.error("reload: %s; the control API keeps the previous token", exc)
            token = before
        if token is None and before is not None and config.control_listen is not None:
            # The API serves on (control_listen takes a restart): a reload
            # must never leave it open to whoever reaches its port.
            log.warning(
                "reload: no control_token any more; that takes a restart, "
                "the control API keeps the previous token"
            )
            token = before
        rules = file_rules_of(config)
        if self.heartbeat is not None:
            self.heartbeat.interval = config.heartbeat_interval
        if self.spec is not None:
            self.spec = replace(self.spec, config=config, token=token, file_rules=rules)
            if layout is not None:
                self.spec = replace(self.spec, layout=layout)
        if self.process is not None:
            self.process.send(HubReload(config, token, rules, layout))

    # --- stopping ---------------------------------------------------------------------

    def kill(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.reap()
            self.process, self.heartbeat = None, None

    def stop(self) -> None:
        """Ask the hub to exit, wait a little, kill it if it did not; remove its files."""
        process = self.process
        if process is not None and process.returncode is None:
            process.send(StopHub())
            with contextlib.suppress(OSError):
                select.select([process.sentinel], [], [], STOP_TIMEOUT)
            self.kill()
        for sock in (self.control, self.store):
            if sock is not None:
                sock.close()
        self.control = self.store = None
        if self.directory is not None:
            self.directory.remove()
            self.directory = None


def _spawn(spec: HubSpec, keep: list[int]) -> WorkerProcess:
    # Signals blocked until the hub ignores them: a SIGTERM to the whole
    # process group (Ctrl-C, `timeout`) must not kill a hub still importing
    # its modules, which the supervisor would take for a failed start.
    process = spawn_process(HUB_NUMBER, BOOTSTRAP, keep, masked=True)
    process.send(StartHub(spec))
    return process


def _fork(spec: HubSpec, close_in_child: list[int]) -> WorkerProcess:
    def serve(channel: socket.socket) -> int:
        # Here, not at the top: blackhole.hub imports this package.
        from blackhole.hub.main import forked_main  # noqa: PLC0415

        return forked_main(spec, channel)

    return fork_process(HUB_NUMBER, serve, close_in_child)
