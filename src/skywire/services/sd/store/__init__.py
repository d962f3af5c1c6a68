"""Storage for the service discovery: one interface, three backends.

* :class:`~skywire.services.sd.store.memory.MemoryStore`: a dict, for tests.
* :class:`~skywire.services.sd.store.sqlite.SqliteStore`: aiosqlite, the embedded default.
* :class:`~skywire.services.sd.store.postgres.PostgresStore`: PostgreSQL (asyncpg), the
  production engine.

As upstream keys its entries (``service:<type>:<pk>``), a store holds at most one entry per
service type and key: registering again replaces the entry (a new port, version or location)
and restarts its time to live. An entry lives ``ttl`` seconds after its last registration
(upstream ``--entry-timeout``, 5 minutes, about three times the 90 s a visor waits between
registrations); ``ttl=None`` keeps it until deleted. Expiry is read from the injected clock:
an entry whose time is up is absent from every read at once, and :meth:`ServiceStore.purge_expired`
drops the rows. Each store also hands out the httpauth
:class:`~skywire.services.httpauth.NonceStore` kept in the same database.
"""

from __future__ import annotations

import abc
import enum
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from skywire.cipher import PubKey
from skywire.services.httpauth import NonceStore
from skywire.services.sd.entry import ServiceEntry, ServiceType, parse_entry
from skywire.services.sd.errors import EntryError, ServiceNotFoundError, StoreError

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_PG_URL",
    "DEFAULT_TTL",
    "Clock",
    "ServiceNotFoundError",
    "ServiceStore",
    "StoreError",
    "StoreKind",
    "check_ttl",
    "decode_stored",
    "open_store",
]

Clock = Callable[[], float]
"""Unix seconds (``time.time``)."""

DEFAULT_TTL = 300.0
"""Seconds an entry lives after its last registration (upstream ``--entry-timeout`` 5m)."""

DEFAULT_DB = "./service-discovery.db"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def check_ttl(ttl: float | None) -> float | None:
    """``ttl`` if it is None (never expire) or a finite number of seconds above zero."""
    if ttl is not None and (not math.isfinite(ttl) or ttl <= 0):
        raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
    return ttl


def decode_stored(text: str, where: str) -> ServiceEntry:
    """An entry read back from a database row; :class:`StoreError` if the row is corrupt."""
    try:
        return parse_entry(text)
    except EntryError as exc:
        raise StoreError(f"stored service {where} is corrupt: {exc}") from exc


class ServiceStore(abc.ABC):
    """Service discovery storage. Every method is safe to call concurrently.

    Listings are ordered by key (hex). Expired entries are never returned.
    """

    ttl: float | None

    @abc.abstractmethod
    async def register(self, entry: ServiceEntry) -> None:
        """Store ``entry`` (already validated), replacing the entry of the same type and key,
        alive until ``ttl`` seconds from now."""

    @abc.abstractmethod
    async def get(self, service_type: ServiceType, pk: PubKey) -> ServiceEntry:
        """The live entry of ``service_type`` for ``pk``; :class:`ServiceNotFoundError`."""

    @abc.abstractmethod
    async def services(
        self, service_type: ServiceType, *, version: str = "", country: str = ""
    ) -> list[ServiceEntry]:
        """Every live entry of ``service_type``, only those of ``version`` and of ``country``
        (upper case) when given."""

    @abc.abstractmethod
    async def delete(self, service_type: ServiceType, pk: PubKey) -> bool:
        """Remove the entry of ``service_type`` for ``pk``; whether there was a live one."""

    @abc.abstractmethod
    async def count_by_type(self) -> dict[str, int]:
        """Live entries per type (types without any are left out)."""

    @abc.abstractmethod
    async def purge_expired(self) -> int:
        """Drop the expired entries; how many were dropped."""

    @abc.abstractmethod
    def nonce_store(self) -> NonceStore:
        """The httpauth nonces kept alongside (closed with this store)."""

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
    postgres = "postgres"


async def open_store(
    kind: StoreKind | str,
    *,
    db: str = DEFAULT_DB,
    pg_url: str = DEFAULT_PG_URL,
    pg_schema: str | None = None,
    ttl: float | None = DEFAULT_TTL,
    clock: Clock = time.time,
) -> ServiceStore:
    """Open a store by name: ``memory``, ``sqlite`` (file ``db`` or ``":memory:"``) or
    ``postgres`` (``pg_url``, tables in ``pg_schema`` when given)."""
    check_ttl(ttl)
    if kind == StoreKind.memory:
        from skywire.services.sd.store.memory import MemoryStore

        return MemoryStore(ttl=ttl, clock=clock)
    if kind == StoreKind.sqlite:
        from skywire.services.sd.store.sqlite import SqliteStore

        return await SqliteStore.open(db, ttl=ttl, clock=clock)
    if kind == StoreKind.postgres:
        from skywire.services.sd.store.postgres import PostgresStore

        return await PostgresStore.open(pg_url, schema=pg_schema, ttl=ttl, clock=clock)
    raise ValueError(f"unknown store {kind!r} (memory, sqlite or postgres)")
