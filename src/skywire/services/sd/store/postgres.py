"""PostgreSQL service discovery store (asyncpg), the production engine.

Tables (in ``schema`` when given): ``sd_services`` (one row per type and key: the entry's JSON,
the columns the listing filters on, its expiry time) and the httpauth ``httpauth_nonces``.
"""

from __future__ import annotations

import time

import asyncpg  # type: ignore[import-untyped]

from skywire.cipher import PubKey
from skywire.services.httpauth import NonceStore, PostgresNonceStore, pg_qualified
from skywire.services.sd.entry import ServiceEntry, ServiceType
from skywire.services.sd.store import (
    DEFAULT_TTL,
    Clock,
    ServiceNotFoundError,
    ServiceStore,
    check_ttl,
    decode_stored,
)

__all__ = ["PostgresStore"]

_SCHEMA_LOCK = 735370
"""The advisory lock serialising concurrent first starts (CREATE … IF NOT EXISTS can race)."""


class PostgresStore(ServiceStore):
    """Services in PostgreSQL. Open with :meth:`open` (owns its pool) or build over a pool
    after :meth:`create_schema` (then the caller closes the pool)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str | None = None,
        ttl: float | None = DEFAULT_TTL,
        clock: Clock = time.time,
        owns_pool: bool = False,
    ) -> None:
        self._pool = pool
        self._table = pg_qualified(schema, "sd_services")
        self.ttl = check_ttl(ttl)
        self._clock = clock
        self._owns = owns_pool
        self._nonces = PostgresNonceStore(pool, schema=schema, namespace="sd")

    @staticmethod
    async def create_schema(pool: asyncpg.Pool, schema: str | None = None) -> None:
        table = pg_qualified(schema, "sd_services")
        index_prefix = f"{schema}_" if schema else ""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {table} (
                    type       TEXT NOT NULL,
                    pk         TEXT NOT NULL,
                    port       INTEGER NOT NULL,
                    version    TEXT NOT NULL,
                    country    TEXT NOT NULL,
                    entry      TEXT NOT NULL,
                    registered DOUBLE PRECISION NOT NULL,
                    expires    DOUBLE PRECISION,
                    PRIMARY KEY (type, pk)
                )
                """
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index_prefix}sd_services_expires ON {table} (expires)"
            )
        await PostgresNonceStore.create_schema(pool, schema)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str | None = None,
        ttl: float | None = DEFAULT_TTL,
        clock: Clock = time.time,
    ) -> PostgresStore:
        check_ttl(ttl)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
        try:
            await cls.create_schema(pool, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema=schema, ttl=ttl, clock=clock, owns_pool=True)

    async def register(self, entry: ServiceEntry) -> None:
        now = float(self._clock())
        expires = None if self.ttl is None else now + self.ttl
        country = entry.geo.country if entry.geo is not None else ""
        await self._pool.execute(
            f"INSERT INTO {self._table} (type, pk, port, version, country, entry, registered, "
            "expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (type, pk) DO UPDATE "
            "SET port = EXCLUDED.port, version = EXCLUDED.version, country = EXCLUDED.country, "
            "entry = EXCLUDED.entry, registered = EXCLUDED.registered, expires = EXCLUDED.expires",
            entry.type.value,
            entry.pk.hex(),
            entry.addr.port,
            entry.version,
            country,
            entry.to_json().decode(),
            now,
            expires,
        )

    async def get(self, service_type: ServiceType, pk: PubKey) -> ServiceEntry:
        row = await self._pool.fetchrow(
            f"SELECT entry FROM {self._table} WHERE type = $1 AND pk = $2 "
            "AND (expires IS NULL OR expires > $3)",
            service_type.value,
            pk.hex(),
            float(self._clock()),
        )
        if row is None:
            raise ServiceNotFoundError()
        return decode_stored(str(row["entry"]), f"{service_type}:{pk}")

    async def services(
        self, service_type: ServiceType, *, version: str = "", country: str = ""
    ) -> list[ServiceEntry]:
        sql = (
            f"SELECT pk, entry FROM {self._table} WHERE type = $1 "
            "AND (expires IS NULL OR expires > $2)"
        )
        params: list[object] = [service_type.value, float(self._clock())]
        if version:
            params.append(version)
            sql += f" AND version = ${len(params)}"
        if country:
            params.append(country)
            sql += f" AND country = ${len(params)}"
        rows = await self._pool.fetch(sql + ' ORDER BY pk COLLATE "C"', *params)
        return [decode_stored(str(r["entry"]), f"{service_type}:{r['pk']}") for r in rows]

    async def delete(self, service_type: ServiceType, pk: PubKey) -> bool:
        row = await self._pool.fetchrow(
            f"DELETE FROM {self._table} WHERE type = $1 AND pk = $2 "
            "RETURNING (expires IS NULL OR expires > $3) AS live",
            service_type.value,
            pk.hex(),
            float(self._clock()),
        )
        return row is not None and bool(row["live"])

    async def count_by_type(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            f"SELECT type, COUNT(*) AS n FROM {self._table} "
            "WHERE expires IS NULL OR expires > $1 GROUP BY type ORDER BY type",
            float(self._clock()),
        )
        return {str(r["type"]): int(r["n"]) for r in rows}

    async def purge_expired(self) -> int:
        status = await self._pool.execute(
            f"DELETE FROM {self._table} WHERE expires IS NOT NULL AND expires <= $1",
            float(self._clock()),
        )
        return int(status.rsplit(" ", 1)[-1])

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        if self._owns:
            await self._pool.close()
