"""The CXO store: objects with reference counts, and the feeds → heads → roots index.

Objects (the reference's CXDS) map key → (reference count, bytes); the key must be SHA-256 of
the bytes. Counts rise as Roots and parents refer to objects; an object whose count is 0 stays
until an explicit :meth:`CXOStore.sweep`.

The index (the reference's IdxDB) keeps, per shared feed, its heads (by nonce) and per head its
Roots by seq (:class:`RootMeta`). Within a head the Roots must chain: seq 0 has a zero prev, and
where seq − 1 or seq + 1 is known the prev links must agree; gaps are allowed (a subscriber only
sees the Roots it is sent). A feed keeps at most ``max_heads`` heads: adding a Root to a new head
beyond that evicts the head used least recently, and the call returns the evicted Roots so that
the caller can release what they referred to.

Two backends share this interface and one test suite: :class:`MemoryStore` here and
:class:`skywire.cxo.store_sqlite.SqliteStore`. Every call either completes or changes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

from skywire.cipher import PubKey, Sig
from skywire.cxo.objects import ZERO_HASH

__all__ = [
    "DEFAULT_MAX_HEADS",
    "CXOStore",
    "ChainError",
    "HashMismatchError",
    "MemoryStore",
    "MissingObjectError",
    "NoSuchFeedError",
    "RootMeta",
    "StoreError",
    "check_links",
    "check_meta",
    "check_object",
]

DEFAULT_MAX_HEADS = 10


class StoreError(Exception):
    """A store operation was refused; nothing was changed."""


class NoSuchFeedError(StoreError):
    """The feed is not in the index."""


class MissingObjectError(StoreError):
    """The object is not stored."""


class HashMismatchError(StoreError):
    """An object's key is not SHA-256 of its bytes."""


class ChainError(StoreError):
    """A Root that does not fit the seq/prev chain of its head."""


@dataclass(frozen=True, slots=True)
class RootMeta:
    """What the index keeps about one Root (its encoded bytes are the object ``hash``)."""

    feed: PubKey
    nonce: int
    seq: int
    hash: bytes
    prev: bytes = ZERO_HASH
    sig: Sig = Sig.NULL
    time: int = 0
    full: bool = False


def check_object(key: bytes, value: bytes) -> None:
    """Raise :class:`HashMismatchError` unless ``key`` is SHA-256 of ``value`` (every backend)."""
    if hashlib.sha256(value).digest() != key:
        raise HashMismatchError(f"object {key.hex()} does not match its bytes")


def check_meta(meta: RootMeta) -> None:
    """Refuse a Root index entry that is malformed on its own (every backend)."""
    if not 0 <= meta.nonce < 1 << 64 or not 0 <= meta.seq < 1 << 64:
        raise StoreError("nonce and seq are u64")
    if len(meta.hash) != 32 or len(meta.prev) != 32 or meta.hash == ZERO_HASH:
        raise StoreError("a Root needs a 32-byte hash and prev")
    if meta.seq == 0 and meta.prev != ZERO_HASH:
        raise ChainError("a Root with seq 0 has no prev")


def check_links(
    meta: RootMeta, same: RootMeta | None, below: RootMeta | None, above: RootMeta | None
) -> bool:
    """Validate ``meta`` against its neighbours; ``False`` when it is already stored."""
    if same is not None:
        if same.hash != meta.hash:
            raise ChainError(f"another Root with seq {meta.seq} exists in this head")
        return False
    if below is not None and meta.prev != below.hash:
        raise ChainError(f"prev of seq {meta.seq} is not the hash of seq {below.seq}")
    if above is not None and above.prev != meta.hash:
        raise ChainError(f"seq {above.seq} does not point back to this Root")
    return True


