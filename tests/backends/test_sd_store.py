"""One service-discovery store suite over memory, SQLite and a real PostgreSQL.

PostgreSQL runs at postgresql://postgres@127.0.0.1:5432/test; every test gets its own schema,
dropped afterwards. Time is an injected clock: expiry is asserted just before and at the due
time, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skywire.cipher import KeyPair, PubKey
from skywire.services.sd.entry import Geo, ServiceEntry, ServiceType, SWAddr
from skywire.services.sd.store import (
    DEFAULT_TTL,
    ServiceNotFoundError,
    ServiceStore,
    StoreError,
    open_store,
)
from skywire.services.sd.store.memory import MemoryStore
from skywire.services.sd.store.postgres import PostgresStore
from skywire.services.sd.store.sqlite import SqliteStore
from tests.backends.test_httpauth_store import PG_URL, pg_schema

T0 = 1_700_000_000.0
TTL = 300.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    store: ServiceStore
    clock: FakeClock


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    clock = FakeClock()
    if request.param == "memory":
        store: ServiceStore = MemoryStore(ttl=TTL, clock=clock)
        yield Backend("memory", store, clock)
        await store.close()
    elif request.param == "sqlite":
        store = await SqliteStore.open(str(tmp_path / "sd.db"), ttl=TTL, clock=clock)
        yield Backend("sqlite", store, clock)
        await store.close()
    else:
        async with pg_schema() as (pool, schema):
            await PostgresStore.create_schema(pool, schema)
            yield Backend(
                "postgres", PostgresStore(pool, schema=schema, ttl=TTL, clock=clock), clock
            )


def entry(
    kp: KeyPair,
    kind: ServiceType = ServiceType.VPN,
    *,
    port: int = 44,
    version: str = "v1.3.29",
    country: str = "",
    ips: tuple[str, ...] = (),
) -> ServiceEntry:
    geo = Geo(52.5, 13.4, country) if country else None
    return ServiceEntry(SWAddr(kp.pk, port), kind, version, geo, bool(ips), ips)


def by_key(*entries: ServiceEntry) -> list[ServiceEntry]:
    return sorted(entries, key=lambda e: e.pk.raw)


async def test_register_get_and_list(backend: Backend) -> None:
    store = backend.store
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    va, vb = entry(a, country="DE", ips=("10.0.0.1",)), entry(b, version="v1.2", country="NZ")
    sc = entry(c, ServiceType.SKYSOCKS, port=3)
    for e in (va, vb, sc):
        await store.register(e)
    assert await store.get(ServiceType.VPN, a.pk) == va  # stored whole, local IPs included
    assert await store.services(ServiceType.VPN) == by_key(va, vb)
    assert await store.services(ServiceType.SKYSOCKS) == [sc]
    assert await store.services(ServiceType.VISOR) == []
    assert await store.services(ServiceType.VPN, country="DE") == [va]
    assert await store.services(ServiceType.VPN, country="US") == []
    assert await store.services(ServiceType.VPN, version="v1.2") == [vb]
    assert await store.services(ServiceType.VPN, version="v1.2", country="DE") == []
    assert await store.count_by_type() == {"vpn": 2, "skysocks": 1}


async def test_missing_service(backend: Backend) -> None:
    store = backend.store
    a = KeyPair.generate()
    with pytest.raises(ServiceNotFoundError) as info:
        await store.get(ServiceType.VPN, a.pk)
    assert info.value.status == 404 and str(info.value) == "service not found"
    await store.register(entry(a, ServiceType.SKYSOCKS))
    with pytest.raises(ServiceNotFoundError):  # the key has a service, of another type
        await store.get(ServiceType.VPN, a.pk)
    assert await store.delete(ServiceType.VPN, a.pk) is False


async def test_one_entry_per_type_and_key(backend: Backend) -> None:
    store = backend.store
    a = KeyPair.generate()
    await store.register(entry(a, port=44, version="v1"))
    moved = entry(a, port=45, version="v2", country="DE")
    await store.register(moved)  # replaces: a new port, version and place
    assert await store.services(ServiceType.VPN) == [moved]
    assert await store.services(ServiceType.VPN, version="v1") == []
    skysocks = entry(a, ServiceType.SKYSOCKS, port=3)
    await store.register(skysocks)  # another type: an entry of its own
    assert await store.get(ServiceType.VPN, a.pk) == moved
    assert await store.get(ServiceType.SKYSOCKS, a.pk) == skysocks


async def test_delete_removes_only_that_type(backend: Backend) -> None:
    store = backend.store
    a, b = KeyPair.generate(), KeyPair.generate()
    await store.register(entry(a))
    await store.register(entry(a, ServiceType.SKYSOCKS, port=3))
    await store.register(entry(b))
    assert await store.delete(ServiceType.VPN, a.pk) is True
    assert await store.delete(ServiceType.VPN, a.pk) is False
    with pytest.raises(ServiceNotFoundError):
        await store.get(ServiceType.VPN, a.pk)
    assert (await store.get(ServiceType.SKYSOCKS, a.pk)).pk == a.pk
    assert [e.pk for e in await store.services(ServiceType.VPN)] == [b.pk]


async def test_entries_expire_unless_registered_again(backend: Backend) -> None:
    store, clock = backend.store, backend.clock
    a, b = KeyPair.generate(), KeyPair.generate()
    ea, eb = entry(a), entry(b)
    await store.register(ea)
    await store.register(eb)
    clock.now = T0 + 200
    await store.register(eb)  # b refreshes: lives until T0 + 500
    clock.now = T0 + TTL - 0.001
    assert await store.services(ServiceType.VPN) == by_key(ea, eb)
    clock.now = T0 + TTL  # a's time is up, at once on every read
    assert await store.services(ServiceType.VPN) == [eb]
    with pytest.raises(ServiceNotFoundError):
        await store.get(ServiceType.VPN, a.pk)
    assert await store.count_by_type() == {"vpn": 1}
    assert await store.delete(ServiceType.VPN, a.pk) is False  # an expired one is no entry
    await store.register(ea)  # and may come back
    clock.now = T0 + 200 + TTL
    assert await store.services(ServiceType.VPN) == [ea]
    assert await store.purge_expired() == 1
    assert await store.purge_expired() == 0
    assert await store.services(ServiceType.VPN) == [ea]
    clock.now = T0 + 10 * TTL
    assert await store.purge_expired() == 1
    assert await store.count_by_type() == {}


async def test_concurrent_registrations_of_one_key_leave_one_entry(backend: Backend) -> None:
    store = backend.store
    a = KeyPair.generate()
    versions = [f"v1.{i}" for i in range(8)]
    await asyncio.gather(*(store.register(entry(a, version=v)) for v in versions))
    listed = await store.services(ServiceType.VPN)
    assert len(listed) == 1 and listed[0].version in versions


async def test_nonce_store_lives_alongside(backend: Backend) -> None:
    nonces = backend.store.nonce_store()
    kp = KeyPair.generate()
    assert await nonces.nonce(kp.pk) == 0
    assert await nonces.increment(kp.pk) == 1
    assert await backend.store.nonce_store().nonce(kp.pk) == 1


async def test_without_ttl_nothing_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    a = KeyPair.generate()
    for store in (
        MemoryStore(ttl=None, clock=clock),
        await SqliteStore.open(str(tmp_path / "forever.db"), ttl=None, clock=clock),
    ):
        async with store:
            await store.register(entry(a))
            clock.now = T0 + 1e9
            assert [e.pk for e in await store.services(ServiceType.VPN)] == [a.pk]
            assert await store.purge_expired() == 0
        clock.now = T0


async def test_ttl_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            MemoryStore(ttl=bad)
        with pytest.raises(ValueError, match="ttl"):
            await open_store("sqlite", db=":memory:", ttl=bad)
    assert MemoryStore().ttl == DEFAULT_TTL == 300.0


async def test_sqlite_persists_across_reopen_and_reports_corruption(tmp_path: Path) -> None:
    path = str(tmp_path / "persist.db")
    a = KeyPair.generate()
    e = entry(a, country="DE")
    async with await open_store("sqlite", db=path) as store:
        await store.register(e)
        await store.nonce_store().increment(a.pk)
    async with await open_store("sqlite", db=path) as store:
        assert await store.get(ServiceType.VPN, a.pk) == e
        assert await store.nonce_store().nonce(a.pk) == 1
    import aiosqlite

    async with aiosqlite.connect(path) as conn:
        await conn.execute("UPDATE sd_services SET entry = '{\"address\":1}'")
        await conn.commit()
    async with await open_store("sqlite", db=path) as store:
        with pytest.raises(StoreError, match="corrupt"):
            await store.get(ServiceType.VPN, a.pk)


async def test_postgres_open_store_by_url() -> None:
    async with pg_schema() as (_pool, schema):
        a = KeyPair.generate()
        e = entry(a, ServiceType.VISOR, port=1, version="", ips=("203.0.113.7",))
        async with await open_store("postgres", pg_url=PG_URL, pg_schema=schema) as store:
            await store.register(e)
        # A second open over the existing tables sees the data.
        async with await open_store("postgres", pg_url=PG_URL, pg_schema=schema) as store:
            assert await store.get(ServiceType.VISOR, a.pk) == e


async def test_open_store_refuses_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown store"):
        await open_store("redis")


def test_keys_in_listing_order_are_the_raw_bytes_order() -> None:
    # Listings sort by key hex, which is the order of the raw bytes (lower-case hex).
    keys = [KeyPair.generate().pk for _ in range(20)]
    assert sorted(keys, key=PubKey.hex) == sorted(keys, key=lambda k: k.raw)
