"""A :class:`~skywire.services.rf.graph.TransportSource` reading transport discovery's PostgreSQL
table directly (``skywire svc rf --pg-url``).

The route finder then skips the transport discovery's HTTP API: no JSON of every transport is
built and parsed on each rebuild, only the five columns the graph needs are read (``t_id``,
``edge_a``, ``edge_b``, ``type``, ``latency_ms`` of ``tpd_transports``, in ``schema`` when
given), in chunks through a server-side cursor so that the event loop keeps answering queries
in between. It only reads: any number of route finders may share the database with any number
of transport discoveries.

After the first read it follows the table's change log (``tpd_changes``, kept by a trigger:
:mod:`skywire.services.tpd.store.pgchanges`): each later call reads only the rows changed since
its last mark (less an overlap, for transactions that committed late) and applies them to the
transports it holds, so a refresh of 500,000 transports reads a handful of rows, and
:attr:`PostgresTransportSource.version` tells the route finder when there is nothing to
rebuild. It reads everything again when the log is missing (a table made by an older transport
discovery) or when its last mark is older than the log keeps.

Keys are trusted as stored — transport discovery checked both signatures, and so the keys, when
it registered the row — and interned: a visor on ten transports is one :class:`PubKey` object.
Rows whose keys are not 33 bytes of hex are skipped.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from skywire.cipher import CipherError, PubKey
from skywire.services.httpauth import pg_qualified
from skywire.services.rf.gcpause import collector_paused
from skywire.services.rf.graph import RouteFinderError, TransportInfo
from skywire.services.tpd.store.pgchanges import OVERLAP_SECONDS, RETENTION_SECONDS, changes_table

__all__ = ["DEFAULT_CHUNK", "PostgresTransportSource"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 20_000
"""Rows fetched per round trip of the cursor."""


class PostgresTransportSource:
    """Every transport of a transport discovery's PostgreSQL store: read whole the first time,
    then followed through the change log.

    Open with :meth:`open` (owns its pool, closed by :meth:`close`) or build over a pool.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str | None = None,
        owns_pool: bool = False,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self._pool = pool
        self.table = pg_qualified(schema, "tpd_transports")
        self.changes = changes_table(schema)
        self._owns = owns_pool
        self._chunk = chunk
        self._known: dict[uuid.UUID, TransportInfo] = {}
        self._keys: dict[str, PubKey | None] = {}
        self._mark: datetime | None = None  # the database's clock at the last read
        self.version = 0
        """Goes up whenever what :meth:`all_transports` returns may differ from before (a whole
        read, or changes applied); equal versions mean equal transports."""
        self.full_reads = 0
        self.change_reads = 0

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> PostgresTransportSource:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        return cls(pool, schema=schema, owns_pool=True)

    async def all_transports(self) -> list[TransportInfo]:
        """Every transport; raises :class:`RouteFinderError` when the table cannot be read."""
        try:
            with collector_paused():  # see gcpause: about half of a whole read's time otherwise
                if self._mark is None or not await self._read_changes():
                    await self._read_all()
        except (asyncpg.PostgresError, OSError) as exc:
            self._mark = None
            raise RouteFinderError(f"transport discovery database: {exc}") from exc
        return list(self._known.values())

    async def _read_all(self) -> None:
        query = f"SELECT t_id, edge_a, edge_b, type, latency_ms FROM {self.table}"
        known: dict[uuid.UUID, TransportInfo] = {}
        keys: dict[str, PubKey | None] = {}
        skipped = 0
        async with self._pool.acquire() as conn:
            # the mark and the rows from one snapshot
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                mark = await conn.fetchval("SELECT now()")
                cursor = await conn.cursor(query)
                while rows := await cursor.fetch(self._chunk):
                    for row in rows:
                        tp = _info(row, keys)
                        if tp is None:
                            skipped += 1
                        else:
                            known[tp.id] = tp
            has_log = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self.changes)
        if skipped:
            log.warning("skipped %d malformed rows of %s", skipped, self.table)
        self._known, self._keys = known, keys
        self._mark = mark if has_log else None
        self.version += 1
        self.full_reads += 1

    async def _read_changes(self) -> bool:
        """Apply what changed since the last mark; False when the log cannot say (missing, or
        the mark older than it keeps): then everything is read again."""
        assert self._mark is not None
        since = self._mark - timedelta(seconds=OVERLAP_SECONDS)
        query = (
            f"SELECT c.t_id, t.edge_a, t.edge_b, t.type, t.latency_ms "
            f"FROM (SELECT DISTINCT t_id FROM {self.changes} WHERE at > $1) c "
            f"LEFT JOIN {self.table} t ON t.t_id = c.t_id"
        )
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            now = await conn.fetchval("SELECT now()")
            if now - self._mark > timedelta(seconds=RETENTION_SECONDS - OVERLAP_SECONDS):
                return False
            try:
                rows = await conn.fetch(query, since)
            except asyncpg.UndefinedTableError:
                return False
        changed = False
        known, keys = self._known, self._keys
        for row in rows:
            tp_id = row[0]
            tp = None if row[1] is None else _info(row, keys)
            if tp is None:
                changed |= known.pop(tp_id, None) is not None
            elif known.get(tp_id) != tp:
                known[tp_id] = tp
                changed = True
        self._mark = now
        if changed:
            self.version += 1
        self.change_reads += 1
        return True

    async def close(self) -> None:
        if self._owns:
            await self._pool.close()


def _key(text: str, keys: dict[str, PubKey | None]) -> PubKey | None:
    try:
        return keys[text]
    except KeyError:
        pass
    try:
        pk: PubKey | None = PubKey(bytes.fromhex(text))
    except (ValueError, CipherError):
        pk = None
    keys[text] = pk
    return pk


def _info(row: Any, keys: dict[str, PubKey | None]) -> TransportInfo | None:
    a = _key(row[1], keys)
    b = _key(row[2], keys)
    if a is None or b is None:
        return None
    latency = row[4]
    if latency is not None:
        latency = float(latency)
        if latency != latency or latency < 0:  # NaN or negative: unmeasured
            latency = None
    return TransportInfo(row[0], (a, b), row[3], latency)
