"""A worker process: serve the supervisor's listening sockets until told to stop.

Started either as a fresh interpreter (``spawn``: ``spawned_main`` reads its
``WorkerSpec`` from the control channel) or forked from the supervisor,
which never runs an event loop or a thread (``forked_main``). Either way it
builds its own TLS context and event loop; it never binds or resolves
anything.

Signals: SIGTERM drains (``Worker.stop`` with the grace period); SIGINT and
SIGHUP are ignored, because a Ctrl-C or a terminal hangup reaches the whole
process group and the supervisor alone decides (it forwards SIGTERM, and
sends reloads over the channel). If the supervisor goes away, the channel
reaches EOF and the worker drains too, so that no orphan keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from types import FrameType

from blackhole.config.model import Config
from blackhole.errors import EX_OK, EX_SOFTWARE, BlackholeError
from blackhole.framing import receive_first
from blackhole.hub.client import HubClient
from blackhole.hub.sharedstore import SharedStore
from blackhole.observe.logs import setup_logging
from blackhole.rules.store import Store
from blackhole.server import heap
from blackhole.server.app import ListenerTLS, Worker, new_event_loop
from blackhole.server.observing import Observation, listener_labels
from blackhole.server.tls import build_server_context
from blackhole.supervisor import capabilities
from blackhole.supervisor.messages import (
    ChannelError,
    Failed,
    FrameReader,
    Ping,
    Pong,
    Ready,
    Reload,
    Reloaded,
    ReloadFailed,
    ReopenLogs,
    Retire,
    Settings,
    Start,
    TLSFiles,
    WorkerSpec,
    encode,
)

log = logging.getLogger("blackhole.worker")

# How the supervisor runs a spawned worker: argv is [control fd, *sys.path],
# so the child imports exactly what the parent imported (as multiprocessing's
# spawn does), whatever the current directory of a daemon is.
BOOTSTRAP = (
    "import sys; sys.path[:] = sys.argv[2:]; "
    "from blackhole.supervisor.worker_main import spawned_main; "
    "spawned_main(int(sys.argv[1]))"
)
# A supervisor that stops reading must not hang the event loop for long.
_SEND_TIMEOUT = 5.0
# How long a starting worker waits for the hub's API rules before it serves
# without them (the hub is restarting); well within the supervisor's
# start_timeout, so the worker is not killed for waiting.
HUB_WAIT = 10.0


def set_title(title: str) -> None:
    """``blackhole: master`` / ``blackhole: worker N`` in ps and /proc, when possible."""
    try:
        import setproctitle  # noqa: PLC0415 - optional at run time
    except ImportError:  # pragma: no cover - a declared dependency
        return
    setproctitle.setproctitle(title)


class EarlyStop:
    """SIGTERM before the event loop exists: remembered, acted on once it runs."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True


def prepare_signals(early: EarlyStop) -> None:
    # A forked worker inherits the supervisor's handlers and wakeup fd: a
    # signal for the worker must never wake (and confuse) the supervisor.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the supervisor's orphan reaping, as PID 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, early.handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def load_tls(files: TLSFiles | None) -> ssl.SSLContext | None:
    if files is None:
        return None
    return build_server_context(files.cert, files.key, files.dhparams, files.less_secure)


def load_listener_tls(settings: Settings) -> ListenerTLS:
    """One context per distinct cert=/key= pair, shared by its listeners."""
    return {
        pair: build_server_context(f.cert, f.key, f.dhparams, f.less_secure)
        for pair, f in settings.listener_tls
    }


