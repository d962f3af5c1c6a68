"""The CXO store in SQLite (aiosqlite): one database file holds objects and the index.

Every mutating call runs in one ``BEGIN IMMEDIATE`` transaction, serialised by a lock, so a
refused call leaves the database as it was. u64 values (nonce, seq) are stored shifted into
SQLite's signed 64-bit range so that their order is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiosqlite

from skywire.cipher import PubKey, Sig
from skywire.cxo.store import (
    DEFAULT_MAX_HEADS,
    CXOStore,
    MissingObjectError,
    NoSuchFeedError,
    RootMeta,
    StoreError,
    check_links,
    check_meta,
    check_object,
)

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cxo_objects (
    key   BLOB PRIMARY KEY,
    rc    INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cxo_objects_dead ON cxo_objects (rc) WHERE rc = 0;
CREATE TABLE IF NOT EXISTS cxo_feeds (
    feed BLOB PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS cxo_heads (
    feed    BLOB NOT NULL REFERENCES cxo_feeds (feed) ON DELETE CASCADE,
    nonce   INTEGER NOT NULL,
    touched INTEGER NOT NULL,
    PRIMARY KEY (feed, nonce)
);
CREATE TABLE IF NOT EXISTS cxo_roots (
    feed  BLOB NOT NULL,
    nonce INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    prev  BLOB NOT NULL,
    sig   BLOB NOT NULL,
    time  INTEGER NOT NULL,
    full  INTEGER NOT NULL,
    PRIMARY KEY (feed, nonce, seq),
    FOREIGN KEY (feed, nonce) REFERENCES cxo_heads (feed, nonce) ON DELETE CASCADE
);
"""

_SHIFT = 1 << 63
_ROOT_COLS = "feed, nonce, seq, hash, prev, sig, time, full"


def _u(v: int) -> int:
    return v - _SHIFT


def _meta(row: Any) -> RootMeta:
    return RootMeta(
        PubKey(bytes(row[0])),
        row[1] + _SHIFT,
        row[2] + _SHIFT,
        bytes(row[3]),
        bytes(row[4]),
        Sig(bytes(row[5])),
        row[6],
        bool(row[7]),
    )