class CXOStore(ABC):
    """Objects with reference counts plus the feeds → heads → roots index."""

    max_heads: int

    # -- objects ---------------------------------------------------------------------------

    @abstractmethod
    async def get(self, key: bytes) -> bytes | None:
        """An object's bytes, or ``None``."""

    @abstractmethod
    async def rc(self, key: bytes) -> int | None:
        """An object's reference count, or ``None`` when it is not stored."""

    async def has(self, key: bytes) -> bool:
        return await self.rc(key) is not None

    async def put(self, key: bytes, value: bytes, inc: int = 1) -> int:
        """Store an object (if new) and add ``inc`` to its count; returns the new count."""
        await self.put_many([(key, value)], inc)
        rc = await self.rc(key)
        assert rc is not None
        return rc

    @abstractmethod
    async def put_many(self, items: Iterable[tuple[bytes, bytes]], inc: int = 1) -> None:
        """:meth:`put` for many objects, all or none (a key listed twice gets ``inc`` twice)."""

    async def inc(self, key: bytes, delta: int) -> int:
        """Add ``delta`` (may be negative) to a stored object's count; returns the new count."""
        await self.inc_many([key], delta)
        rc = await self.rc(key)
        assert rc is not None
        return rc

    @abstractmethod
    async def inc_many(self, keys: Iterable[bytes], delta: int) -> None:
        """:meth:`inc` for many objects, all or none; a count never goes below 0."""

    @abstractmethod
    async def sweep(self) -> int:
        """Remove every object whose count is 0; returns how many."""

    @abstractmethod
    async def object_stats(self) -> tuple[int, int]:
        """(number of objects, total bytes)."""

    # -- index -----------------------------------------------------------------------------

    @abstractmethod
    async def add_feed(self, feed: PubKey) -> None:
        """Add a feed (nothing happens when it is already there)."""

    @abstractmethod
    async def del_feed(self, feed: PubKey) -> list[RootMeta]:
        """Remove a feed with its heads and Roots; returns the Roots removed."""

    @abstractmethod
    async def feeds(self) -> list[PubKey]:
        """Every feed, sorted."""

    async def has_feed(self, feed: PubKey) -> bool:
        return feed in await self.feeds()

    @abstractmethod
    async def heads(self, feed: PubKey) -> list[int]:
        """The nonces of a feed's heads, least recently used first."""

    @abstractmethod
    async def add_root(self, meta: RootMeta) -> list[RootMeta]:
        """Index a Root; returns the Roots of a head evicted to make room (usually none)."""

    @abstractmethod
    async def get_root(self, feed: PubKey, nonce: int, seq: int) -> RootMeta | None: ...

    @abstractmethod
    async def roots(self, feed: PubKey, nonce: int) -> list[RootMeta]:
        """A head's Roots by ascending seq."""

    async def last_root(self, feed: PubKey, nonce: int) -> RootMeta | None:
        """The Root of a head with the highest seq."""
        roots = await self.roots(feed, nonce)
        return roots[-1] if roots else None

    @abstractmethod
    async def active_root(self, feed: PubKey) -> RootMeta | None:
        """The newest Root of the feed (highest time; on a tie the most recently used head)."""

    @abstractmethod
    async def set_full(self, feed: PubKey, nonce: int, seq: int, full: bool = True) -> None: ...

    @abstractmethod
    async def del_root(self, feed: PubKey, nonce: int, seq: int) -> RootMeta | None:
        """Remove one Root (and its head when it was the last); returns it."""

    async def keep_last(self, feed: PubKey, nonce: int, n: int = 1) -> list[RootMeta]:
        """Remove all but the ``n`` highest-seq Roots of a head; returns the removed ones."""
        removed: list[RootMeta] = []
        roots = await self.roots(feed, nonce)
        for meta in roots[: max(len(roots) - n, 0)]:
            gone = await self.del_root(feed, nonce, meta.seq)
            if gone is not None:
                removed.append(gone)
        return removed

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> CXOStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass
class _Head:
    touched: int
    roots: dict[int, RootMeta] = field(default_factory=dict)


