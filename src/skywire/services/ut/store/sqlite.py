"""SQLite uptime tracker store (the embedded default): ``ut_visors`` (one row per visor) and
``ut_daily`` (seconds per visor and UTC day).

A heartbeat reads and writes both tables in one transaction, under a lock: the connection is
shared by every request (and by the httpauth nonce table), so two transactions must never be
open on it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiosqlite

from skywire.cipher import PubKey
from skywire.services.httpauth import NonceStore, SqliteNonceStore
from skywire.services.ut.store import DEFAULT_DB, UptimeStore, stored_pk
from skywire.services.ut.uptime import Credit, VisorRecord, credits, day_start

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ut_visors (
    pk         TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ut_daily (
    pk      TEXT NOT NULL,
    day     TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (pk, day)
);
CREATE INDEX IF NOT EXISTS ut_daily_day ON ut_daily (day);
"""

_MAX_PARAMS = 900
"""Keys per ``IN (…)`` (SQLite's default limit of bound parameters is 999)."""


def _chunks(pks: Sequence[PubKey]) -> list[list[str]]:
    keys = [pk.hex() for pk in pks]
    return [keys[i : i + _MAX_PARAMS] for i in range(0, len(keys), _MAX_PARAMS)]


class SqliteStore(UptimeStore):
    """Uptimes in an SQLite database (a file, or ``":memory:"``). Open with :meth:`open`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._db = conn
        self._lock = asyncio.Lock()
        self._nonces = SqliteNonceStore(conn, namespace="ut")

    @classmethod
    async def open(cls, path: str = DEFAULT_DB) -> SqliteStore:
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
            await conn.executescript(_SCHEMA)
            await SqliteNonceStore.create_schema(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def heartbeat(
        self, pk: PubKey, version: str, now: float, tolerance: float
    ) -> list[Credit]:
        key = pk.hex()
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                async with self._db.execute(
                    "SELECT last_seen FROM ut_visors WHERE pk = ?", (key,)
                ) as cur:
                    row = await cur.fetchone()
                got = credits(None if row is None else float(row[0]), now, tolerance)
                await self._db.execute(
                    "INSERT INTO ut_visors (pk, version, first_seen, last_seen) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (pk) DO UPDATE SET "
                    "version = excluded.version, last_seen = excluded.last_seen",
                    (key, version, now, now),
                )
                for c in got:
                    await self._db.execute(
                        "INSERT INTO ut_daily (pk, day, seconds) VALUES (?, ?, ?) "
                        "ON CONFLICT (pk, day) DO UPDATE SET seconds = seconds + excluded.seconds",
                        (key, c.day, c.seconds),
                    )
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")
        return got

    async def visors(self, pks: Sequence[PubKey] | None = None) -> list[VisorRecord]:
        sql = "SELECT pk, version, first_seen, last_seen FROM ut_visors"
        rows: list[aiosqlite.Row] = []
        if pks is None:
            async with self._db.execute(sql) as cur:
                rows.extend(await cur.fetchall())
        else:
            for keys in _chunks(pks):
                marks = ",".join("?" * len(keys))
                async with self._db.execute(f"{sql} WHERE pk IN ({marks})", keys) as cur:
                    rows.extend(await cur.fetchall())
        records = [
            VisorRecord(stored_pk(str(k)), str(v), float(first), float(last))
            for k, v, first, last in rows
        ]
        return sorted(records, key=lambda r: r.pk.raw)

    async def daily(
        self, pks: Sequence[PubKey] | None, since: str
    ) -> dict[PubKey, dict[str, float]]:
        sql = "SELECT pk, day, seconds FROM ut_daily WHERE day >= ?"
        rows: list[aiosqlite.Row] = []
        if pks is None:
            async with self._db.execute(sql, (since,)) as cur:
                rows.extend(await cur.fetchall())
        else:
            for keys in _chunks(pks):
                marks = ",".join("?" * len(keys))
                async with self._db.execute(f"{sql} AND pk IN ({marks})", (since, *keys)) as cur:
                    rows.extend(await cur.fetchall())
        out: dict[PubKey, dict[str, float]] = {}
        for pk, day, seconds in rows:
            out.setdefault(stored_pk(str(pk)), {})[str(day)] = float(seconds)
        return out

    async def purge_before(self, day: str) -> int:
        async with self._lock:
            async with self._db.execute("DELETE FROM ut_daily WHERE day < ?", (day,)) as cur:
                dropped = max(cur.rowcount, 0)
            cutoff = day_start(day)
            async with self._db.execute(
                "DELETE FROM ut_daily WHERE pk IN (SELECT pk FROM ut_visors WHERE last_seen < ?)",
                (cutoff,),
            ) as cur:
                dropped += max(cur.rowcount, 0)
            async with self._db.execute(
                "DELETE FROM ut_visors WHERE last_seen < ?", (cutoff,)
            ) as cur:
                dropped += max(cur.rowcount, 0)
        return dropped

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        await self._db.close()