class Channel:
    """The worker's end of the control socket, driven by the event loop."""

    def __init__(self, sock: socket.socket, reader: FrameReader | None = None) -> None:
        self.sock = sock
        self.sock.settimeout(_SEND_TIMEOUT)
        # A spawned worker's reader may hold the start of the next frame.
        self.reader = reader if reader is not None else FrameReader()

    def send(self, message: object) -> None:
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            log.debug("cannot write to the supervisor: %s", exc)

    def receive(self) -> list[object] | None:
        """Messages available now; None at EOF (the supervisor is gone)."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return []
        except OSError:
            return None
        if not data:
            return None
        try:
            return self.reader.feed(data)
        except ChannelError as exc:
            log.error("%s", exc)
            return None


class Runner:
    """One worker's life on its event loop."""

    def __init__(self, spec: WorkerSpec, sockets: Sequence[socket.socket], channel: Channel):
        self.spec = spec
        self.number = spec.number
        self.settings = spec.settings
        self.sockets = list(sockets)
        self.channel = channel
        self.stop = asyncio.Event()
        self.retire = asyncio.Event()
        self.worker: Worker | None = None
        # The hub's API rules; the rules engine takes ``hub.on_api_rules`` as
        # its feed, and ``store`` as its Store.
        self.hub = HubClient(spec.hub, spec.number) if spec.hub is not None else None
        self.store = self._store()

    def _store(self) -> Store | None:
        """Where this worker's rules count (RULES.md "Determinism": shared by all)."""
        if self.spec.state_fd is not None:
            # In the supervisor's region: decided here, at once, no round trip.
            return SharedStore.attach(self.spec.state_fd, keeper=False)
        # In Redis, through the hub; without either, each worker keeps its own.
        return self.hub.store if self.hub is not None else None

    async def run(
        self, ssl_context: ssl.SSLContext | None, listener_tls: ListenerTLS, early: EarlyStop
    ) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        bound = list(zip(self.spec.listeners, self.sockets, strict=True))
        settings = self.settings
        try:
            hub = self.hub
            worker = Worker(
                settings.config,
                bound,
                settings.mailname,
                ssl_context,
                worker_id=self.number,
                store=self.store,
                started=self.spec.started,
                observation=self.observation(),
                listener_tls=listener_tls,
            )
            if hub is not None:
                hub.on_api_rules = worker.set_api_rules
            await worker.start()
        except Exception as exc:
            self.channel.send(Failed(EX_SOFTWARE, f"worker {self.number} cannot serve: {exc!r}"))
            raise
        self.worker = worker
        # API rules before Ready: no worker serves without them (OBSERVE.md).
        if self.hub is not None and not await self.hub.start(HUB_WAIT):
            log.warning("the hub did not send the API rules in %gs: serving without", HUB_WAIT)
        loop.add_reader(self.channel.sock.fileno(), self._on_channel)
        self.channel.send(Ready(os.getpid()))
        log.debug("serving (pid %d)", os.getpid())
        if early.requested:
            self.stop.set()
        await self._told_to_go()
        grace = self.settings.config.grace_period
        if not self.stop.is_set():
            await self._retire(worker, grace)
        loop.remove_reader(self.channel.sock.fileno())
        log.debug("stopping: up to %gs for sessions in flight", grace)
        await worker.stop(grace)
        if self.hub is not None:
            await self.hub.close()
        return EX_OK

    def observation(self) -> Observation:
        """Counting into the supervisor's region, the event log if configured, and
        message records to the hub."""
        counters = self.spec.counters
        config = self.settings.config
        observation = Observation.for_worker(
            None if counters is None else (counters.fd, counters.slot, counters.names),
            listener_labels(list(zip(self.spec.listeners, self.sockets, strict=True))),
            config.event_log,
            config.record,
            self.number,
        )
        if self.hub is not None:
            observation.record_sink = self.hub.record  # GET /messages is served by the hub
            self.hub.on_rule_slots = observation.set_rule_slots
        return observation

    async def _told_to_go(self) -> None:
        waiters = [asyncio.ensure_future(event.wait()) for event in (self.stop, self.retire)]
        _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()

    async def _retire(self, worker: Worker, grace: float) -> None:
        """Let sessions end on their own (up to ``grace``), unless a stop comes."""
        await worker.stop_accepting()
        count = len(worker.state.sessions)
        log.debug("replaced: taking no new connections, %d session(s) to finish", count)
        await worker.sessions_gone(grace, unless=self.stop)

    def _on_channel(self) -> None:
        messages = self.channel.receive()
        if messages is None:
            if not self.stop.is_set():
                log.warning("the supervisor is gone: stopping")
            self.stop.set()
            asyncio.get_running_loop().remove_reader(self.channel.sock.fileno())
            return
        for message in messages:
            if isinstance(message, Ping):
                self.channel.send(Pong(message.seq))
            elif isinstance(message, Reload):
                self._reload(message.settings)
            elif isinstance(message, ReopenLogs):
                self._reopen_logs(message)
            elif isinstance(message, Retire):
                self.retire.set()

    def _reload(self, settings: Settings) -> None:
        assert self.worker is not None
        try:
            # Blocking file reads on the loop, once per SIGHUP: a few
            # milliseconds against sessions that time out in seconds.
            ssl_context = load_tls(settings.tls)
            listener_tls = load_listener_tls(settings)
            setup_logging(settings.config, worker=self.number)
        except BlackholeError as exc:
            log.error("cannot apply the new configuration: %s", exc)
            self.channel.send(ReloadFailed(settings.generation, str(exc)))
            return
        heap.thaw()  # the configuration it replaces was frozen at start-up
        # What the rule set refuses as it takes the new file rules (it logs
        # that): said to the supervisor too, which would report success else.
        refused = self._rules_refused(settings.config)
        self.worker.reload(
            settings.config, settings.mailname, ssl_context, listener_tls=listener_tls
        )
        self._reopen_event_log()
        self.settings = settings
        log.debug("new sessions use configuration generation %d", settings.generation)
        self.channel.send(Reloaded(settings.generation, refused))

    def _rules_refused(self, config: Config) -> tuple[str, ...]:
        rules = self.worker.state.rules if self.worker is not None else None
        if rules is None or config.rules is None:
            return ()
        return tuple(rules.ruleset.clashes(config.rules.rules))

    def _reopen_logs(self, message: ReopenLogs) -> None:
        try:
            setup_logging(message.config, worker=self.number)
        except BlackholeError as exc:
            log.error("cannot reopen the log: %s", exc)
        self._reopen_event_log()

    def _reopen_event_log(self) -> None:
        """SIGHUP, whether or not the reload succeeds: logrotate moved the file."""
        if self.worker is not None:
            try:
                self.worker.state.observation.reopen()
            except OSError as exc:
                log.error("cannot reopen the event log: %s", exc.strerror or exc)


