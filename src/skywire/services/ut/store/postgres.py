"""PostgreSQL uptime tracker store (asyncpg), the production engine.

Tables (in ``schema`` when given): ``ut_visors`` (one row per visor), ``ut_daily`` (seconds per
visor and UTC day) and the httpauth ``httpauth_nonces``. A heartbeat locks its visor's row
(``SELECT … FOR UPDATE``) for the transaction that credits the gap, so replicas sharing the
database never credit one gap twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]

from skywire.cipher import PubKey
from skywire.services.httpauth import NonceStore, PostgresNonceStore, pg_qualified
from skywire.services.ut.store import DEFAULT_PG_URL, UptimeStore, stored_pk
from skywire.services.ut.uptime import Credit, VisorRecord, credits, day_start

__all__ = ["PostgresStore"]

_SCHEMA_LOCK = 735371
"""The advisory lock serialising concurrent first starts (CREATE … IF NOT EXISTS can race)."""


class PostgresStore(UptimeStore):
    """Uptimes in PostgreSQL. Open with :meth:`open` (owns its pool) or build over a pool
    after :meth:`create_schema` (then the caller closes the pool)."""

    def __init__(
        self, pool: asyncpg.Pool, *, schema: str | None = None, owns_pool: bool = False
    ) -> None:
        self._pool = pool
        self._visors = pg_qualified(schema, "ut_visors")
        self._daily = pg_qualified(schema, "ut_daily")
        self._owns = owns_pool
        self._nonces = PostgresNonceStore(pool, schema=schema, namespace="ut")

    @staticmethod
    async def create_schema(pool: asyncpg.Pool, schema: str | None = None) -> None:
        visors = pg_qualified(schema, "ut_visors")
        daily = pg_qualified(schema, "ut_daily")
        index_prefix = f"{schema}_" if schema else ""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {visors} (
                    pk         TEXT PRIMARY KEY,
                    version    TEXT NOT NULL,
                    first_seen DOUBLE PRECISION NOT NULL,
                    last_seen  DOUBLE PRECISION
                )
                """
            )
            await conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {daily} (
                    pk      TEXT NOT NULL,
                    day     TEXT NOT NULL,
                    seconds DOUBLE PRECISION NOT NULL,
                    PRIMARY KEY (pk, day)
                )
                """
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index_prefix}ut_daily_day ON {daily} (day)"
            )
        await PostgresNonceStore.create_schema(pool, schema)

    @classmethod
    async def open(cls, url: str = DEFAULT_PG_URL, *, schema: str | None = None) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
        try:
            await cls.create_schema(pool, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema=schema, owns_pool=True)

    async def heartbeat(
        self, pk: PubKey, version: str, now: float, tolerance: float
    ) -> list[Credit]:
        key = pk.hex()
        now = float(now)
        async with self._pool.acquire() as conn, conn.transaction():
            # a new visor's row first (last_seen NULL: no gap to credit), then lock it
            await conn.execute(
                f"INSERT INTO {self._visors} (pk, version, first_seen, last_seen) "
                "VALUES ($1, $2, $3, NULL) ON CONFLICT (pk) DO NOTHING",
                key,
                version,
                now,
            )
            last = await conn.fetchval(
                f"SELECT last_seen FROM {self._visors} WHERE pk = $1 FOR UPDATE", key
            )
            got = credits(None if last is None else float(last), now, tolerance)
            await conn.execute(
                f"UPDATE {self._visors} SET version = $2, last_seen = $3 WHERE pk = $1",
                key,
                version,
                now,
            )
            for c in got:
                await conn.execute(
                    f"INSERT INTO {self._daily} AS d (pk, day, seconds) VALUES ($1, $2, $3) "
                    "ON CONFLICT (pk, day) DO UPDATE SET seconds = d.seconds + EXCLUDED.seconds",
                    key,
                    c.day,
                    c.seconds,
                )
        return got

    async def visors(self, pks: Sequence[PubKey] | None = None) -> list[VisorRecord]:
        sql = (
            f"SELECT pk, version, first_seen, last_seen FROM {self._visors} "
            "WHERE last_seen IS NOT NULL"
        )
        if pks is None:
            rows = await self._pool.fetch(sql)
        else:
            rows = await self._pool.fetch(sql + " AND pk = ANY($1::text[])", [k.hex() for k in pks])
        records = [
            VisorRecord(
                stored_pk(str(r["pk"])),
                str(r["version"]),
                float(r["first_seen"]),
                float(r["last_seen"]),
            )
            for r in rows
        ]
        return sorted(records, key=lambda r: r.pk.raw)

    async def daily(
        self, pks: Sequence[PubKey] | None, since: str
    ) -> dict[PubKey, dict[str, float]]:
        sql = f"SELECT pk, day, seconds FROM {self._daily} WHERE day >= $1"
        if pks is None:
            rows = await self._pool.fetch(sql, since)
        else:
            rows = await self._pool.fetch(
                sql + " AND pk = ANY($2::text[])", since, [k.hex() for k in pks]
            )
        out: dict[PubKey, dict[str, float]] = {}
        for r in rows:
            out.setdefault(stored_pk(str(r["pk"])), {})[str(r["day"])] = float(r["seconds"])
        return out

    async def purge_before(self, day: str) -> int:
        cutoff = day_start(day)
        async with self._pool.acquire() as conn, conn.transaction():
            dropped = _count(await conn.execute(f"DELETE FROM {self._daily} WHERE day < $1", day))
            dropped += _count(
                await conn.execute(
                    f"DELETE FROM {self._daily} WHERE pk IN "
                    f"(SELECT pk FROM {self._visors} WHERE last_seen < $1)",
                    cutoff,
                )
            )
            dropped += _count(
                await conn.execute(f"DELETE FROM {self._visors} WHERE last_seen < $1", cutoff)
            )
        return dropped

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        if self._owns:
            await self._pool.close()


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
