"""Which matches act: pure functions of (selection, count, first seen, now, seed).

RULES.md "Determinism": a decision depends only on the seed, the rule's name,
the key and the match count of that key, never on timing or on the worker.
Chance is a keyed hash (BLAKE2b) of those, read as a number in [0, 1): the
same traffic against the same rules and seed gets the same decisions.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress

from blackhole.rules.match import Facts
from blackhole.rules.model import Key, Selection

# RULES.md "greylist": a key unseen for 2 days starts over.
FORGET_AFTER = 2 * 86400.0


def unit(seed: int, rule: str, key: str, count: int, purpose: str = "") -> float:
    """A uniform number in [0, 1) fixed by its arguments."""
    text = f"{seed}\0{rule}\0{key}\0{count}\0{purpose}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_window(selection: Selection, elapsed: float) -> bool:
    """``window``: seconds since the server started or the API rule was added."""
    if selection.window is None:
        return True
    start, end = selection.window
    return start <= elapsed and (end is None or elapsed < end)


def choose(
    selection: Selection,
    *,
    rule: str,
    key: str,
    count: int,
    first_seen: float,
    now: float,
    elapsed: float,
    seed: int,
) -> bool:
    """Whether the ``count``-th match (from 1) of ``key`` acts; ``times`` is the store's."""
    if not in_window(selection, elapsed):
        return False
    if selection.every is not None and count % selection.every != 0:
        return False
    if selection.first is not None and count > selection.first:
        return False
    if selection.after is not None and count <= selection.after:
        return False
    # Greylisting acts (refuses) until the key was first seen `greylist` ago.
    if selection.greylist is not None and now - first_seen >= selection.greylist:
        return False
    return drawn(selection, rule=rule, key=key, count=count, seed=seed)


def drawn(selection: Selection, *, rule: str, key: str, count: int, seed: int) -> bool:
    """``probability``: whether chance picks the ``count``-th match of ``key``."""
    return selection.probability is None or unit(seed, rule, key, count) < selection.probability


@functools.lru_cache(maxsize=4096)
def _network(client: str | None) -> str:
    # Greylisting by /24 (IPv4) or /64 (IPv6): a sender's retries often come
    # from another address of the same pool. Cached: parsing an address costs
    # more than the rest of a greylist decision, and a sender's traffic comes
    # from a few addresses.
    if client is None:
        return ""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _recipient(facts: Facts) -> str:
    if facts.recipient is not None:
        return facts.recipient.lower()
    recipients = facts.recipients
    if len(recipients) == 1:
        return recipients[0].lower()
    # A message's recipients as a set: the same message retried may give
    # them in another order (RFC 5321 3.3 fixes none), and must count as one.
    return ",".join(sorted({r.lower() for r in recipients}))


# Enum members read once, as module globals: on CPython 3.11 ``Key.TRIPLET``
# goes through the enum metaclass's attribute hook, some 600 instructions a
# read, and these are read at every decision.
_TRIPLET = Key.TRIPLET
_SERVER = Key.SERVER
_SESSION = Key.SESSION
_CLIENT = Key.CLIENT
_SENDER = Key.SENDER
_RECIPIENT = Key.RECIPIENT


def key_value(key: Key, facts: Facts) -> str:
    """What a rule counts by for this event (RULES.md "Selection", ``key``)."""
    if key is _TRIPLET:  # first: greylist's, decided at every recipient
        recipient = facts.recipient
        return (
            f"{_network(facts.client)}\0{(facts.sender or '').lower()}\0"
            f"{recipient.lower() if recipient is not None else _recipient(facts)}"
        )
    if key is _SERVER:
        return ""
    if key is _SESSION:
        return facts.session
    if key is _CLIENT:
        return facts.client or ""
    if key is _SENDER:
        return (facts.sender or "").lower()
    if key is _RECIPIENT:
        return _recipient(facts)
    # Key.MESSAGE
    ids = facts.header("Message-ID")
    if ids:
        return ids[0].strip()
    return f"{(facts.sender or '').lower()}\0{_recipient(facts)}"
