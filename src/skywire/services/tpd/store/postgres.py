"""PostgreSQL transport discovery store (asyncpg), the production engine.

Tables (in ``schema`` when given): ``tpd_transports`` (one row per transport, latency as columns),
its change log ``tpd_changes`` (kept by a trigger, :mod:`.pgchanges`) and the httpauth
``httpauth_nonces``. A registration batch is inserted in one transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from skywire.cipher import CipherError, PubKey, Sig
from skywire.services.httpauth import NonceStore, PostgresNonceStore, pg_qualified
from skywire.services.tpd.store import (
    AlreadyRegisteredError,
    Clock,
    StoreError,
    TransportNotFoundError,
    TransportStore,
    check_unique_ids,
)
from skywire.services.tpd.store.pgchanges import create_change_log
from skywire.transport.entry import Entry, SignedEntry

__all__ = ["PostgresStore"]

_COLUMNS = "t_id, edge_a, edge_b, type, label, sig_a, sig_b, registered"
_ENTRY_COLUMNS = "t_id, edge_a, edge_b, type, label, latency_ms"


def _pubkey(text: str, keys: dict[str, PubKey] | None) -> PubKey:
    if keys is None:
        return PubKey.from_hex(text)
    pk = keys.get(text)
    if pk is None:
        pk = keys[text] = PubKey.from_hex(text)
    return pk


def _row_to_entry(
    row: Any, *, with_latency: bool = True, keys: dict[str, PubKey] | None = None
) -> Entry:
    """``keys`` caches parsed keys across the rows of one listing (checking a key is on the
    curve costs ~10 µs, and a visor is on several transports)."""
    try:
        latency = row["latency_ms"] if with_latency else None
        return Entry(
            row["t_id"],
            (_pubkey(row["edge_a"], keys), _pubkey(row["edge_b"], keys)),
            row["type"],
            row["label"],
            None if latency is None else float(latency),
        )
    except (ValueError, CipherError) as exc:
        raise StoreError(f"stored transport {row['t_id']} is corrupt: {exc}") from exc


class PostgresStore(TransportStore):
    """Transports in PostgreSQL. Open with :meth:`open` (owns its pool) or build over a pool
    after :meth:`create_schema` (then the caller closes the pool)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str | None = None,
        clock: Clock = time.time,
        owns_pool: bool = False,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._table = pg_qualified(schema, "tpd_transports")
        self._clock = clock
        self._owns = owns_pool
        self._nonces = PostgresNonceStore(pool, schema=schema, namespace="tpd")

    @staticmethod
    async def create_schema(pool: asyncpg.Pool, schema: str | None = None) -> None:
        table = pg_qualified(schema, "tpd_transports")
        index_prefix = f"{schema}_" if schema else ""
        async with pool.acquire() as conn, conn.transaction():
            # Serialise concurrent first starts: CREATE … IF NOT EXISTS can still race.
            await conn.execute("SELECT pg_advisory_xact_lock(727370)")
            await conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {table} (
                    t_id             UUID PRIMARY KEY,
                    edge_a           TEXT NOT NULL,
                    edge_b           TEXT NOT NULL,
                    type             TEXT NOT NULL,
                    label            TEXT NOT NULL,
                    sig_a            TEXT NOT NULL,
                    sig_b            TEXT NOT NULL,
                    registered       BIGINT NOT NULL,
                    latency_ms       DOUBLE PRECISION,
                    latency_reporter TEXT,
                    latency_at       DOUBLE PRECISION
                )
                """
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index_prefix}tpd_transports_edge_a "
                f"ON {table} (edge_a)"
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index_prefix}tpd_transports_edge_b "
                f"ON {table} (edge_b)"
            )
            await create_change_log(conn, schema)
        await PostgresNonceStore.create_schema(pool, schema)

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, clock: Clock = time.time
    ) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
        try:
            await cls.create_schema(pool, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema=schema, clock=clock, owns_pool=True)

    async def register(self, entries: Sequence[SignedEntry]) -> None:
        check_unique_ids(entries)
        if not entries:
            return
        now = int(self._clock())
        rows = [
            (
                se.entry.id,
                se.entry.edges[0].hex(),
                se.entry.edges[1].hex(),
                se.entry.type,
                se.entry.label,
                se.signatures[0].hex(),
                se.signatures[1].hex(),
                now,
            )
            for se in entries
        ]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    f"INSERT INTO {self._table} ({_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    rows,
                )
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyRegisteredError() from exc

    async def deregister(self, tp_id: uuid.UUID) -> None:
        status = await self._pool.execute(f"DELETE FROM {self._table} WHERE t_id = $1", tp_id)
        if status.endswith(" 0"):
            raise TransportNotFoundError()

    async def get_signed(self, tp_id: uuid.UUID) -> SignedEntry:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE t_id = $1", tp_id
        )
        if row is None:
            raise TransportNotFoundError()
        entry = _row_to_entry(row, with_latency=False)
        try:
            sigs = (Sig.from_hex(row["sig_a"]), Sig.from_hex(row["sig_b"]))
        except CipherError as exc:
            raise StoreError(f"stored transport {tp_id} is corrupt: {exc}") from exc
        return SignedEntry(entry, sigs, int(row["registered"]))

    async def get_by_id(self, tp_id: uuid.UUID) -> Entry:
        row = await self._pool.fetchrow(
            f"SELECT {_ENTRY_COLUMNS} FROM {self._table} WHERE t_id = $1", tp_id
        )
        if row is None:
            raise TransportNotFoundError()
        return _row_to_entry(row)

    async def get_by_edge(self, pk: PubKey) -> list[Entry]:
        rows = await self._pool.fetch(
            f"SELECT {_ENTRY_COLUMNS} FROM {self._table} WHERE edge_a = $1 OR edge_b = $1 "
            "ORDER BY t_id",
            pk.hex(),
        )
        return [_row_to_entry(r) for r in rows]

    async def all_transports(self, *, with_latency: bool = False) -> list[Entry]:
        # ORDER BY t_id, not t_id::text: the same order (a UUID compares as its bytes, which
        # is its lower-case hex text's order) without casting and sorting 500k strings.
        rows = await self._pool.fetch(f"SELECT {_ENTRY_COLUMNS} FROM {self._table} ORDER BY t_id")
        keys: dict[str, PubKey] = {}
        return [_row_to_entry(r, with_latency=with_latency, keys=keys) for r in rows]

    async def set_latency(self, tp_id: uuid.UUID, latency_ms: float, reporter: PubKey) -> None:
        status = await self._pool.execute(
            f"UPDATE {self._table} SET latency_ms = $1, latency_reporter = $2, latency_at = $3 "
            "WHERE t_id = $4",
            float(latency_ms),
            reporter.hex(),
            float(self._clock()),
            tp_id,
        )
        if status.endswith(" 0"):
            raise TransportNotFoundError()

    async def count_by_type(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            f"SELECT type, COUNT(*) AS n FROM {self._table} GROUP BY type ORDER BY type"
        )
        return {str(r["type"]): int(r["n"]) for r in rows}

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        if self._owns:
            await self._pool.close()
