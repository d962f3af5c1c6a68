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


async def test_later_reads_follow_the_change_log_and_an_unchanged_table_skips_the_rebuild() -> None:
    async with pg_schema() as (pool, schema):
        await PostgresStore.create_schema(pool, schema)
        store = PostgresStore(pool, schema=schema)
        a, b, c, d = (KeyPair.generate() for _ in range(4))
        ab, bc, cd = signed(a, b), signed(b, c), signed(c, d)
        await store.register([ab, bc, cd])
        source = PostgresTransportSource(pool, schema=schema)
        finder = RouteFinder(source, refresh_interval=None)
        await finder.refresh()
        assert (source.full_reads, finder.builds) == (1, 1)

        await finder.refresh()  # nothing changed: no read of the table, no rebuild
        assert (source.full_reads, source.change_reads) == (1, 1)
        assert (finder.builds, finder.skipped_builds) == (1, 1)

        ad = signed(a, d, "sudph")
        await store.register([ad])  # a new transport,
        await store.set_latency(bc.entry.id, 7.5, b.pk)  # a measured latency,
        await store.deregister(cd.entry.id)  # a deregistered one,
        await pool.execute(  # and a change made by another writer of the table
            f'UPDATE "{schema}".tpd_transports SET type = $1 WHERE t_id = $2', "stcp", ab.entry.id
        )
        got = {tp.id: tp for tp in await source.all_transports()}
        assert (source.full_reads, source.change_reads) == (1, 2)
        assert got == {
            ab.entry.id: TransportInfo(ab.entry.id, ab.entry.edges, "stcp", None),
            bc.entry.id: TransportInfo(bc.entry.id, bc.entry.edges, "stcpr", 7.5),
            ad.entry.id: TransportInfo(ad.entry.id, ad.entry.edges, "sudph", None),
        }
        await finder.refresh()
        assert finder.builds == 2
        routes = await finder.find_routes([PathEdges(a.pk, d.pk)], min_hops=1, max_hops=1)
        assert [h.tp_id for h in routes[PathEdges(a.pk, d.pk)][0].hops] == [ad.entry.id]


async def test_without_the_log_or_past_what_it_keeps_every_read_is_whole() -> None:
    from datetime import timedelta

    from skywire.services.tpd.store.pgchanges import RETENTION_SECONDS

    async with pg_schema() as (pool, schema):
        await PostgresStore.create_schema(pool, schema)
        store = PostgresStore(pool, schema=schema)
        a, b, c = (KeyPair.generate() for _ in range(3))
        first = signed(a, b)
        await store.register([first])
        source = PostgresTransportSource(pool, schema=schema)
        await source.all_transports()
        # a reader that fell behind what the log keeps: everything again
        assert source._mark is not None
        source._mark -= timedelta(seconds=RETENTION_SECONDS)
        await source.all_transports()
        assert (source.full_reads, source.change_reads) == (2, 0)
        # a table without the log (an older transport discovery made it): every read whole
        await pool.execute(f'DROP TABLE "{schema}".tpd_changes CASCADE')
        await pool.execute(f'DROP TRIGGER tpd_transports_changes ON "{schema}".tpd_transports')
        second = signed(b, c)
        await store.register([second])
        assert {tp.id for tp in await source.all_transports()} == {first.entry.id, second.entry.id}
        assert {tp.id for tp in await source.all_transports()} == {first.entry.id, second.entry.id}
        assert (source.full_reads, source.change_reads) == (4, 0)


async def test_the_change_log_prunes_what_is_older_than_it_keeps() -> None:
    from skywire.services.tpd.store.pgchanges import PRUNE_EVERY

    async with pg_schema() as (pool, schema):
        await PostgresStore.create_schema(pool, schema)
        store = PostgresStore(pool, schema=schema)
        log = f'"{schema}".tpd_changes'
        old, recent = uuid.uuid4(), uuid.uuid4()
        await pool.execute(
            f"INSERT INTO {log} (t_id, at) VALUES ($1, now() - interval '1 hour'), ($2, now())",
            old,
            recent,
        )
        # the next change is logged with a multiple of PRUNE_EVERY: it prunes
        await pool.execute(
            f"SELECT setval(pg_get_serial_sequence('{log}', 'seq'), $1)", PRUNE_EVERY - 1
        )
        a, b = KeyPair.generate(), KeyPair.generate()
        added = signed(a, b)
        await store.register([added])
        left = {r["t_id"] for r in await pool.fetch(f"SELECT t_id FROM {log}")}
        assert left == {recent, added.entry.id}