class MemoryStore(CXOStore):
    """Everything in dictionaries (tests, short-lived subscriber nodes)."""

    def __init__(self, *, max_heads: int = DEFAULT_MAX_HEADS) -> None:
        if max_heads < 1:
            raise ValueError("max_heads must be at least 1")
        self.max_heads = max_heads
        self._objects: dict[bytes, tuple[int, bytes]] = {}
        self._feeds: dict[PubKey, dict[int, _Head]] = {}
        self._clock = itertools.count(1)

    # objects

    async def get(self, key: bytes) -> bytes | None:
        entry = self._objects.get(key)
        return None if entry is None else entry[1]

    async def rc(self, key: bytes) -> int | None:
        entry = self._objects.get(key)
        return None if entry is None else entry[0]

    async def put_many(self, items: Iterable[tuple[bytes, bytes]], inc: int = 1) -> None:
        items = list(items)
        if inc < 0:
            raise StoreError("put cannot decrement")
        for key, value in items:
            check_object(key, value)
        for key, value in items:
            rc, _ = self._objects.get(key, (0, value))
            self._objects[key] = (rc + inc, value)

    async def inc_many(self, keys: Iterable[bytes], delta: int) -> None:
        totals: dict[bytes, int] = {}
        for key in keys:
            totals[key] = totals.get(key, 0) + delta
        for key, d in totals.items():
            entry = self._objects.get(key)
            if entry is None:
                raise MissingObjectError(f"object {key.hex()} is not stored")
            if entry[0] + d < 0:
                raise StoreError(f"count of {key.hex()} would go below 0")
        for key, d in totals.items():
            rc, value = self._objects[key]
            self._objects[key] = (rc + d, value)

    async def sweep(self) -> int:
        dead = [k for k, (rc, _) in self._objects.items() if rc == 0]
        for k in dead:
            del self._objects[k]
        return len(dead)

    async def object_stats(self) -> tuple[int, int]:
        return len(self._objects), sum(len(v) for _, v in self._objects.values())

    # index

    async def add_feed(self, feed: PubKey) -> None:
        self._feeds.setdefault(feed, {})

    async def del_feed(self, feed: PubKey) -> list[RootMeta]:
        heads = self._feeds.pop(feed, None)
        if heads is None:
            return []
        return [m for h in heads.values() for _, m in sorted(h.roots.items())]

    async def feeds(self) -> list[PubKey]:
        return sorted(self._feeds, key=lambda pk: pk.raw)

    def _heads(self, feed: PubKey) -> dict[int, _Head]:
        heads = self._feeds.get(feed)
        if heads is None:
            raise NoSuchFeedError(f"feed {feed} is not in the index")
        return heads

    async def heads(self, feed: PubKey) -> list[int]:
        heads = self._heads(feed)
        return sorted(heads, key=lambda n: heads[n].touched)

    async def add_root(self, meta: RootMeta) -> list[RootMeta]:
        check_meta(meta)
        heads = self._heads(meta.feed)
        head = heads.get(meta.nonce)
        roots = head.roots if head is not None else {}
        new = check_links(
            meta, roots.get(meta.seq), roots.get(meta.seq - 1), roots.get(meta.seq + 1)
        )
        if not new:
            return []
        evicted: list[RootMeta] = []
        if head is None:
            if len(heads) >= self.max_heads:
                oldest = min(heads, key=lambda n: heads[n].touched)
                evicted = [m for _, m in sorted(heads.pop(oldest).roots.items())]
            head = heads[meta.nonce] = _Head(0)
        head.touched = next(self._clock)
        head.roots[meta.seq] = meta
        return evicted

    async def get_root(self, feed: PubKey, nonce: int, seq: int) -> RootMeta | None:
        head = self._heads(feed).get(nonce)
        return None if head is None else head.roots.get(seq)

    async def roots(self, feed: PubKey, nonce: int) -> list[RootMeta]:
        head = self._heads(feed).get(nonce)
        return [] if head is None else [m for _, m in sorted(head.roots.items())]

    async def active_root(self, feed: PubKey) -> RootMeta | None:
        best: tuple[int, int] | None = None
        found: RootMeta | None = None
        for head in self._heads(feed).values():
            if not head.roots:
                continue
            last = head.roots[max(head.roots)]
            rank = (last.time, head.touched)
            if best is None or rank > best:
                best, found = rank, last
        return found

    async def set_full(self, feed: PubKey, nonce: int, seq: int, full: bool = True) -> None:
        head = self._heads(feed).get(nonce)
        meta = None if head is None else head.roots.get(seq)
        if head is None or meta is None:
            raise StoreError(f"no Root {nonce}/{seq} in feed {feed}")
        head.roots[seq] = RootMeta(
            meta.feed, meta.nonce, meta.seq, meta.hash, meta.prev, meta.sig, meta.time, full
        )

    async def del_root(self, feed: PubKey, nonce: int, seq: int) -> RootMeta | None:
        heads = self._heads(feed)
        head = heads.get(nonce)
        if head is None:
            return None
        meta = head.roots.pop(seq, None)
        if not head.roots:
            del heads[nonce]
        return meta

    async def close(self) -> None:
        return None
