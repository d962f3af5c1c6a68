"""Storage for the dmsg discovery: one interface, three backends.

* :class:`~skywire.services.dmsgdisc.store.memory.MemoryStore`: a dict, for tests.
* :class:`~skywire.services.dmsgdisc.store.sqlite.SqliteStore`: aiosqlite, the default.
* :class:`~skywire.services.dmsgdisc.store.redis.RedisStore`: Redis, the upstream engine.

Lifetimes follow upstream: a server entry lives :data:`SERVER_ENTRY_TTL` seconds after each write
(servers re-post every minute); a client entry lives until deleted, or
:data:`CLIENT_ENTRY_TIMEOUT_TTL` seconds when posted with ``?timeout=true``.
"""

from __future__ import annotations

import abc
import enum
import random
import time
from collections import OrderedDict
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from skywire.cipher import PubKey
from skywire.dmsg.disc_entry import Clock, Entry

__all__ = [
    "CLIENT_ENTRY_TIMEOUT_TTL",
    "MAX_AVAILABLE_SERVERS",
    "SERVER_ENTRY_TTL",
    "DiscStore",
    "StoreKind",
    "entry_ttl",
    "open_store",
    "pick_available",
]

SERVER_ENTRY_TTL = 120.0
"""Seconds a server entry lives after its last write (two update intervals)."""

CLIENT_ENTRY_TIMEOUT_TTL = 180.0
"""Seconds a client entry lives when posted with ``?timeout=true``."""

MAX_AVAILABLE_SERVERS = 512
"""The most entries ``available_servers`` returns."""

MAX_LOCAL_TOMBSTONES = 100_000
"""Deleted keys a store without shared tombstones remembers in-process (oldest forgotten)."""


def entry_ttl(entry: Entry, timeout: bool) -> float | None:
    """Seconds ``entry`` lives after being written, or ``None`` for no expiry."""
    if entry.server is not None:
        return SERVER_ENTRY_TTL
    return CLIENT_ENTRY_TIMEOUT_TTL if timeout else None


def pick_available(servers: Sequence[Entry], limit: int) -> list[Entry]:
    """Servers with room for sessions: up to ``limit`` random picks, most room first."""
    usable = [e for e in servers if e.server is not None and e.server.available_sessions > 0]
    if len(usable) > limit:
        usable = random.sample(usable, max(limit, 0))
    usable.sort(key=lambda e: e.server.available_sessions if e.server else 0, reverse=True)
    return usable


class DiscStore(abc.ABC):
    """The discovery's storage. Every method is safe to call concurrently.

    Entries are stored as given (already validated and verified by the API); expired entries are
    never returned. Lists of keys are sorted by key.
    """

    @abc.abstractmethod
    async def get(self, pk: PubKey) -> Entry:
        """The live entry of ``pk``; raises :class:`~skywire.dmsg.disc_entry.KeyNotFoundError`."""

    @abc.abstractmethod
    async def set(self, entry: Entry, *, timeout: bool = False) -> None:
        """Store ``entry`` under its static key, replacing any previous one.

        Its lifetime is :func:`entry_ttl`.
        """

    @abc.abstractmethod
    async def delete(self, pk: PubKey) -> None:
        """Remove the entry of ``pk``; no error when there is none."""

    @abc.abstractmethod
    async def client_pks(self) -> list[PubKey]:
        """Keys of all live client entries."""

    @abc.abstractmethod
    async def visor_client_pks(self) -> list[PubKey]:
        """Keys of live client entries whose ``client_type`` is ``"visor"``."""

    @abc.abstractmethod
    async def all_servers(self) -> list[Entry]:
        """All live server entries, whatever their capacity."""

    async def available_servers(self, limit: int = MAX_AVAILABLE_SERVERS) -> list[Entry]:
        """Live servers with ``available_sessions > 0``, most room first, at most ``limit``."""
        return pick_available(await self.all_servers(), limit)

    # Tombstones: the API refuses to re-create a deleted entry from a copy captured before the
    # delete. Kept in the store so that every replica over a shared store sees them; this
    # default keeps them in-process (enough for a store only one process uses).
    _graves: OrderedDict[PubKey, tuple[int, int]] | None = None

    async def bury(self, pk: PubKey, timestamp: int, buried_at: int, lifetime: float) -> None:
        """Record that the entry of ``pk`` was deleted at ``buried_at`` (Unix ns, the API's
        clock), its newest timestamp being ``timestamp``; kept for ``lifetime`` seconds at
        least (the API checks the age itself), possibly forgotten afterwards."""
        graves = self._graves
        if graves is None:
            graves = self._graves = OrderedDict()
        graves[pk] = (timestamp, buried_at)
        graves.move_to_end(pk)
        while len(graves) > MAX_LOCAL_TOMBSTONES:
            graves.popitem(last=False)

    async def tombstone(self, pk: PubKey) -> tuple[int, int] | None:
        """``(timestamp, buried_at)`` of the last :meth:`bury` of ``pk``, if remembered."""
        return None if self._graves is None else self._graves.get(pk)

    async def unbury(self, pk: PubKey) -> None:
        """Forget the tombstone of ``pk`` (none: nothing happens)."""
        if self._graves is not None:
            self._graves.pop(pk, None)

    @abc.abstractmethod
    async def count(self) -> tuple[int, int]:
        """``(servers, clients)`` among live entries."""

    @abc.abstractmethod
    async def purge(self) -> None:
        """Drop expired entries and index members whose entry is gone (periodic housekeeping)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class StoreKind(enum.StrEnum):
    """The backends :func:`open_store` opens (the command line's ``--store`` choices)."""

    sqlite = "sqlite"
    memory = "memory"
    redis = "redis"


async def open_store(
    kind: StoreKind | str,
    *,
    db: str = "./dmsg-discovery.db",
    redis_url: str = "redis://localhost:6379",
    redis_password: str | None = None,
    namespace: str = "",
    clock: Clock = time.time_ns,
) -> DiscStore:
    """Open a store by name: ``memory``, ``sqlite`` (file ``db`` or ``":memory:"``) or ``redis``."""
    if kind == StoreKind.memory:
        from skywire.services.dmsgdisc.store.memory import MemoryStore

        return MemoryStore(clock=clock)
    if kind == StoreKind.sqlite:
        from skywire.services.dmsgdisc.store.sqlite import SqliteStore

        return await SqliteStore.open(db, clock=clock)
    if kind == StoreKind.redis:
        from skywire.services.dmsgdisc.store.redis import RedisStore

        return await RedisStore.open(redis_url, namespace=namespace, password=redis_password)
    raise ValueError(f"unknown store {kind!r} (memory, sqlite or redis)")
