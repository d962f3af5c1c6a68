"""The route finder reading transport discovery's PostgreSQL store directly.

PostgreSQL runs at postgresql://postgres@127.0.0.1:5432/test; every test gets its own schema,
dropped afterwards.
"""

from __future__ import annotations

import uuid

import pytest

from skywire.cipher import KeyPair
from skywire.routing.route import PathEdges
from skywire.services.rf.api import RouteFinder
from skywire.services.rf.graph import RouteFinderError, TransportInfo
from skywire.services.rf.pgsource import PostgresTransportSource
from skywire.services.tpd.store.postgres import PostgresStore
from skywire.transport.entry import SignedEntry, make_entry
from tests.backends.test_httpauth_store import pg_schema


def signed(a: KeyPair, b: KeyPair, tp_type: str = "stcpr") -> SignedEntry:
    return SignedEntry.new(make_entry(a.pk, b.pk, tp_type), a.pk, a.sk).sign(b.pk, b.sk)


async def test_reads_every_transport_with_latency_in_chunks() -> None:
    async with pg_schema() as (pool, schema):
        await PostgresStore.create_schema(pool, schema)
        store = PostgresStore(pool, schema=schema)
        kps = [KeyPair.generate() for _ in range(4)]
        entries = [
            signed(kps[0], kps[1]),
            signed(kps[1], kps[2], "sudph"),
            signed(kps[2], kps[3], "dmsg"),
            signed(kps[0], kps[3]),
            signed(kps[0], kps[0]),  # a self-transport is listed (the graph drops it)
        ]
        await store.register(entries)
        await store.set_latency(entries[1].entry.id, 12.5, kps[1].pk)
        source = PostgresTransportSource(pool, schema=schema, chunk=2)
        got = {tp.id: tp for tp in await source.all_transports()}
        want = {
            se.entry.id: TransportInfo(
                se.entry.id,
                se.entry.edges,
                se.entry.type,
                12.5 if se is entries[1] else None,
            )
            for se in entries
        }
        assert got == want
        # one PubKey object per visor, whatever its number of transports
        assert len({id(pk) for tp in got.values() for pk in tp.edges}) == 4

        finder = RouteFinder(source, refresh_interval=None)
        routes = await finder.find_routes([PathEdges(kps[1].pk, kps[3].pk)], min_hops=1)
        hops = [[h.tp_id for h in r.hops] for r in routes[PathEdges(kps[1].pk, kps[3].pk)]]
        assert [entries[1].entry.id, entries[2].entry.id] in hops
        await source.close()  # not the owner: the pool stays open
        assert await pool.fetchval("SELECT 1") == 1


async def test_malformed_rows_are_skipped_and_a_missing_table_is_an_error() -> None:
    async with pg_schema() as (pool, schema):
        await PostgresStore.create_schema(pool, schema)
        store = PostgresStore(pool, schema=schema)
        a, b = KeyPair.generate(), KeyPair.generate()
        good = signed(a, b)
        await store.register([good])
        await pool.execute(
            f'INSERT INTO "{schema}".tpd_transports '
            "(t_id, edge_a, edge_b, type, label, sig_a, sig_b, registered, latency_ms) "
            "VALUES ($1, 'zz', $2, 'stcpr', '', '', '', 0, 'NaN')",
            uuid.uuid4(),
            b.pk.hex(),
        )
        source = PostgresTransportSource(pool, schema=schema)
        assert [tp.id for tp in await source.all_transports()] == [good.entry.id]
        missing = PostgresTransportSource(pool, schema=f"{schema}_none")
        with pytest.raises(RouteFinderError):
            await missing.all_transports()
