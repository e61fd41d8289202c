"""Running the control API on ``control_listen``.

Wiring: the hub (``blackhole.hub``) calls ``start_on`` with the listening
socket the supervisor bound for it (bound once, before privileges are
dropped, and kept across hub restarts), and ``ControlServer.stop`` when it
stops; ``start`` binds by itself (tests). aiohttp's access log is off: a
scraper every few seconds would drown the server's own log.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web

from blackhole.control.app import HTTP_LOG, TOKEN, make_app
from blackhole.control.backend import Backend


class ControlServer:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port

    def set_token(self, token: str | None) -> None:
        """A new token (reload) for the requests from now on."""
        self._runner.app[TOKEN].set(token)

    async def stop(self) -> None:
        await self._runner.cleanup()


async def _serve(
    backend: Backend, token: str | None, site: Callable[[web.AppRunner], web.BaseSite]
) -> ControlServer:
    runner = web.AppRunner(
        make_app(backend, token),
        access_log=None,
        logger=HTTP_LOG,
        handle_signals=False,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    try:
        await site(runner).start()
    except BaseException:
        await runner.cleanup()
        raise
    return ControlServer(runner, int(runner.addresses[0][1]))


async def start(backend: Backend, host: str, port: int, token: str | None) -> ControlServer:
    """Serve on ``host:port`` (0: any free port, see ``.port``); ``OSError`` if it cannot bind."""
    return await _serve(backend, token, lambda runner: web.TCPSite(runner, host, port))


async def start_on(backend: Backend, sock: socket.socket, token: str | None) -> ControlServer:
    """Serve on an already bound and listening socket."""
    return await _serve(backend, token, lambda runner: web.SockSite(runner, sock))
