"""SQLite service discovery store (the embedded default): one table, one row per (type, key).

The entry is kept as its JSON next to the columns the listing filters on (version, country) and
its expiry time. Every write is a single statement, so sharing the connection with the httpauth
nonce table needs no transactions.
"""

from __future__ import annotations

import time

import aiosqlite

from skywire.cipher import PubKey
from skywire.services.httpauth import NonceStore, SqliteNonceStore
from skywire.services.sd.entry import ServiceEntry, ServiceType
from skywire.services.sd.store import (
    DEFAULT_DB,
    DEFAULT_TTL,
    Clock,
    ServiceNotFoundError,
    ServiceStore,
    check_ttl,
    decode_stored,
)

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sd_services (
    type       TEXT NOT NULL,
    pk         TEXT NOT NULL,
    port       INTEGER NOT NULL,
    version    TEXT NOT NULL,
    country    TEXT NOT NULL,
    entry      TEXT NOT NULL,
    registered REAL NOT NULL,
    expires    REAL,
    PRIMARY KEY (type, pk)
);
CREATE INDEX IF NOT EXISTS sd_services_expires ON sd_services (expires);
"""

_LIVE = "(expires IS NULL OR expires > ?)"


class SqliteStore(ServiceStore):
    """Services in an SQLite database (a file, or ``":memory:"``). Open with :meth:`open`."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        ttl: float | None = DEFAULT_TTL,
        clock: Clock = time.time,
    ) -> None:
        self._db = conn
        self.ttl = check_ttl(ttl)
        self._clock = clock
        self._nonces = SqliteNonceStore(conn, namespace="sd")

    @classmethod
    async def open(
        cls, path: str = DEFAULT_DB, *, ttl: float | None = DEFAULT_TTL, clock: Clock = time.time
    ) -> SqliteStore:
        check_ttl(ttl)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
            await conn.executescript(_SCHEMA)
            await SqliteNonceStore.create_schema(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, ttl=ttl, clock=clock)

    async def register(self, entry: ServiceEntry) -> None:
        now = self._clock()
        expires = None if self.ttl is None else now + self.ttl
        country = entry.geo.country if entry.geo is not None else ""
        await self._db.execute(
            "INSERT INTO sd_services (type, pk, port, version, country, entry, registered, "
            "expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (type, pk) DO UPDATE SET "
            "port = excluded.port, version = excluded.version, country = excluded.country, "
            "entry = excluded.entry, registered = excluded.registered, expires = excluded.expires",
            (
                entry.type.value,
                entry.pk.hex(),
                entry.addr.port,
                entry.version,
                country,
                entry.to_json().decode(),
                now,
                expires,
            ),
        )

    async def get(self, service_type: ServiceType, pk: PubKey) -> ServiceEntry:
        async with self._db.execute(
            f"SELECT entry FROM sd_services WHERE type = ? AND pk = ? AND {_LIVE}",
            (service_type.value, pk.hex(), self._clock()),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            raise ServiceNotFoundError()
        return decode_stored(str(row[0]), f"{service_type}:{pk}")

    async def services(
        self, service_type: ServiceType, *, version: str = "", country: str = ""
    ) -> list[ServiceEntry]:
        sql = f"SELECT pk, entry FROM sd_services WHERE type = ? AND {_LIVE}"
        params: list[object] = [service_type.value, self._clock()]
        if version:
            sql += " AND version = ?"
            params.append(version)
        if country:
            sql += " AND country = ?"
            params.append(country)
        async with self._db.execute(sql + " ORDER BY pk", params) as cur:
            rows = await cur.fetchall()
        return [decode_stored(str(entry), f"{service_type}:{pk}") for pk, entry in rows]

    async def delete(self, service_type: ServiceType, pk: PubKey) -> bool:
        async with self._db.execute(
            f"DELETE FROM sd_services WHERE type = ? AND pk = ? RETURNING {_LIVE}",
            (service_type.value, pk.hex(), self._clock()),
        ) as cur:
            row = await cur.fetchone()
        return row is not None and bool(row[0])

    async def count_by_type(self) -> dict[str, int]:
        async with self._db.execute(
            f"SELECT type, COUNT(*) FROM sd_services WHERE {_LIVE} GROUP BY type ORDER BY type",
            (self._clock(),),
        ) as cur:
            rows = await cur.fetchall()
        return {str(t): int(n) for t, n in rows}

    async def purge_expired(self) -> int:
        async with self._db.execute(
            "DELETE FROM sd_services WHERE expires IS NOT NULL AND expires <= ?",
            (self._clock(),),
        ) as cur:
            return max(cur.rowcount, 0)

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        await self._db.close()
