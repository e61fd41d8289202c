"""Running the server: one event loop serving already-bound listening sockets.

``Worker`` is what every worker process under the supervisor
(``blackhole.supervisor``) runs. The dependency goes one way: the supervisor
uses this module, never the reverse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from blackhole.config.model import Config, Listener
from blackhole.policy.decide import Policy
from blackhole.rules.model import Rule
from blackhole.rules.store import Store
from blackhole.server.connection import SMTPProtocol, open_session
from blackhole.server.context import ListenerContext, build_context
from blackhole.server.observing import Observation, listener_labels
from blackhole.server.rulestate import WorkerRules
from blackhole.server.sockets import default_backlog, describe
from blackhole.server.state import ServerState

log = logging.getLogger("blackhole.server")

Bound = Sequence[tuple[Listener, socket.socket]]
# The contexts of listeners with cert=/key=, by (cert, key) as configured.
ListenerTLS = Mapping[tuple[str, str], ssl.SSLContext]
# Seconds a stop waits for a session's PROXY header or TLS handshake, so as
# to tell it 421 after (Worker.stop); and the sessions cut at the end of a
# stop get to send their 421 and close.
EARLY_WAIT = 2.0
CUT_FLUSH = 1.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (it is a dependency), else asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _challenge_maker(rng: random.Random, mailname: str) -> Callable[[], str]:
    # RFC 2195 section 2: "<random-digits.timestamp@hostname>", unique per use.
    def challenge() -> str:
        return f"<{rng.getrandbits(48)}.{int(time.time())}@{mailname}>"

    return challenge


def listener_keys(listeners: Sequence[Listener]) -> list[tuple[str, int, bool, int]]:
    """(host or socket path, port, tls, rank among the listeners with those)."""
    seen: dict[tuple[str, int, bool], int] = {}
    keys = []
    for listener in listeners:
        address = (listener.path or listener.host, listener.port, listener.tls)
        rank = seen.get(address, 0)
        seen[address] = rank + 1
        keys.append((*address, rank))
    return keys


class Worker:
    """Serves a set of bound listeners on the running loop."""

    def __init__(
        self,
        config: Config,
        bound: Bound,
        mailname: str,
        ssl_context: ssl.SSLContext | None,
        *,
        rng: random.Random | None = None,
        worker_id: int | None = None,
        store: Store | None = None,
        started: float | None = None,
        observation: Observation | None = None,
        listener_tls: ListenerTLS | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.bound = list(bound)
        self.rng = rng if rng is not None else random.Random(config.seed)
        self.names = listener_labels(self.bound)
        if observation is None:
            observation = Observation.private(self.names)
        self.state = ServerState(
            self.loop,
            Policy(self.rng),
            prefix=f"w{worker_id}-" if worker_id is not None else "",
            observation=observation,
        )
        self.config = config
        self.contexts: list[ListenerContext] = []
        self._servers: list[asyncio.AbstractServer] = []
        self.store = store
        # When the server started (the supervisor's time): file rules'
        # windows count from it, in every worker and after any restart.
        self.started = started if started is not None else time.time()
        if WorkerRules.wanted(config):
            self.state.rules = self._new_rules(config)
        self.reload(config, mailname, ssl_context, listener_tls=listener_tls)

    def reload(
        self,
        config: Config,
        mailname: str,
        ssl_context: ssl.SSLContext | None,
        *,
        listener_tls: ListenerTLS | None = None,
    ) -> None:
        """New settings for new sessions; sessions in flight keep theirs."""
        challenge = _challenge_maker(self.rng, mailname)
        # Listeners are matched by address and by their rank among listeners
        # with that address: several "127.0.0.1:0" listeners (port 0, each
        # given its own port by the kernel) share an address but not flags,
        # and keyed by address alone they all took the flags of the last one.
        by_address = dict(zip(listener_keys(config.listeners), config.listeners, strict=True))
        bound_keys = listener_keys([listener for listener, _sock in self.bound])
        contexts: list[ListenerContext] = []
        for key, (listener, _sock) in zip(bound_keys, self.bound, strict=True):
            # Flags come from the new config when the listener is still there.
            current = by_address.get(key, listener)
            own = (listener_tls or {}).get((current.cert or "", current.key or ""))
            context = own if own is not None else ssl_context
            built = build_context(config, current, mailname, context, challenge)
            contexts.append(replace(built, name=self.names[len(contexts)]))
        if self.config is not config:  # a SIGHUP reload, not the first load
            self._reload_rules(config)
        self.config = config
        self.contexts[:] = contexts  # in place: the protocol factories read this list

    def _reload_rules(self, config: Config) -> None:
        rules = self.state.rules
        if rules is not None:
            rules.reload(config)
        elif WorkerRules.wanted(config):
            self.state.rules = self._new_rules(config)
            self._rules_changed()

    def _new_rules(self, config: Config) -> WorkerRules:
        """The worker's rules, their matches counted as each rule's hits."""
        rules = WorkerRules(config, self.store, self.started)
        rules.ruleset.on_match = self.state.observation.rule_matched
        rules.ruleset.on_change = self._rules_changed
        return rules

    def _rules_changed(self) -> None:
        """OBSERVE.md: a rule posted is applied before the answer, in open
        sessions too (a test's client may keep its connection); a rule
        removed, or a reload's, likewise."""
        for session in list(self.state.sessions):
            session.follow_rules()

    def set_api_rules(self, rules: list[Rule]) -> None:
        """The control API's rules, pushed by the hub: in force at once, in open
        sessions too.

        A worker without rules gets its rule set only now, so that a server
        nobody steers pays nothing per session.
        """
        if self.state.rules is None:
            if not rules:
                return
            self.state.rules = self._new_rules(self.config)
        self.state.rules.ruleset.replace_api(rules)  # open sessions follow (on_change)

    async def start(self) -> None:
        backlog = default_backlog()
        for index, (_listener, sock) in enumerate(self.bound):
            server = await self.loop.create_server(self._factory(index), sock=sock, backlog=backlog)
            self._servers.append(server)

    def _factory(self, index: int) -> Callable[[], SMTPProtocol]:
        # Reads self.contexts when called: replaced in place by a reload.
        return functools.partial(open_session, self.contexts, index, self.state)

    async def stop_accepting(self) -> None:
        """Take no new connections; sessions in flight carry on as if nothing happened.

        A worker being replaced after a reload does this: its clients finish at
        their own pace while its successor takes the new connections.

        Returns once every connection accepted so far is in ``state.sessions``
        (on uvloop, the worker's loop; asyncio's takes a turn more). uvloop
        makes a connection's protocol as it accepts it but calls
        ``connection_made`` (which counts the session) from its ready queue,
        which runs in order: one yield, once the listeners are closed, lets
        every such call already queued run first. Counted before, a session
        would be missed by the drain, and dropped with the worker.
        """
        for server in self._servers:
            server.close()
        await asyncio.sleep(0)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let transactions finish for ``grace`` seconds, then cut
        what is left (421 4.3.2) and give that up to ``CUT_FLUSH`` to go out."""
        await self.stop_accepting()
        self.state.stopping = True
        for session in list(self.state.sessions):
            session.shutdown()
        # A session before its greeting or in a TLS handshake is told 421 once
        # that is done, if it is done soon (Endings.shutdown).
        early = min(grace, EARLY_WAIT)
        await self.sessions_gone(early)
        for session in list(self.state.sessions):
            session.cut_early()
        await self.sessions_gone(grace - early)
        for session in list(self.state.sessions):
            session.cut()
        # Their 421s are queued: a moment for them to go out before the loop
        # (and, in a worker process, the process) ends.
        await self.sessions_gone(CUT_FLUSH)
        log.debug("worker stopped: %s", self.state.stats)

    async def sessions_gone(self, seconds: float, unless: asyncio.Event | None = None) -> None:
        """Return once every session has ended, ``seconds`` have passed, or
        ``unless`` is set (polled: sessions end in callbacks, not in tasks)."""
        deadline = self.loop.time() + seconds
        while self.state.sessions and self.loop.time() < deadline:
            if unless is not None and unless.is_set():
                return
            await asyncio.sleep(0.05)


def describe_all(bound: Bound, starttls: bool) -> str:
    parts = []
    for listener, sock in bound:
        text = describe(listener, sock)
        if starttls and not listener.tls:
            text += " (STARTTLS)"
        flags = [f"mode={listener.mode}" if listener.mode else ""]
        if listener.name is not None:
            flags.append(f"name={listener.name}")
        if listener.delay is not None:
            flags.append(f"delay={listener.delay}")
        flag_text = " ".join(f for f in flags if f)
        parts.append(f"{text} [{flag_text}]" if flag_text else text)
    return ", ".join(parts)


def startup_line(
    config: Config, bound: Bound, mailname: str, starttls: bool, workers: int | None = None
) -> str:
    """The one line that says where the server listens, with the real ports.

    Scripts (and the test harness) wait for "listening on" and read the
    ``smtp://HOST:PORT`` URLs from it: keep that wording.
    """
    count = "" if workers is None else f"; {workers} worker{'s' if workers != 1 else ''}"
    delay = f", delay {config.delay}s" if config.delay is not None else ""
    return (
        f"Blackhole {mailname} listening on {describe_all(bound, starttls)}; "
        f"mode {config.mode}{delay}{count} (pid {os.getpid()})"
    )
