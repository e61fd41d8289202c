"""Linux capabilities (capabilities(7)) through libc, without libcap.

After the privilege drop the supervisor keeps two capabilities and nothing
else of root: ``CAP_DAC_READ_SEARCH`` (read any file, so that SIGHUP can
re-read the config, certificate and key wherever they live, say a root-only
key or a directory only root may enter) and ``CAP_NET_BIND_SERVICE`` (so
that a reload may add a listener below port 1024). It can neither write a
file it does not own nor change user again. Workers keep none: a spawned one
loses them at exec (it has no file capabilities), a forked one drops them
first thing (``clear``).

Everything here fails soft: where capabilities are not available (another
OS, a container whose bounding set lacks them) the server still runs, and a
reload then reads files as the unprivileged user.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

CAP_DAC_READ_SEARCH = 2
CAP_NET_BIND_SERVICE = 10
KEPT = (CAP_DAC_READ_SEARCH, CAP_NET_BIND_SERVICE)
NAMES = {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_NET_BIND_SERVICE: "CAP_NET_BIND_SERVICE"}

_PR_SET_KEEPCAPS = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.capset  # noqa: B018 - probe: absent outside Linux
        libc.capget  # noqa: B018
        libc.prctl  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_across_setuid(on: bool) -> bool:
    """prctl(PR_SET_KEEPCAPS): keep the permitted set when root becomes a user."""
    libc = _libc()
    return libc is not None and libc.prctl(_PR_SET_KEEPCAPS, int(on), 0, 0, 0) == 0


def permitted() -> int:
    """The permitted set as a bit mask (capabilities 0-31), 0 if unknown."""
    libc = _libc()
    if libc is None:
        return 0
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return 0
    return int(data[0].permitted)


def set_only(capabilities: Iterable[int]) -> None:
    """Make ``capabilities`` the effective and permitted sets; drop every other one.

    Raises ``OSError`` if the kernel refuses (a capability not permitted).
    """
    libc = _libc()
    if libc is None:
        raise OSError("capabilities are not supported here")
    mask = 0
    for capability in capabilities:
        mask |= 1 << capability
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    data[0].effective = data[0].permitted = mask
    if libc.capset(ctypes.byref(header), data) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def clear() -> None:
    """Drop every capability (a worker forked from the supervisor)."""
    if permitted():
        set_only(())
