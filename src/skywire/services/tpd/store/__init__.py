"""Storage for transport discovery: one interface, three backends.

* :class:`~skywire.services.tpd.store.memory.MemoryStore`: dicts, for tests.
* :class:`~skywire.services.tpd.store.sqlite.SqliteStore`: aiosqlite, the default.
* :class:`~skywire.services.tpd.store.postgres.PostgresStore`: PostgreSQL (asyncpg), the
  production engine.

A store keeps each registered :class:`~skywire.transport.entry.SignedEntry` (both signatures and
the registration time) and, per transport, the latest latency an edge reported. Reads by ID or by
edge overlay that latency on the entry; the bulk listing does not. Each store also hands out the
httpauth :class:`~skywire.services.httpauth.NonceStore` kept in the same database.
"""

from __future__ import annotations

import abc
import enum
import time
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from skywire.cipher import PubKey
from skywire.services.httpauth import NonceStore
from skywire.transport.entry import Entry, SignedEntry

__all__ = [
    "AlreadyRegisteredError",
    "Clock",
    "StoreError",
    "StoreKind",
    "TransportNotFoundError",
    "TransportStore",
    "open_store",
]

Clock = Callable[[], float]
"""Unix seconds (``time.time``)."""


class StoreError(Exception):
    """A store refusal; ``status`` is the HTTP status the API answers with."""

    status = 500


class TransportNotFoundError(StoreError):
    status = 404

    def __init__(self, message: str = "transport not found") -> None:
        super().__init__(message)


class AlreadyRegisteredError(StoreError):
    status = 409

    def __init__(self, message: str = "ID already registered") -> None:
        super().__init__(message)


class TransportStore(abc.ABC):
    """Transport discovery storage. Every method is safe to call concurrently.

    Listings are ordered by transport ID. ``register`` is all-or-nothing.
    """

    @abc.abstractmethod
    async def register(self, entries: Sequence[SignedEntry]) -> None:
        """Store ``entries`` (already validated), stamped with the registration time.

        Raises :class:`AlreadyRegisteredError`, storing none of them, when any ID is already
        registered or appears twice.
        """

    @abc.abstractmethod
    async def deregister(self, tp_id: uuid.UUID) -> None:
        """Remove a transport and its latency; :class:`TransportNotFoundError` when absent."""

    @abc.abstractmethod
    async def get_signed(self, tp_id: uuid.UUID) -> SignedEntry:
        """The signed entry as registered (``registered`` set, no latency)."""

    @abc.abstractmethod
    async def get_by_id(self, tp_id: uuid.UUID) -> Entry:
        """The entry with its latest latency overlaid; :class:`TransportNotFoundError`."""

    @abc.abstractmethod
    async def get_by_edge(self, pk: PubKey) -> list[Entry]:
        """Every transport touching ``pk``, latency overlaid (empty list when none)."""

    @abc.abstractmethod
    async def all_transports(self, *, with_latency: bool = False) -> list[Entry]:
        """Every transport (latency overlaid only when asked)."""

    @abc.abstractmethod
    async def set_latency(self, tp_id: uuid.UUID, latency_ms: float, reporter: PubKey) -> None:
        """Record the latest measured latency of a transport; :class:`TransportNotFoundError`."""

    @abc.abstractmethod
    async def count_by_type(self) -> dict[str, int]:
        """Number of transports per type."""

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


def check_unique_ids(entries: Sequence[SignedEntry]) -> None:
    """Raise :class:`AlreadyRegisteredError` if two entries share an ID."""
    ids = [se.entry.id for se in entries]
    if len(set(ids)) != len(ids):
        raise AlreadyRegisteredError("ID registered twice in one request")


class StoreKind(enum.StrEnum):
    """The backends :func:`open_store` opens (the command line's ``--store`` choices)."""

    sqlite = "sqlite"
    memory = "memory"
    postgres = "postgres"


async def open_store(
    kind: StoreKind | str,
    *,
    db: str = "./transport-discovery.db",
    pg_url: str = "postgresql://postgres@127.0.0.1:5432/postgres",
    pg_schema: str | None = None,
    clock: Clock = time.time,
) -> TransportStore:
    """Open a store by name: ``memory``, ``sqlite`` (file ``db`` or ``":memory:"``) or
    ``postgres`` (``pg_url``, tables in ``pg_schema`` when given)."""
    if kind == StoreKind.memory:
        from skywire.services.tpd.store.memory import MemoryStore

        return MemoryStore(clock=clock)
    if kind == StoreKind.sqlite:
        from skywire.services.tpd.store.sqlite import SqliteStore

        return await SqliteStore.open(db, clock=clock)
    if kind == StoreKind.postgres:
        from skywire.services.tpd.store.postgres import PostgresStore

        return await PostgresStore.open(pg_url, schema=pg_schema, clock=clock)
    raise ValueError(f"unknown store {kind!r} (memory, sqlite or postgres)")
