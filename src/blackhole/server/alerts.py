"""Send the TLS alert of a failed handshake before the connection closes.

RFC 8446 section 6.2 (and RFC 5246 section 7.2.2): a server that ends a
handshake on an error sends the alert that names it, ``protocol_version``
(70) to a client offering only TLS 1.1, ``handshake_failure`` (40) to one
offering only CBC suites, so that the client can say why. OpenSSL writes that
alert into the SSL object's outgoing buffer, but asyncio's and uvloop's SSL
protocols abort the transport on a failed handshake without flushing it: the
client saw only ``unexpected eof``.

The context built by ``server.tls`` makes SSL objects that, when a handshake
fails, write the pending alert straight to the connection's socket. Which
socket: the SSL object is made (``wrap_bio``) in the SSL protocol's
``connection_made``, which ``loop.start_tls`` schedules with ``call_soon``
as it starts (asyncio and uvloop alike). ``server.upgrade`` schedules
``expect_handshake`` with the connection's sink just before calling
``start_tls``, in the same synchronous step: callbacks run in the order they
were scheduled, so the next ``wrap_bio`` is that connection's. (A context
variable cannot carry it: uvloop runs every connection of a listener in one
shared context.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable

AlertSink = Callable[[bytes], None]


class AlertingSSLObject(ssl.SSLObject):
    """An ``SSLObject`` that sends its alert out when its handshake fails."""

    _outgoing: ssl.MemoryBIO | None = None  # set by AlertingContext.wrap_bio
    _sink: AlertSink | None = None

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError:
            if self._outgoing is not None and self._sink is not None:
                alert = self._outgoing.read()
                if alert:
                    self._sink(alert)
            raise


class AlertingContext(ssl.SSLContext):
    """A server ``SSLContext`` whose SSL objects flush their handshake alert."""

    sslobject_class = AlertingSSLObject
    _next_sink: AlertSink | None = None

    def expect_handshake(self, sink: AlertSink) -> None:
        """The next SSL object made is for the connection ``sink`` writes to."""
        self._next_sink = sink

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if isinstance(obj, AlertingSSLObject):
            obj._outgoing = outgoing
            obj._sink, self._next_sink = self._next_sink, None
        return obj


def socket_sink(transport: asyncio.Transport) -> AlertSink:
    """A sink that writes straight to the transport's socket.

    The loop is about to abort the transport, dropping its write buffer
    (uvloop queues every write to the end of the loop iteration), so the few
    bytes of the alert go to the socket now. Anything still buffered from
    before would have to go first: then no alert is sent rather than one out
    of order.
    """

    def send(alert: bytes) -> None:
        if transport.get_write_buffer_size():
            return
        # Looked up only now, for a failed handshake: uvloop makes a new
        # socket object for every get_extra_info("socket"), and this runs
        # for every handshake.
        sock = transport.get_extra_info("socket")
        fd: int = sock.fileno() if sock is not None else -1
        if fd < 0:
            return
        # A full socket buffer or a peer already gone: the alert is a courtesy.
        with contextlib.suppress(OSError):
            os.write(fd, alert)

    return send
