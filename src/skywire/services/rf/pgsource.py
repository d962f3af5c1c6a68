"""A :class:`~skywire.services.rf.graph.TransportSource` reading transport discovery's PostgreSQL
table directly (``skywire svc rf --pg-url``).

The route finder then skips the transport discovery's HTTP API: no JSON of every transport is
built and parsed on each rebuild, only the five columns the graph needs are read (``t_id``,
``edge_a``, ``edge_b``, ``type``, ``latency_ms`` of ``tpd_transports``, in ``schema`` when
given), in chunks through a server-side cursor so that the event loop keeps answering queries
in between. It only reads: any number of route finders may share the database with any number
of transport discoveries.

Keys are trusted as stored — transport discovery checked both signatures, and so the keys, when
it registered the row — and interned: a visor on ten transports is one :class:`PubKey` object,
parsed once per rebuild. Rows whose keys are not 33 bytes of hex are skipped.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from skywire.cipher import CipherError, PubKey
from skywire.services.httpauth import pg_qualified
from skywire.services.rf.gcpause import collector_paused
from skywire.services.rf.graph import RouteFinderError, TransportInfo

__all__ = ["DEFAULT_CHUNK", "PostgresTransportSource"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 20_000
"""Rows fetched per round trip of the cursor."""


class PostgresTransportSource:
    """Every transport of a transport discovery's PostgreSQL store, read on each call.

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
        self._owns = owns_pool
        self._chunk = chunk

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> PostgresTransportSource:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        return cls(pool, schema=schema, owns_pool=True)

    async def all_transports(self) -> list[TransportInfo]:
        """Every transport; raises :class:`RouteFinderError` when the table cannot be read."""
        try:
            with collector_paused():  # see gcpause: about half of the read's time otherwise
                out, skipped = await self._read()
        except (asyncpg.PostgresError, OSError) as exc:
            raise RouteFinderError(f"transport discovery database: {exc}") from exc
        if skipped:
            log.warning("skipped %d malformed rows of %s", skipped, self.table)
        return out

    async def _read(self) -> tuple[list[TransportInfo], int]:
        query = f"SELECT t_id, edge_a, edge_b, type, latency_ms FROM {self.table}"
        keys: dict[str, PubKey | None] = {}
        out: list[TransportInfo] = []
        skipped = 0
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(query)
            while rows := await cursor.fetch(self._chunk):
                for row in rows:
                    tp = _info(row, keys)
                    if tp is None:
                        skipped += 1
                    else:
                        out.append(tp)
        return out, skipped

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
