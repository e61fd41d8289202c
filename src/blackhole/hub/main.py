"""The hub process: serve the workers' rule state and the control API until told to stop.

Started by the supervisor like a worker (``supervisor.hubkeeper``): a fresh
interpreter (``spawned_main``, run by ``hubkeeper.BOOTSTRAP``: its ``HubSpec``
comes as the first message on the channel) or, when spawning is impossible,
forked (``forked_main``).

Signals: SIGTERM, SIGINT and SIGHUP are ignored. A Ctrl-C or ``kill`` to the
whole process group must not end the hub while the workers drain and still
ask it for decisions; the supervisor stops it with ``StopHub`` once they are
gone, and a closed channel (the supervisor died) stops it too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

from blackhole.config.model import Config
from blackhole.config.stateurl import client_installed
from blackhole.control.serve import ControlServer, start_on
from blackhole.errors import EX_OK, EX_SOFTWARE, BlackholeError
from blackhole.framing import receive_first
from blackhole.hub.apirules import ApiRuleBook
from blackhole.hub.backend import HubBackend
from blackhole.hub.hubside import LOCAL_STORES, Hub, HubStore, WorkerLink
from blackhole.hub.sharedstore import SharedStore
from blackhole.hub.spec import (
    ClaimNames,
    FleetState,
    HubReload,
    HubSpec,
    NamesClaimed,
    RuleSlotsBound,
    StartHub,
    StopHub,
)
from blackhole.observe.logs import setup_logging
from blackhole.observe.tally import Tally
from blackhole.rules.store import MemoryStore
from blackhole.server.app import new_event_loop
from blackhole.supervisor import capabilities
from blackhole.supervisor.messages import Failed, Ping, Pong, Ready
from blackhole.supervisor.worker_main import Channel, set_title

log = logging.getLogger("blackhole.hub")


def ignore_signals() -> None:
    signal.set_wakeup_fd(-1)  # a forked hub must never wake the supervisor
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the supervisor's orphan reaping, as PID 1
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


class HubRunner:
    def __init__(self, spec: HubSpec, channel: Channel) -> None:
        self.spec = spec
        self.channel = channel
        self.stop = asyncio.Event()
        store = open_store(spec.config, spec.state_fd)
        self.hub = Hub(ApiRuleBook(spec.file_rules), spec.record, store)
        self.tally = (
            Tally.attach(spec.counters_fd, spec.layout) if spec.counters_fd is not None else None
        )
        self.backend = HubBackend(
            self.hub,
            spec.layout,
            self.tally,
            spec.config.workers,
            started=spec.started,
            bound=spec.rule_slots,
            on_bound=lambda slots: channel.send(RuleSlotsBound(slots)),
        )
        self.backend.file_rules(spec.file_rules)
        self.control: ControlServer | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        store_sock = socket.socket(fileno=self.spec.store_fd)
        server = await loop.create_unix_server(lambda: WorkerLink(self.hub), sock=store_sock)
        if self.spec.control_fd is not None:
            control_sock = socket.socket(fileno=self.spec.control_fd)
            self.control = await start_on(self.backend, control_sock, self.spec.token)
        loop.add_reader(self.channel.sock.fileno(), self._on_channel)
        if not isinstance(self.hub.store, LOCAL_STORES):
            self.hub.store.start()
        self.channel.send(Ready(os.getpid()))
        log.debug("hub serving (pid %d)", os.getpid())
        await self.stop.wait()
        loop.remove_reader(self.channel.sock.fileno())
        server.close()
        if self.control is not None:
            await self.control.stop()
        if self.tally is not None:
            self.tally.close()
        if not isinstance(self.hub.store, LOCAL_STORES):
            await self.hub.store.close()
        elif isinstance(self.hub.store, SharedStore):
            self.hub.store.close()
        return EX_OK

    def _on_channel(self) -> None:
        messages = self.channel.receive()
        if messages is None:
            self.stop.set()
            asyncio.get_running_loop().remove_reader(self.channel.sock.fileno())
            return
        for message in messages:
            if isinstance(message, FleetState):
                self.backend.fleet = message
            elif isinstance(message, ClaimNames):
                clashes, api_rules = self.hub.book.claim(message.file_rules)
                self.channel.send(NamesClaimed(message.number, clashes, api_rules))
            elif isinstance(message, HubReload):
                self._reload(message)
            elif isinstance(message, StopHub):
                self.stop.set()
            elif isinstance(message, Ping):
                self.channel.send(Pong(message.seq))  # the loop runs (supervisor.heartbeat)

    def _reload(self, message: HubReload) -> None:
        try:
            setup_logging(message.config)
        except BlackholeError as exc:
            log.error("cannot reopen the log: %s", exc)
        if message.config.state_url != self.spec.config.state_url:
            log.warning("state_url changed: the new one is used after a restart")
        if message.layout is not None:
            self.backend.relabel(message.layout)
        book = self.hub.book
        clashes, api_rules = book.claim(message.file_rules)
        if book.file_rules != message.file_rules:
            # The supervisor asks first (ClaimNames); this is a reload it went on
            # with unanswered: the workers keep their file rules, and so does the API.
            why = (
                f"names rules like API rules ({', '.join(clashes)})"
                if clashes
                else f"has {len(message.file_rules)} rules and the API {api_rules}"
            )
            log.error("reload: the rules file %s: the API lists the previous file rules", why)
        self.backend.file_rules(book.file_rules)
        store = self.hub.store
        if isinstance(store, SharedStore):
            # Rules whose name or definition changed start over (RULES.md);
            # their rule slots go back to the region's fixed table.
            rules = (*book.rules, *book.file_rules)
            self.hub.spawn(store.keep(frozenset(rule.fingerprint for rule in rules)))
        self.hub.spawn(self.hub.push())  # the workers learn the new rule slots
        if self.control is not None:
            self.control.set_token(message.token)


def open_store(config: Config, state_fd: int | None = None) -> HubStore:
    """The shared rule state: in Redis with ``state_url``, else in the supervisor's
    region (``state_fd``), else (a hub started on its own, in tests) in this process."""
    if config.state_url is None:
        if state_fd is not None:
            return SharedStore.attach(state_fd, keeper=True)
        return MemoryStore()
    # Here, not at the top: redis-py is an optional extra, and the supervisor
    # imports this module.
    from blackhole.hub.redisstore import RedisStore  # noqa: PLC0415

    return RedisStore(config.state_url)


def serve_hub(spec: HubSpec, channel: Channel) -> int:
    capabilities.clear()  # it serves HTTP: it keeps no privilege
    set_title("blackhole: hub")
    try:
        setup_logging(spec.config)
        client_installed(spec.config)
    except BlackholeError as exc:
        channel.send(Failed(exc.exit_code, str(exc)))
        return exc.exit_code
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(HubRunner(spec, channel).run())
    except Exception as exc:
        log.exception("the hub failed")
        channel.send(Failed(EX_SOFTWARE, f"cannot serve: {exc!r}"))
        return EX_SOFTWARE


def forked_main(spec: HubSpec, control: socket.socket) -> int:
    ignore_signals()
    return serve_hub(spec, Channel(control))


def spawned_main(control_fd: int) -> None:
    ignore_signals()
    control = socket.socket(fileno=control_fd)
    first = receive_first(control, 30.0)
    if first is None:
        sys.exit(EX_SOFTWARE)  # the supervisor went away before we started
    start, reader = first
    if not isinstance(start, StartHub):
        sys.exit(EX_SOFTWARE)
    sys.exit(serve_hub(start.spec, Channel(control, reader)))
