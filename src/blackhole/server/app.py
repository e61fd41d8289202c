"""Running the server: one event loop serving already-bound listening sockets.

``Worker`` is what every process that serves mail runs (the single process
here, each worker under the supervisor). ``run`` is the single-process entry
point the command line calls: bind, serve, stop cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from blackhole.config.model import Config, Listener
from blackhole.policy.decide import Policy
from blackhole.server.connection import SMTPProtocol
from blackhole.server.context import ListenerContext, build_context
from blackhole.server.mailname import resolve_mailname
from blackhole.server.sockets import bind_all, default_backlog, describe
from blackhole.server.state import ServerState
from blackhole.server.tls import make_tls_context

log = logging.getLogger("blackhole.server")

Bound = Sequence[tuple[Listener, socket.socket]]


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


def _listener_keys(listeners: Sequence[Listener]) -> list[tuple[str, int, bool, int]]:
    """(host, port, tls, rank among the listeners with that host, port and tls)."""
    seen: dict[tuple[str, int, bool], int] = {}
    keys = []
    for listener in listeners:
        address = (listener.host, listener.port, listener.tls)
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
        ssl_context: object,
        *,
        rng: random.Random | None = None,
        worker_id: int | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.bound = list(bound)
        self.rng = rng if rng is not None else random.Random(config.seed)
        self.state = ServerState(
            self.loop, Policy(self.rng), prefix=f"w{worker_id}-" if worker_id is not None else ""
        )
        self.config = config
        self.contexts: list[ListenerContext] = []
        self._servers: list[asyncio.AbstractServer] = []
        self.reload(config, mailname, ssl_context)

    def reload(self, config: Config, mailname: str, ssl_context: object) -> None:
        """New settings for new sessions; sessions in flight keep theirs."""
        import ssl  # noqa: PLC0415 - only for the type check below

        ctx = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None
        challenge = _challenge_maker(self.rng, mailname)
        # Listeners are matched by address and by their rank among listeners
        # with that address: several "127.0.0.1:0" listeners (port 0, each
        # given its own port by the kernel) share an address but not flags,
        # and keyed by address alone they all took the flags of the last one.
        by_address = dict(zip(_listener_keys(config.listeners), config.listeners, strict=True))
        bound_keys = _listener_keys([listener for listener, _sock in self.bound])
        contexts = []
        for key, (listener, _sock) in zip(bound_keys, self.bound, strict=True):
            # Flags come from the new config when the listener is still there.
            current = by_address.get(key, listener)
            contexts.append(build_context(config, current, mailname, ctx, challenge))
        self.config = config
        self.contexts = contexts

    async def start(self) -> None:
        backlog = default_backlog()
        for index, (_listener, sock) in enumerate(self.bound):
            server = await self.loop.create_server(self._factory(index), sock=sock, backlog=backlog)
            self._servers.append(server)

    def _factory(self, index: int) -> Callable[[], SMTPProtocol]:
        def factory() -> SMTPProtocol:
            return SMTPProtocol(self.contexts[index], self.state)

        return factory

    async def stop(self, grace: float) -> None:
        """Stop accepting, let transactions finish for ``grace`` seconds, then abort."""
        for server in self._servers:
            server.close()
        sessions = list(self.state.sessions)
        for session in sessions:
            session.shutdown()
        deadline = self.loop.time() + grace
        while self.state.sessions and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.state.sessions):
            session.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        log.debug("worker stopped: %s", self.state.stats)


def describe_all(bound: Bound, starttls: bool) -> str:
    parts = []
    for listener, sock in bound:
        text = describe(listener, sock)
        if starttls and not listener.tls:
            text += " (STARTTLS)"
        flags = [f"mode={listener.mode}" if listener.mode else "", ""]
        if listener.delay is not None:
            flags.append(f"delay={listener.delay}")
        flag_text = " ".join(f for f in flags if f)
        parts.append(f"{text} [{flag_text}]" if flag_text else text)
    return ", ".join(parts)


async def serve(
    config: Config,
    bound: Bound,
    mailname: str,
    ssl_context: object,
    stop: asyncio.Event,
) -> None:
    """Serve until ``stop`` is set, then drain."""
    worker = Worker(config, bound, mailname, ssl_context)
    await worker.start()
    log.info(
        "Blackhole %s listening on %s; mode %s%s (pid %d)",
        mailname,
        describe_all(bound, ssl_context is not None),
        config.mode,
        f", delay {config.delay}s" if config.delay is not None else "",
        os.getpid(),
    )
    await stop.wait()
    log.info("stopping: finishing transactions in flight (up to %gs)", config.grace_period)
    await worker.stop(config.grace_period)


def run(config: Config) -> None:
    """Single process: bind, serve until SIGTERM/SIGINT, stop cleanly."""
    mailname = resolve_mailname(config.mailname)
    with tempfile.TemporaryDirectory(prefix="blackhole-tls-") as tmp:
        ssl_context = make_tls_context(config, Path(tmp))
        bound = bind_all(config.listeners)
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(_main(config, bound, mailname, ssl_context))
        finally:
            for _listener, sock in bound:
                sock.close()


async def _main(config: Config, bound: Bound, mailname: str, ssl_context: object) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(config, bound, mailname, ssl_context, stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
