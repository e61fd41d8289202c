"""A discarding aiosmtpd server on uvloop, the Python peer in the benchmark.

``python -m aiosmtpd`` would do, but it resolves the host's FQDN for every
connection, keeps the default asyncio loop and stores each message; this wrapper
makes the comparison fair: a fixed host name, uvloop when it is installed, and a
handler that throws every message away. It also offers an implicit-TLS (SMTPS)
listener so that TLS handshake rates can be compared.

    python bench/aiosmtpd_sink.py --port 2525 [--tls-port 4650 --cert C --key K]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class Discard:
    """An aiosmtpd handler that accepts every message and keeps none."""

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd looks for
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        envelope.content = None
        envelope.original_content = None
        return "250 2.0.0 OK: discarded"


def _factory(handler: Discard) -> SMTP:
    return SMTP(
        handler,
        hostname="localhost",
        ident="aiosmtpd-bench",
        data_size_limit=512_000 * 4,
        enable_SMTPUTF8=True,
        decode_data=False,
        timeout=300,
    )


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    handler = Discard()
    servers: list[asyncio.AbstractServer] = [
        await loop.create_server(lambda: _factory(handler), args.host, args.port, backlog=4096)
    ]
    if args.tls_port:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        servers.append(
            await loop.create_server(
                lambda: _factory(handler), args.host, args.tls_port, ssl=ctx, backlog=4096
            )
        )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, default=0)
    parser.add_argument("--cert", default="")
    parser.add_argument("--key", default="")
    args = parser.parse_args()
    runner: Any = asyncio.run
    try:
        import uvloop  # noqa: PLC0415 - optional dependency

        runner = uvloop.run
    except ImportError:
        pass
    runner(serve(args))


if __name__ == "__main__":
    main()
