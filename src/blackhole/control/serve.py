"""Running the control API on ``control_listen``.

Wiring: the process that owns the backend (the supervisor once it runs an
event loop, or a control process it starts) calls ``start`` on its loop at
start-up and ``ControlServer.stop`` when it stops. aiohttp's access log is
off: a scraper every few seconds would drown the server's own log.
"""

from __future__ import annotations

from aiohttp import web

from blackhole.control.app import make_app
from blackhole.control.backend import Backend


class ControlServer:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start(backend: Backend, host: str, port: int, token: str | None) -> ControlServer:
    """Serve on ``host:port`` (0: any free port, see ``.port``); ``OSError`` if it cannot bind."""
    runner = web.AppRunner(
        make_app(backend, token), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return ControlServer(runner, int(runner.addresses[0][1]))
