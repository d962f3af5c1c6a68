"""SQLite discovery store (the default): one table, expiry as a column.

Every read filters on ``expires_at``; :meth:`SqliteStore.purge` deletes what has expired. The
entry is stored as its exact JSON next to the few columns the listings query on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import aiosqlite

from skywire.cipher import PubKey
from skywire.dmsg.disc_entry import (
    Clock,
    DiscError,
    Entry,
    KeyNotFoundError,
    UnexpectedError,
    parse_entry,
)
from skywire.services.dmsgdisc.store import DiscStore, entry_ttl, pick_available

__all__ = ["SqliteStore"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dmsg_disc_entries (
    pk                 TEXT PRIMARY KEY,
    body               TEXT NOT NULL,
    is_client          INTEGER NOT NULL,
    is_visor           INTEGER NOT NULL,
    is_server          INTEGER NOT NULL,
    available_sessions INTEGER NOT NULL,
    expires_at         INTEGER
);
CREATE INDEX IF NOT EXISTS dmsg_disc_entries_expiry
    ON dmsg_disc_entries (expires_at) WHERE expires_at IS NOT NULL;
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"


class SqliteStore(DiscStore):
    """Entries in an SQLite database (a file, or ``":memory:"``). Open with :meth:`open`."""

    def __init__(self, conn: aiosqlite.Connection, *, clock: Clock = time.time_ns) -> None:
        self._db = conn
        self._clock = clock

    @classmethod
    async def open(
        cls, path: str = "./dmsg-discovery.db", *, clock: Clock = time.time_ns
    ) -> SqliteStore:
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
            await conn.executescript(_SCHEMA)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, clock=clock)

    async def get(self, pk: PubKey) -> Entry:
        async with self._db.execute(
            f"SELECT body FROM dmsg_disc_entries WHERE pk = ? AND {_LIVE}",
            (pk.hex(), self._clock()),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            raise KeyNotFoundError()
        try:
            return parse_entry(row[0])
        except DiscError as exc:
            log.warning("stored entry of %s does not parse: %s", pk, exc)
            raise UnexpectedError(f"stored entry of {pk} is corrupt") from exc

    async def set(self, entry: Entry, *, timeout: bool = False) -> None:
        ttl = entry_ttl(entry, timeout)
        expires = None if ttl is None else self._clock() + int(ttl * 1_000_000_000)
        srv = entry.server
        await self._db.execute(
            "INSERT OR REPLACE INTO dmsg_disc_entries "
            "(pk, body, is_client, is_visor, is_server, available_sessions, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.static.hex(),
                entry.to_json().decode(),
                int(entry.client is not None),
                int(entry.is_visor),
                int(srv is not None),
                srv.available_sessions if srv is not None else 0,
                expires,
            ),
        )

    async def delete(self, pk: PubKey) -> None:
        await self._db.execute("DELETE FROM dmsg_disc_entries WHERE pk = ?", (pk.hex(),))

    async def _pks(self, where: str) -> list[PubKey]:
        async with self._db.execute(
            f"SELECT pk FROM dmsg_disc_entries WHERE {where} AND {_LIVE} ORDER BY pk",
            (self._clock(),),
        ) as cur:
            rows = await cur.fetchall()
        return [PubKey.from_hex(r[0]) for r in rows]

    async def client_pks(self) -> list[PubKey]:
        return await self._pks("is_client = 1")

    async def visor_client_pks(self) -> list[PubKey]:
        return await self._pks("is_visor = 1")

    async def _entries(self, where: str, args: Iterable[object] = ()) -> list[Entry]:
        async with self._db.execute(
            f"SELECT pk, body FROM dmsg_disc_entries WHERE {where} AND {_LIVE} ORDER BY pk",
            (*args, self._clock()),
        ) as cur:
            rows = await cur.fetchall()
        out: list[Entry] = []
        for pk, body in rows:
            try:
                out.append(parse_entry(body))
            except DiscError as exc:
                log.warning("skipping stored entry of %s: %s", pk, exc)
        return out

    async def all_servers(self) -> list[Entry]:
        return await self._entries("is_server = 1")

    async def available_servers(self, limit: int = 512) -> list[Entry]:
        usable = await self._entries("is_server = 1 AND available_sessions > 0")
        return pick_available(usable, limit)

    async def count(self) -> tuple[int, int]:
        async with self._db.execute(
            "SELECT COALESCE(SUM(is_server), 0), COALESCE(SUM(is_client), 0) "
            f"FROM dmsg_disc_entries WHERE {_LIVE}",
            (self._clock(),),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    async def purge(self) -> None:
        await self._db.execute(
            "DELETE FROM dmsg_disc_entries WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (self._clock(),),
        )

    async def close(self) -> None:
        await self._db.close()
