"""SQLite transport discovery store (the default): one table, latency as columns.

A registration batch is one multi-row ``INSERT`` statement, so a conflicting ID aborts the whole
batch; every other write is a single statement too, so sharing the connection with the httpauth
nonce table needs no transactions.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiosqlite

from skywire.cipher import CipherError, PubKey, Sig
from skywire.services.httpauth import NonceStore, SqliteNonceStore
from skywire.services.tpd.store import (
    AlreadyRegisteredError,
    Clock,
    StoreError,
    TransportNotFoundError,
    TransportStore,
    check_unique_ids,
)
from skywire.transport.entry import Entry, SignedEntry

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tpd_transports (
    t_id             TEXT PRIMARY KEY,
    edge_a           TEXT NOT NULL,
    edge_b           TEXT NOT NULL,
    type             TEXT NOT NULL,
    label            TEXT NOT NULL,
    sig_a            TEXT NOT NULL,
    sig_b            TEXT NOT NULL,
    registered       INTEGER NOT NULL,
    latency_ms       REAL,
    latency_reporter TEXT,
    latency_at       REAL
);
CREATE INDEX IF NOT EXISTS tpd_transports_edge_a ON tpd_transports (edge_a);
CREATE INDEX IF NOT EXISTS tpd_transports_edge_b ON tpd_transports (edge_b);
"""

_COLUMNS = "t_id, edge_a, edge_b, type, label, sig_a, sig_b, registered"
_ENTRY_COLUMNS = "t_id, edge_a, edge_b, type, label, latency_ms"


def _row_to_entry(row: Any, *, with_latency: bool = True) -> Entry:
    try:
        latency = row[5] if with_latency and row[5] is not None else None
        return Entry(
            uuid.UUID(row[0]),
            (PubKey.from_hex(row[1]), PubKey.from_hex(row[2])),
            row[3],
            row[4],
            None if latency is None else float(latency),
        )
    except (ValueError, CipherError) as exc:
        raise StoreError(f"stored transport {row[0]} is corrupt: {exc}") from exc


class SqliteStore(TransportStore):
    """Transports in an SQLite database (a file, or ``":memory:"``). Open with :meth:`open`."""

    def __init__(self, conn: aiosqlite.Connection, *, clock: Clock = time.time) -> None:
        self._db = conn
        self._clock = clock
        self._nonces = SqliteNonceStore(conn, namespace="tpd")

    @classmethod
    async def open(
        cls, path: str = "./transport-discovery.db", *, clock: Clock = time.time
    ) -> SqliteStore:
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
            await conn.executescript(_SCHEMA)
            await SqliteNonceStore.create_schema(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, clock=clock)

    async def register(self, entries: Sequence[SignedEntry]) -> None:
        check_unique_ids(entries)
        if not entries:
            return
        now = int(self._clock())
        params: list[object] = []
        for se in entries:
            e = se.entry
            params += [
                str(e.id),
                e.edges[0].hex(),
                e.edges[1].hex(),
                e.type,
                e.label,
                se.signatures[0].hex(),
                se.signatures[1].hex(),
                now,
            ]
        rows = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(entries))
        try:
            await self._db.execute(f"INSERT INTO tpd_transports ({_COLUMNS}) VALUES {rows}", params)
        except sqlite3.IntegrityError as exc:
            raise AlreadyRegisteredError() from exc

    async def deregister(self, tp_id: uuid.UUID) -> None:
        async with self._db.execute(
            "DELETE FROM tpd_transports WHERE t_id = ?", (str(tp_id),)
        ) as cur:
            if cur.rowcount == 0:
                raise TransportNotFoundError()

    async def get_signed(self, tp_id: uuid.UUID) -> SignedEntry:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM tpd_transports WHERE t_id = ?", (str(tp_id),)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            raise TransportNotFoundError()
        entry = _row_to_entry((*row[:5], None))
        try:
            sigs = (Sig.from_hex(row[5]), Sig.from_hex(row[6]))
        except CipherError as exc:
            raise StoreError(f"stored transport {row[0]} is corrupt: {exc}") from exc
        return SignedEntry(entry, sigs, int(row[7]))

    async def get_by_id(self, tp_id: uuid.UUID) -> Entry:
        async with self._db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM tpd_transports WHERE t_id = ?", (str(tp_id),)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            raise TransportNotFoundError()
        return _row_to_entry(row)

    async def get_by_edge(self, pk: PubKey) -> list[Entry]:
        async with self._db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM tpd_transports WHERE edge_a = ? OR edge_b = ? "
            "ORDER BY t_id",
            (pk.hex(), pk.hex()),
        ) as cur:
            rows = await cur.fetchall()
        return [_row_to_entry(r) for r in rows]

    async def all_transports(self, *, with_latency: bool = False) -> list[Entry]:
        async with self._db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM tpd_transports ORDER BY t_id"
        ) as cur:
            rows = await cur.fetchall()
        return [_row_to_entry(r, with_latency=with_latency) for r in rows]

    async def set_latency(self, tp_id: uuid.UUID, latency_ms: float, reporter: PubKey) -> None:
        async with self._db.execute(
            "UPDATE tpd_transports SET latency_ms = ?, latency_reporter = ?, latency_at = ? "
            "WHERE t_id = ?",
            (float(latency_ms), reporter.hex(), self._clock(), str(tp_id)),
        ) as cur:
            if cur.rowcount == 0:
                raise TransportNotFoundError()

    async def count_by_type(self) -> dict[str, int]:
        async with self._db.execute(
            "SELECT type, COUNT(*) FROM tpd_transports GROUP BY type ORDER BY type"
        ) as cur:
            rows = await cur.fetchall()
        return {str(t): int(n) for t, n in rows}

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        await self._db.close()
