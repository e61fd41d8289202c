"""systemd readiness notification (sd_notify(3)), for ``Type=notify`` units.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket
named in ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
Without that variable this does nothing, so it is always safe to call.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def sd_notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``); True if a notify socket took it."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify %r to %s failed: %s", state, address, exc)
        return False
    return True