class SqliteStore(CXOStore):
    """Objects and index in an SQLite database (a file, or ``":memory:"``). Open with
    :meth:`open`; close with :meth:`close` (or use ``async with``)."""

    def __init__(self, conn: aiosqlite.Connection, *, max_heads: int = DEFAULT_MAX_HEADS) -> None:
        if max_heads < 1:
            raise ValueError("max_heads must be at least 1")
        self._db = conn
        self.max_heads = max_heads
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str = "./cxo.db", *, max_heads: int = DEFAULT_MAX_HEADS
    ) -> SqliteStore:
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.executescript(_SCHEMA)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, max_heads=max_heads)

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        async with self._db.execute(sql, args) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        async with self._db.execute(sql, args) as cur:
            return list(await cur.fetchall())

    # -- objects ---------------------------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        row = await self._one("SELECT value FROM cxo_objects WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def rc(self, key: bytes) -> int | None:
        row = await self._one("SELECT rc FROM cxo_objects WHERE key = ?", (key,))
        return None if row is None else int(row[0])

    async def put(self, key: bytes, value: bytes, inc: int = 1) -> int:
        check_object(key, value)
        if inc < 0:
            raise StoreError("put cannot decrement")
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO cxo_objects (key, rc, value) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET rc = rc + excluded.rc",
                (key, inc, value),
            )
            row = await self._one("SELECT rc FROM cxo_objects WHERE key = ?", (key,))
        return int(row[0])

    async def put_many(self, items: Iterable[tuple[bytes, bytes]], inc: int = 1) -> None:
        items = list(items)
        if inc < 0:
            raise StoreError("put cannot decrement")
        for key, value in items:
            check_object(key, value)
        async with self._tx() as db:
            await db.executemany(
                "INSERT INTO cxo_objects (key, rc, value) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET rc = rc + excluded.rc",
                [(k, inc, v) for k, v in items],
            )

    async def inc_many(self, keys: Iterable[bytes], delta: int) -> None:
        totals: dict[bytes, int] = {}
        for key in keys:
            totals[key] = totals.get(key, 0) + delta
        async with self._tx() as db:
            for key, d in totals.items():
                row = await self._one("SELECT rc FROM cxo_objects WHERE key = ?", (key,))
                if row is None:
                    raise MissingObjectError(f"object {key.hex()} is not stored")
                if row[0] + d < 0:
                    raise StoreError(f"count of {key.hex()} would go below 0")
                await db.execute("UPDATE cxo_objects SET rc = rc + ? WHERE key = ?", (d, key))

    async def sweep(self) -> int:
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM cxo_objects WHERE rc = 0")
            n = cur.rowcount
            await cur.close()
        return int(n)

    async def object_stats(self) -> tuple[int, int]:
        row = await self._one(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM cxo_objects", ()
        )
        return int(row[0]), int(row[1])

    # -- index -----------------------------------------------------------------------------

    async def add_feed(self, feed: PubKey) -> None:
        async with self._tx() as db:
            await db.execute("INSERT OR IGNORE INTO cxo_feeds (feed) VALUES (?)", (feed.raw,))

    async def del_feed(self, feed: PubKey) -> list[RootMeta]:
        async with self._tx() as db:
            rows = await self._all(
                f"SELECT {_ROOT_COLS} FROM cxo_roots WHERE feed = ? ORDER BY nonce, seq",
                (feed.raw,),
            )
            await db.execute("DELETE FROM cxo_roots WHERE feed = ?", (feed.raw,))
            await db.execute("DELETE FROM cxo_heads WHERE feed = ?", (feed.raw,))
            await db.execute("DELETE FROM cxo_feeds WHERE feed = ?", (feed.raw,))
        return [_meta(r) for r in rows]

    async def feeds(self) -> list[PubKey]:
        rows = await self._all("SELECT feed FROM cxo_feeds ORDER BY feed", ())
        return [PubKey(bytes(r[0])) for r in rows]

    async def has_feed(self, feed: PubKey) -> bool:
        return await self._one("SELECT 1 FROM cxo_feeds WHERE feed = ?", (feed.raw,)) is not None

    async def _need_feed(self, feed: PubKey) -> None:
        if not await self.has_feed(feed):
            raise NoSuchFeedError(f"feed {feed} is not in the index")

    async def heads(self, feed: PubKey) -> list[int]:
        await self._need_feed(feed)
        rows = await self._all(
            "SELECT nonce FROM cxo_heads WHERE feed = ? ORDER BY touched", (feed.raw,)
        )
        return [r[0] + _SHIFT for r in rows]

    async def _root(self, feed: PubKey, nonce: int, seq: int) -> RootMeta | None:
        if not 0 <= seq < 1 << 64:
            return None
        row = await self._one(
            f"SELECT {_ROOT_COLS} FROM cxo_roots WHERE feed = ? AND nonce = ? AND seq = ?",
            (feed.raw, _u(nonce), _u(seq)),
        )
        return None if row is None else _meta(row)

    async def add_root(self, meta: RootMeta) -> list[RootMeta]:
        check_meta(meta)
        f, n = meta.feed.raw, _u(meta.nonce)
        async with self._tx() as db:
            await self._need_feed(meta.feed)
            same = await self._root(meta.feed, meta.nonce, meta.seq)
            below = await self._root(meta.feed, meta.nonce, meta.seq - 1)
            above = await self._root(meta.feed, meta.nonce, meta.seq + 1)
            if not check_links(meta, same, below, above):
                return []
            row = await self._one("SELECT MAX(touched) FROM cxo_heads", ())
            touched = (row[0] or 0) + 1
            exists = await self._one("SELECT 1 FROM cxo_heads WHERE feed = ? AND nonce = ?", (f, n))
            evicted: list[RootMeta] = []
            if exists is None:
                count = await self._one("SELECT COUNT(*) FROM cxo_heads WHERE feed = ?", (f,))
                if count[0] >= self.max_heads:
                    oldest = await self._one(
                        "SELECT nonce FROM cxo_heads WHERE feed = ? ORDER BY touched LIMIT 1",
                        (f,),
                    )
                    rows = await self._all(
                        f"SELECT {_ROOT_COLS} FROM cxo_roots WHERE feed = ? AND nonce = ? "
                        "ORDER BY seq",
                        (f, oldest[0]),
                    )
                    evicted = [_meta(r) for r in rows]
                    await db.execute(
                        "DELETE FROM cxo_roots WHERE feed = ? AND nonce = ?", (f, oldest[0])
                    )
                    await db.execute(
                        "DELETE FROM cxo_heads WHERE feed = ? AND nonce = ?", (f, oldest[0])
                    )
                await db.execute(
                    "INSERT INTO cxo_heads (feed, nonce, touched) VALUES (?, ?, ?)",
                    (f, n, touched),
                )
            else:
                await db.execute(
                    "UPDATE cxo_heads SET touched = ? WHERE feed = ? AND nonce = ?",
                    (touched, f, n),
                )
            await db.execute(
                f"INSERT INTO cxo_roots ({_ROOT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f,
                    n,
                    _u(meta.seq),
                    meta.hash,
                    meta.prev,
                    meta.sig.raw,
                    meta.time,
                    int(meta.full),
                ),
            )
        return evicted

    async def get_root(self, feed: PubKey, nonce: int, seq: int) -> RootMeta | None:
        await self._need_feed(feed)
        return await self._root(feed, nonce, seq)

    async def roots(self, feed: PubKey, nonce: int) -> list[RootMeta]:
        await self._need_feed(feed)
        rows = await self._all(
            f"SELECT {_ROOT_COLS} FROM cxo_roots WHERE feed = ? AND nonce = ? ORDER BY seq",
            (feed.raw, _u(nonce)),
        )
        return [_meta(r) for r in rows]

    async def active_root(self, feed: PubKey) -> RootMeta | None:
        await self._need_feed(feed)
        row = await self._one(
            f"SELECT {', '.join('r.' + c for c in _ROOT_COLS.split(', '))} "
            "FROM cxo_roots r JOIN cxo_heads h ON h.feed = r.feed AND h.nonce = r.nonce "
            "WHERE r.feed = ? AND r.seq = "
            "(SELECT MAX(seq) FROM cxo_roots x WHERE x.feed = r.feed AND x.nonce = r.nonce) "
            "ORDER BY r.time DESC, h.touched DESC LIMIT 1",
            (feed.raw,),
        )
        return None if row is None else _meta(row)

    async def set_full(self, feed: PubKey, nonce: int, seq: int, full: bool = True) -> None:
        async with self._tx() as db:
            await self._need_feed(feed)
            if await self._root(feed, nonce, seq) is None:
                raise StoreError(f"no Root {nonce}/{seq} in feed {feed}")
            await db.execute(
                "UPDATE cxo_roots SET full = ? WHERE feed = ? AND nonce = ? AND seq = ?",
                (int(full), feed.raw, _u(nonce), _u(seq)),
            )

    async def del_root(self, feed: PubKey, nonce: int, seq: int) -> RootMeta | None:
        async with self._tx() as db:
            await self._need_feed(feed)
            return await self._del_root(db, feed, nonce, seq)

    async def _del_root(
        self, db: aiosqlite.Connection, feed: PubKey, nonce: int, seq: int
    ) -> RootMeta | None:
        meta = await self._root(feed, nonce, seq)
        if meta is None:
            return None
        f, n = feed.raw, _u(nonce)
        await db.execute(
            "DELETE FROM cxo_roots WHERE feed = ? AND nonce = ? AND seq = ?", (f, n, _u(seq))
        )
        left = await self._one(
            "SELECT 1 FROM cxo_roots WHERE feed = ? AND nonce = ? LIMIT 1", (f, n)
        )
        if left is None:
            await db.execute("DELETE FROM cxo_heads WHERE feed = ? AND nonce = ?", (f, n))
        return meta

    async def keep_last(self, feed: PubKey, nonce: int, n: int = 1) -> list[RootMeta]:
        async with self._tx() as db:
            await self._need_feed(feed)
            rows = await self._all(
                f"SELECT {_ROOT_COLS} FROM cxo_roots WHERE feed = ? AND nonce = ? ORDER BY seq",
                (feed.raw, _u(nonce)),
            )
            removed = []
            for row in rows[: max(len(rows) - n, 0)]:
                meta = await self._del_root(db, feed, nonce, _meta(row).seq)
                if meta is not None:
                    removed.append(meta)
        return removed

    async def close(self) -> None:
        await self._db.close()
