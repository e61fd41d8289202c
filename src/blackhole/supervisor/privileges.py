"""Dropping root: after binding, become ``user``/``group`` for good.

The order is the one that cannot leave a privilege behind: supplementary
groups first (``setgroups``, the ``initgroups`` list of the user, so that
root's group 0 is not kept), then the group, then the user, each with the
real, effective and saved ids set together; then check that root cannot be
regained. Once this returns, neither the supervisor nor any worker it starts
can get root back. The supervisor may keep two narrow capabilities for its
reloads (see ``capabilities``); workers keep nothing.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass

from blackhole.errors import ConfigError, PermissionDenied
from blackhole.supervisor import capabilities

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """Who to become: ids resolved while the user database could be read."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    user: str | None  # the name, for messages
    group: str | None

    @property
    def name(self) -> str:
        return self.user or f"uid {self.uid}"


def _lookup_user(user: str) -> pwd.struct_passwd | int:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        pass
    if user.isdigit():
        try:
            return pwd.getpwuid(int(user))
        except KeyError:
            return int(user)  # a bare uid is allowed, as chown(1) allows it
    raise ConfigError(f"user {user!r} does not exist on this host (see getent passwd)")


def _lookup_group(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    if group.isdigit():
        return int(group)
    raise ConfigError(f"group {group!r} does not exist on this host (see getent group)")


def resolve_target(user: str | None, group: str | None) -> Target | None:
    """The ids for ``user``/``group`` (config keys), or None when neither is set.

    ``group`` defaults to the user's primary group. The supplementary groups
    are the user's own (``getgrouplist``), never the ones we started with.
    Raises ``ConfigError`` (exit 64) for a user or group that does not exist.
    """
    if user is None and group is None:
        return None
    if user is not None:
        found = _lookup_user(user)
        if isinstance(found, int):
            uid, name, primary = found, None, None
        else:
            uid, name, primary = found.pw_uid, found.pw_name, found.pw_gid
    else:
        uid, name, primary = os.getuid(), None, None
    if group is not None:
        gid = _lookup_group(group)
    elif primary is not None:
        gid = primary
    else:
        gid = os.getgid() if user is None else uid
    groups = os.getgrouplist(name, gid) if name is not None else [gid]
    return Target(uid=uid, gid=gid, groups=tuple(dict.fromkeys(groups)), user=user, group=group)


def drop_privileges(target: Target, keep: Sequence[int] = ()) -> tuple[int, ...]:
    """Become ``target`` (see the module docstring); idempotent for non-root.

    ``keep``: capabilities (see ``capabilities``) to hold on to after the
    switch; returns those actually kept (none where the system refuses).
    Raises ``PermissionDenied`` (exit 77) when the switch is refused: not
    running as root (and not already that user), or the kernel said no (a
    container without CAP_SETUID/CAP_SETGID).
    """
    if os.geteuid() != 0:
        if (os.getuid(), os.getgid()) == (target.uid, target.gid):
            return ()
        raise PermissionDenied(
            f"cannot switch to user {target.name} and group {target.gid}: only root can "
            f"(running as uid {os.getuid()}); start as root or remove user/group from the config"
        )
    holding = bool(keep) and target.uid != 0 and capabilities.keep_across_setuid(True)
    try:
        os.setgroups(list(target.groups))
        os.setresgid(target.gid, target.gid, target.gid)
        os.setresuid(target.uid, target.uid, target.uid)
    except OSError as exc:
        raise PermissionDenied(
            f"cannot switch to user {target.name} and group {target.gid}: {exc.strerror or exc}"
        ) from None
    kept = _keep(keep) if holding else ()
    if target.uid != 0:
        try:
            os.setuid(0)
        except OSError:
            pass  # the expected outcome: root is gone
        else:  # pragma: no cover - a kernel that ignores setresuid
            raise PermissionDenied(f"switched to {target.name} but root could be regained")
    log.info(
        "running as user %s (uid %d), group %d, supplementary groups %s; capabilities kept: %s",
        target.name,
        target.uid,
        target.gid,
        ",".join(str(g) for g in os.getgroups()) or "none",
        ", ".join(capabilities.NAMES.get(c, str(c)) for c in kept) or "none",
    )
    return kept


def _keep(wanted: Sequence[int]) -> tuple[int, ...]:
    """After setresuid with PR_SET_KEEPCAPS: keep ``wanted`` (where permitted), drop the rest."""
    try:
        available = capabilities.permitted()
        kept = tuple(c for c in wanted if available & (1 << c))
        capabilities.set_only(kept)
    except OSError as exc:
        log.warning("cannot keep capabilities %s: %s", wanted, exc)
        kept = ()
        with contextlib.suppress(OSError):
            capabilities.set_only(())
    finally:
        capabilities.keep_across_setuid(False)
    missing = [capabilities.NAMES.get(c, str(c)) for c in wanted if c not in kept]
    if missing:
        log.warning(
            "the system does not allow keeping %s: a reload reads files as the "
            "unprivileged user and cannot bind ports below 1024",
            ", ".join(missing),
        )
    return kept


def warn_if_root(user: str | None) -> None:
    """Running a network server as root for no reason deserves a line in the log."""
    if os.geteuid() == 0 and user is None:
        log.warning(
            "running as root: set 'user' (and 'group') in the config so that the server "
            "drops root once its ports are bound"
        )
