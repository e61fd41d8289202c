"""Rule state in shared memory: every worker of one server decides in it itself.

RULES.md "Determinism": counts, greylist entries and spent rules are shared
exactly by all workers of one server. Asking the hub for each decision costs
a round trip that wakes two processes; here a worker decides in a region the
supervisor made before it started the hub and the workers, under a lock, in
a few microseconds, without leaving its event loop's callback. The hub maps
the same region to serve ``GET /rules`` (spent), ``POST /reset`` and to
forget the state of rules that are gone. The decision itself is
``rules.store.advance``, as in ``MemoryStore``.

The region is one anonymous shared memory file (``memfd_create``), passed by
descriptor as the counters region is (``observe.tally``)::

    header (64 bytes) | rule table: RULE_SLOTS x 64 bytes | entries: BUCKETS x WAYS x 64 bytes

- a rule slot: the rule's stamp, how often it acted, its id (the rule's
  fingerprint). Found by hashing the id and probing on (open addressing).
- an entry: one key of one rule: a 16-byte tag (BLAKE2b of the rule id and
  the key), the rule's stamp and slot, the key's count, first and last seen.
  A key's entry lives in the bucket of ``WAYS`` entries its tag picks.

Stamps make forgetting cost O(rules), never O(entries): each time a rule
takes a slot it gets a new stamp from the header's counter, which never
repeats, and an entry counts only while its stamp is its rule slot's. So
``reset`` zeroes the rule table and ``keep`` the stamps of the rules not
kept; their entries are free from then on.

Locking: a POSIX record lock on the region (``lockf``: two system calls a
decision). The kernel releases it when its holder dies, so a worker killed
in the middle of a decision does not wedge the others; what it was writing
is at worst its own key's entry or its rule's acted count: nothing links one
entry to another.

A full bucket: a new key takes a free entry, else an entry of a forgotten
rule, else an entry unseen for two days (RULES.md: that key starts over
anyway), else the least recently seen entry of its bucket, whose key then
starts over: those evictions are counted (``evictions``) and logged at
warning, at most once a minute per process.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import time
from pathlib import Path

from blackhole.protocol.memo import remember
from blackhole.rules.select import FORGET_AFTER
from blackhole.rules.store import Answer, Ask, Store, StoreUnavailableError, advance

log = logging.getLogger("blackhole.rules")

# 4 x observe.layout.MAX_RULES: the rules in force, and those a rolling
# reload still uses until the hub forgets them.
RULE_SLOTS = 1024
# 131,072 keys in 8 MiB of address space; pages are only allocated as
# buckets are first written.
BUCKETS = 16384
WAYS = 8
WARN_EVERY = 60.0  # seconds between two warnings about evictions
# Keys whose tag and bucket a process keeps (SharedStore._locate); past it, it starts over.
_LOCATED_CACHE = 4096

_MAGIC = b"BHSTATE1"
_HEADER = struct.Struct("<8sIII4xQQ24x")  # magic, rule slots, buckets, ways, next stamp, evictions
_RULE = struct.Struct("<QQB47s")  # stamp (0: none), acted, id length, id
_ENTRY = struct.Struct("<16sQI12xQdd")  # tag, stamp, rule slot, count, first, last seen
_U64 = struct.Struct("<Q")
_STAMP_ACTED = struct.Struct("<QQ")  # the start of a rule slot
_ROW = 64
_NEXT_STAMP = 24  # offsets of header fields
_EVICTIONS = 32
_ID_MAX = 47


def _anonymous_file(length: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("blackhole-rule-state")
    else:  # pragma: no cover - platforms without memfd (macOS)
        fd, path = tempfile.mkstemp(prefix="blackhole-rule-state-")
        Path(path).unlink()
    os.ftruncate(fd, length)
    return fd


def _name(held: bytes, length: int) -> str:
    # "replace": a slot torn by a writer killed half-way holds any bytes; it
    # must not stop /rules or a reload from reading the others.
    return held[:length].decode(errors="replace")


def _tag(rule_id: str, key: str) -> bytes:
    return hashlib.blake2b(f"{rule_id}\0{key}".encode(), digest_size=16).digest()


class SharedStore(Store):
    """A view of the region. ``keeper``: whether ``keep`` forgets anything.

    Only the hub's view is the keeper: a worker's list of the rules in force
    (in the middle of a rolling reload, say) must not wipe what the other
    workers still use, as with the hub's own store (``RemoteStore.keep``).
    """

    synchronous = True

    def __init__(self, fd: int, *, owner: bool, keeper: bool) -> None:
        self.fd = fd
        self._owner = owner
        self.keeper = keeper
        size = os.fstat(fd).st_size
        if size < _ROW:
            raise ValueError("the rule state region is too short")
        self._map = mmap.mmap(fd, size)
        magic, rule_slots, buckets, ways, _stamp, _ev = _HEADER.unpack_from(self._map, 0)
        if magic != _MAGIC or size != _ROW * (1 + rule_slots + buckets * ways):
            raise ValueError("the rule state region has the wrong layout")
        self.rule_slots = rule_slots
        self.buckets = buckets
        self.ways = ways
        self._rules_at = _ROW
        self._entries_at = _ROW * (1 + rule_slots)
        self._bucket_bytes = ways * _ROW
        self._mask = buckets - 1
        self._slots: dict[str, tuple[int, int]] = {}  # rule id -> (slot, stamp) last seen
        self._located: dict[tuple[str, str], tuple[bytes, int]] = {}  # (rule id, key) -> _locate
        self._warned = self._full_logged = -WARN_EVERY

    @classmethod
    def create(
        cls, rule_slots: int = RULE_SLOTS, buckets: int = BUCKETS, ways: int = WAYS
    ) -> SharedStore:
        """A new, empty region (the supervisor's, before the hub and the workers)."""
        if rule_slots < 1 or ways < 1 or buckets < 1 or buckets & (buckets - 1):
            raise ValueError("rule slots and ways must be positive, buckets a power of two")
        fd = _anonymous_file(_ROW * (1 + rule_slots + buckets * ways))
        with mmap.mmap(fd, _ROW) as head:
            _HEADER.pack_into(head, 0, _MAGIC, rule_slots, buckets, ways, 1, 0)
        return cls(fd, owner=True, keeper=True)

    @classmethod
    def attach(cls, fd: int, *, keeper: bool) -> SharedStore:
        """Map a region made by another process (the descriptor stays the caller's)."""
        return cls(fd, owner=False, keeper=keeper)

    def close(self) -> None:
        self._map.close()
        if self._owner:
            os.close(self.fd)

    @property
    def evictions(self) -> int:
        """Keys pushed out of a full bucket while they still counted, since the start."""
        return int(_U64.unpack_from(self._map, _EVICTIONS)[0])

    # --- deciding ---------------------------------------------------------------------

    async def decide(self, ask: Ask) -> Answer:
        return self.decide_now(ask)

    def decide_now(self, ask: Ask) -> Answer:
        # The key's tag and bucket, worked out before the lock is taken.
        located = self._located.get((ask.rule_id, ask.key))
        if located is None:
            located = self._locate(ask.rule_id, ask.key)
        tag, start = located
        m = self._map
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            # The rule's slot as last seen, if its stamp is still the one there.
            cached = self._slots.get(ask.rule_id)
            slot, stamp = self._rule(ask.rule_id) if cached is None else cached
            rule_at = self._rules_at + slot * _ROW
            held, acted = _STAMP_ACTED.unpack_from(m, rule_at)
            if held != stamp:  # forgotten (reset, keep) since: find it again
                slot, stamp = self._rule(ask.rule_id)
                rule_at = self._rules_at + slot * _ROW
                acted = _STAMP_ACTED.unpack_from(m, rule_at)[1]
            end = start + self._bucket_bytes
            at = m.find(tag, start, end)
            while at >= 0 and (at - start) % _ROW:  # the tag's bytes across two fields
                at = m.find(tag, at + 1, end)
            count, first, last = 0, 0.0, 0.0
            if at < 0:
                at = self._victim(start, ask.now)
            else:
                _tag, owner, _slot, old, old_first, old_last = _ENTRY.unpack_from(m, at)
                if owner == stamp:
                    count, first, last = old, old_first, old_last
            count, first, act = advance(ask, count, first, last, acted)
            _ENTRY.pack_into(m, at, tag, stamp, slot, count, first, ask.now)
            if act:
                _U64.pack_into(m, rule_at + 8, acted + 1)
            return Answer(act, count)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _locate(self, rule_id: str, key: str) -> tuple[bytes, int]:
        """A key's tag and where its bucket starts, kept for its next decision.

        A load test decides the same few keys over and over: hashing one
        costs more than the rest of its decision outside the lock.
        """
        tag = _tag(rule_id, key)
        bucket = int.from_bytes(tag[:8], "little") & self._mask
        located = (tag, self._entries_at + bucket * self._bucket_bytes)
        return remember(self._located, (rule_id, key), located, _LOCATED_CACHE)

    def _rule(self, rule_id: str) -> tuple[int, int]:
        """The slot and stamp of ``rule_id``, given one if it has none (under the lock)."""
        name = rule_id.encode()
        if not 0 < len(name) <= _ID_MAX:
            raise ValueError(f"a rule id has 1 to {_ID_MAX} bytes: {rule_id!r}")
        home = int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "little")
        free = None
        for probe in range(self.rule_slots):
            slot = (home + probe) % self.rule_slots
            stamp, _acted, length, held = _RULE.unpack_from(self._map, self._rules_at + slot * _ROW)
            if length == 0:  # never used: the end of the probe sequence
                if free is None:
                    free = slot
                break
            if stamp == 0:  # forgotten: reusable
                if free is None:
                    free = slot
            elif held[:length] == name:
                self._slots[rule_id] = (slot, stamp)
                return slot, stamp
        if free is None:
            reason = f"the shared rule state holds at most {self.rule_slots} rules with state"
            # Logged here, once a minute: the adapter logs an outage at debug only.
            if time.monotonic() - self._full_logged >= WARN_EVERY:
                self._full_logged = time.monotonic()
                log.error("%s: its rules past that answer 451 4.3.0", reason)
            raise StoreUnavailableError(reason)
        stamp = _U64.unpack_from(self._map, _NEXT_STAMP)[0]
        _U64.pack_into(self._map, _NEXT_STAMP, stamp + 1)
        _RULE.pack_into(self._map, self._rules_at + free * _ROW, stamp, 0, len(name), name)
        self._slots[rule_id] = (free, stamp)
        return free, stamp

    def _live(self, stamp: int, slot: int) -> bool:
        """Whether an entry still counts: its rule holds the same stamp."""
        if stamp == 0 or slot >= self.rule_slots:
            return False
        return bool(_U64.unpack_from(self._map, self._rules_at + slot * _ROW)[0] == stamp)

    def _victim(self, start: int, now: float) -> int:
        """Where a new key goes in the bucket at ``start`` (see the module's docstring)."""
        oldest, oldest_seen = start, float("inf")
        for at in range(start, start + self._bucket_bytes, _ROW):
            _tag, stamp, slot, _count, _first, last = _ENTRY.unpack_from(self._map, at)
            if not self._live(stamp, slot) or now - last >= FORGET_AFTER:
                return at
            if last < oldest_seen:
                oldest, oldest_seen = at, last
        evictions = self.evictions + 1
        _U64.pack_into(self._map, _EVICTIONS, evictions)
        if time.monotonic() - self._warned >= WARN_EVERY:
            self._warned = time.monotonic()
            log.warning(
                "the shared rule state is full (%d keys): the least recently seen keys "
                "start over (%d so far)",
                self.buckets * self.ways,
                evictions,
            )
        return oldest

    # --- the rest of Store ------------------------------------------------------------

    async def acted(self) -> dict[str, int]:
        return self.acted_now()

    def acted_now(self) -> dict[str, int]:
        """How often each rule with state acted, for the hub's ``GET /rules``."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            acted = {}
            for slot in range(self.rule_slots):
                at = self._rules_at + slot * _ROW
                stamp, count, length, held = _RULE.unpack_from(self._map, at)
                if stamp:
                    acted[_name(held, length)] = count
            return acted
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    async def keep(self, rule_ids: frozenset[str]) -> None:
        if not self.keeper:
            return
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            for slot in range(self.rule_slots):
                at = self._rules_at + slot * _ROW
                stamp, _count, length, held = _RULE.unpack_from(self._map, at)
                if stamp and _name(held, length) not in rule_ids:
                    # The id stays: the slot is reusable but keeps probe sequences whole.
                    _RULE.pack_into(self._map, at, 0, 0, length, held)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    async def reset(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            self._map[self._rules_at : self._entries_at] = bytes(self._entries_at - self._rules_at)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
