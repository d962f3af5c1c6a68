"""Storage for the uptime tracker: one interface, three backends.

* :class:`~skywire.services.ut.store.memory.MemoryStore`: dicts, for tests.
* :class:`~skywire.services.ut.store.sqlite.SqliteStore`: aiosqlite, the embedded default.
* :class:`~skywire.services.ut.store.postgres.PostgresStore`: PostgreSQL (asyncpg), the
  production engine.

A store keeps, per visor, a :class:`~skywire.services.ut.uptime.VisorRecord` (version, first
and last heartbeat) and the seconds credited to each UTC day. :meth:`UptimeStore.heartbeat`
reads the previous heartbeat, credits the gap (:func:`~skywire.services.ut.uptime.credits`)
and records the new one as one atomic step, so two replicas over one PostgreSQL never credit
the same gap twice. Time is an argument (``now``); each store also hands out the httpauth
:class:`~skywire.services.httpauth.NonceStore` kept in the same database.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from skywire.cipher import CipherError, PubKey
from skywire.services.httpauth import NonceStore
from skywire.services.ut.errors import StoreError, VisorNotFoundError
from skywire.services.ut.uptime import Credit, VisorRecord, VisorUptime, summarize, window

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_PG_URL",
    "StoreError",
    "StoreKind",
    "UptimeStore",
    "VisorNotFoundError",
    "open_store",
    "stored_pk",
]

DEFAULT_DB = "./uptime-tracker.db"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def stored_pk(text: str) -> PubKey:
    """A key read back from a row; :class:`StoreError` if the row is corrupt."""
    try:
        return PubKey.from_hex(text)
    except CipherError as exc:
        raise StoreError(f"stored visor key {text[:80]!r} is corrupt: {exc}") from exc


class UptimeStore(abc.ABC):
    """Uptime tracker storage. Every method is safe to call concurrently; listings are ordered
    by key (hex)."""

    @abc.abstractmethod
    async def heartbeat(
        self, pk: PubKey, version: str, now: float, tolerance: float
    ) -> list[Credit]:
        """Record a heartbeat of ``pk`` at ``now`` (reporting ``version``) and credit the gap
        since its previous one; returns what was credited."""

    @abc.abstractmethod
    async def visors(self, pks: Sequence[PubKey] | None = None) -> list[VisorRecord]:
        """The records of ``pks`` that exist (every visor when None)."""

    @abc.abstractmethod
    async def daily(
        self, pks: Sequence[PubKey] | None, since: str
    ) -> dict[PubKey, dict[str, float]]:
        """Seconds credited per day from UTC day ``since`` on, per key (of ``pks``, or all);
        keys and days without any are left out."""

    @abc.abstractmethod
    async def purge_before(self, day: str) -> int:
        """Drop the days before ``day`` and the visors not heard from since it began; how many
        rows were dropped."""

    @abc.abstractmethod
    def nonce_store(self) -> NonceStore:
        """The httpauth nonces kept alongside (closed with this store)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""

    async def uptimes(
        self, pks: Sequence[PubKey] | None, now: float, days: int, tolerance: float
    ) -> list[VisorUptime]:
        """The uptime of ``pks`` (those the tracker knows; all when None) over the ``days``
        days ending today."""
        records = await self.visors(pks)
        if not records:
            return []
        seconds = await self.daily([r.pk for r in records], window(now, days)[0])
        return [summarize(r, seconds.get(r.pk, {}), now, days, tolerance) for r in records]

    async def uptime(self, pk: PubKey, now: float, days: int, tolerance: float) -> VisorUptime:
        """One visor's uptime; :class:`VisorNotFoundError` if it never sent a heartbeat."""
        found = await self.uptimes([pk], now, days, tolerance)
        if not found:
            raise VisorNotFoundError()
        return found[0]

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
    postgres = "postgres"


async def open_store(
    kind: StoreKind | str,
    *,
    db: str = DEFAULT_DB,
    pg_url: str = DEFAULT_PG_URL,
    pg_schema: str | None = None,
) -> UptimeStore:
    """Open a store by name: ``memory``, ``sqlite`` (file ``db`` or ``":memory:"``) or
    ``postgres`` (``pg_url``, tables in ``pg_schema`` when given)."""
    if kind == StoreKind.memory:
        from skywire.services.ut.store.memory import MemoryStore

        return MemoryStore()
    if kind == StoreKind.sqlite:
        from skywire.services.ut.store.sqlite import SqliteStore

        return await SqliteStore.open(db)
    if kind == StoreKind.postgres:
        from skywire.services.ut.store.postgres import PostgresStore

        return await PostgresStore.open(pg_url, schema=pg_schema)
    raise ValueError(f"unknown store {kind!r} (memory, sqlite or postgres)")