def serve_worker(
    spec: WorkerSpec,
    sockets: Sequence[socket.socket],
    channel: Channel,
    early: EarlyStop,
) -> int:
    """Run a worker to the end; returns its exit code."""
    # A worker forked from the supervisor inherits its two capabilities: a
    # process that talks to the network keeps none.
    capabilities.clear()
    set_title(f"blackhole: worker {spec.number}")
    try:
        setup_logging(spec.settings.config, worker=spec.number)
        ssl_context = load_tls(spec.settings.tls)
        listener_tls = load_listener_tls(spec.settings)
    except BlackholeError as exc:
        channel.send(Failed(exc.exit_code, str(exc)))
        return exc.exit_code
    runner = Runner(spec, sockets, channel)
    heap.freeze_startup()  # before the loop exists: no session is frozen
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as loop_runner:
            return loop_runner.run(runner.run(ssl_context, listener_tls, early))
    except Exception:
        log.exception("worker %d failed", spec.number)
        return EX_SOFTWARE
    finally:
        # Closing the loop put SIGTERM back to its default action; the drain
        # is over, so a SIGTERM the supervisor forwards now (after one sent to
        # the whole group) must not turn this clean exit into "killed".
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def forked_main(spec: WorkerSpec, sockets: Sequence[socket.socket], control: socket.socket) -> int:
    """Entry point in a child forked from the supervisor (signals blocked)."""
    early = EarlyStop()
    prepare_signals(early)
    return serve_worker(spec, sockets, Channel(control), early)


def spawned_main(control_fd: int) -> None:
    """Entry point of a spawned worker (see ``BOOTSTRAP``)."""
    early = EarlyStop()
    prepare_signals(early)
    control = socket.socket(fileno=control_fd)
    first = receive_first(control, 30.0)
    if first is None:
        sys.exit(EX_SOFTWARE)  # the supervisor went away before we started
    start, reader = first
    if not isinstance(start, Start):
        sys.exit(EX_SOFTWARE)
    sockets = [socket.socket(fileno=fd) for fd in start.spec.fds]
    # The supervisor sends nothing else before Ready, so nothing is lost here.
    sys.exit(serve_worker(start.spec, sockets, Channel(control, reader), early))
