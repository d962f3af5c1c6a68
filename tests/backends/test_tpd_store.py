"""One transport-discovery store suite over memory, SQLite and a real PostgreSQL.

PostgreSQL runs at postgresql://postgres@127.0.0.1:5432/test; every test gets its own schema,
dropped afterwards. Time is an injected clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from skywire.cipher import KeyPair
from skywire.services.tpd.store import (
    AlreadyRegisteredError,
    TransportNotFoundError,
    TransportStore,
    open_store,
)
from skywire.services.tpd.store.memory import MemoryStore
from skywire.services.tpd.store.postgres import PostgresStore
from skywire.services.tpd.store.sqlite import SqliteStore
from skywire.transport.entry import SignedEntry, TransportType, make_entry
from tests.backends.test_httpauth_store import PG_URL, pg_schema

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    store: TransportStore
    clock: FakeClock


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    clock = FakeClock()
    if request.param == "memory":
        store: TransportStore = MemoryStore(clock=clock)
        yield Backend("memory", store, clock)
        await store.close()
    elif request.param == "sqlite":
        store = await SqliteStore.open(str(tmp_path / "tpd.db"), clock=clock)
        yield Backend("sqlite", store, clock)
        await store.close()
    else:
        async with pg_schema() as (pool, schema):
            await PostgresStore.create_schema(pool, schema)
            yield Backend("postgres", PostgresStore(pool, schema=schema, clock=clock), clock)


def signed(a: KeyPair, b: KeyPair, tp_type: str = TransportType.STCPR) -> SignedEntry:
    entry = make_entry(a.pk, b.pk, tp_type)
    return SignedEntry.new(entry, a.pk, a.sk).sign(b.pk, b.sk)


async def test_register_get_and_signed_round_trip(backend: Backend) -> None:
    store = backend.store
    a, b = KeyPair.generate(), KeyPair.generate()
    se = signed(a, b)
    await store.register([se])
    assert await store.get_by_id(se.entry.id) == se.entry
    stored = await store.get_signed(se.entry.id)
    assert stored.entry == se.entry
    assert stored.signatures == se.signatures
    assert stored.registered == int(T0)
    stored.verify_all()


async def test_missing_transport(backend: Backend) -> None:
    store = backend.store
    missing = make_entry(KeyPair.generate().pk, KeyPair.generate().pk, "dmsg").id
    with pytest.raises(TransportNotFoundError) as info:
        await store.get_by_id(missing)
    assert info.value.status == 404 and str(info.value) == "transport not found"
    with pytest.raises(TransportNotFoundError):
        await store.get_signed(missing)
    with pytest.raises(TransportNotFoundError):
        await store.deregister(missing)
    with pytest.raises(TransportNotFoundError):
        await store.set_latency(missing, 5.0, KeyPair.generate().pk)


async def test_duplicate_registration_writes_nothing(backend: Backend) -> None:
    store = backend.store
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    first = signed(a, b)
    await store.register([first])
    fresh = signed(a, c)
    relabelled = replace(first, entry=replace(first.entry, label="automatic"))
    with pytest.raises(AlreadyRegisteredError) as info:
        await store.register([fresh, relabelled])
    assert info.value.status == 409
    # Neither the fresh entry of the batch nor the new label was stored.
    with pytest.raises(TransportNotFoundError):
        await store.get_by_id(fresh.entry.id)
    assert (await store.get_by_id(first.entry.id)).label == "user"
    # The same ID twice in one batch is refused too.
    with pytest.raises(AlreadyRegisteredError):
        await store.register([fresh, fresh])
    with pytest.raises(TransportNotFoundError):
        await store.get_by_id(fresh.entry.id)
    await store.register([])
    assert len(await store.all_transports()) == 1


async def test_by_edge_all_and_counts(backend: Backend) -> None:
    store = backend.store
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    ab_r, ab_d, bc = signed(a, b), signed(a, b, TransportType.DMSG), signed(b, c, "sudph")
    await store.register([ab_r, ab_d])
    await store.register([bc])
    by_id = sorted([ab_r.entry, ab_d.entry, bc.entry], key=lambda e: str(e.id))
    assert await store.all_transports() == by_id
    assert await store.get_by_edge(b.pk) == by_id
    assert await store.get_by_edge(a.pk) == [e for e in by_id if e.has_edge(a.pk)]
    assert await store.get_by_edge(c.pk) == [bc.entry]
    assert await store.get_by_edge(KeyPair.generate().pk) == []
    assert await store.count_by_type() == {"stcpr": 1, "dmsg": 1, "sudph": 1}


async def test_latency_overlay(backend: Backend) -> None:
    store = backend.store
    a, b = KeyPair.generate(), KeyPair.generate()
    se = signed(a, b)
    await store.register([se])
    await store.set_latency(se.entry.id, 42.5, a.pk)
    got = await store.get_by_id(se.entry.id)
    assert got.latency_ms == 42.5
    assert replace(got, latency_ms=None) == se.entry
    assert [e.latency_ms for e in await store.get_by_edge(b.pk)] == [42.5]
    # The bulk listing carries latency only when asked; the signed entry never does.
    assert [e.latency_ms for e in await store.all_transports()] == [None]
    assert [e.latency_ms for e in await store.all_transports(with_latency=True)] == [42.5]
    assert (await store.get_signed(se.entry.id)).entry.latency_ms is None
    # Latest report wins.
    await store.set_latency(se.entry.id, 7.0, b.pk)
    assert (await store.get_by_id(se.entry.id)).latency_ms == 7.0


async def test_deregister_removes_transport_and_latency(backend: Backend) -> None:
    store = backend.store
    a, b = KeyPair.generate(), KeyPair.generate()
    se = signed(a, b)
    await store.register([se])
    await store.set_latency(se.entry.id, 3.0, a.pk)
    await store.deregister(se.entry.id)
    with pytest.raises(TransportNotFoundError):
        await store.get_by_id(se.entry.id)
    assert await store.get_by_edge(a.pk) == []
    # Registering again starts without latency.
    await store.register([se])
    assert (await store.get_by_id(se.entry.id)).latency_ms is None


async def test_concurrent_registrations_of_one_id_admit_exactly_one(backend: Backend) -> None:
    store = backend.store
    a, b = KeyPair.generate(), KeyPair.generate()
    se = signed(a, b)
    results = await asyncio.gather(
        *(store.register([se]) for _ in range(8)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, AlreadyRegisteredError) for r in results if r is not None)
    assert len(await store.all_transports()) == 1


async def test_nonce_store_lives_alongside(backend: Backend) -> None:
    nonces = backend.store.nonce_store()
    kp = KeyPair.generate()
    assert await nonces.nonce(kp.pk) == 0
    assert await nonces.increment(kp.pk) == 1
    assert await backend.store.nonce_store().nonce(kp.pk) == 1


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "persist.db")
    a, b = KeyPair.generate(), KeyPair.generate()
    se = signed(a, b)
    async with await open_store("sqlite", db=path) as store:
        await store.register([se])
        await store.set_latency(se.entry.id, 9.0, a.pk)
        await store.nonce_store().increment(a.pk)
    async with await open_store("sqlite", db=path) as store:
        assert (await store.get_by_id(se.entry.id)).latency_ms == 9.0
        assert await store.nonce_store().nonce(a.pk) == 1


async def test_postgres_open_store_by_url() -> None:
    async with pg_schema() as (_pool, schema):
        a, b = KeyPair.generate(), KeyPair.generate()
        se = signed(a, b)
        async with await open_store("postgres", pg_url=PG_URL, pg_schema=schema) as store:
            await store.register([se])
        # A second open over the existing tables sees the data.
        async with await open_store("postgres", pg_url=PG_URL, pg_schema=schema) as store:
            assert await store.get_by_id(se.entry.id) == se.entry


async def test_open_store_refuses_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown store"):
        await open_store("redis")


async def test_large_listing_is_in_text_id_order_with_keys_parsed_once(backend: Backend) -> None:
    """Listed by ID as text (PostgreSQL sorts the UUIDs themselves: the same order), and a
    visor on many transports is one parsed key."""
    store = backend.store
    hub = KeyPair.generate()
    peers = [KeyPair.generate() for _ in range(120)]
    entries = [signed(hub, p, t) for p in peers for t in (TransportType.STCPR, "sudph")]
    await store.register(entries)
    listed = await store.all_transports()
    assert [e.id for e in listed] == sorted((se.entry.id for se in entries), key=str)
    assert [e.id for e in await store.get_by_edge(hub.pk)] == [e.id for e in listed]
    if backend.name == "postgres":
        hubs = {id(e.edges[0 if e.edges[0] == hub.pk else 1]) for e in listed}
        assert len(hubs) == 1
