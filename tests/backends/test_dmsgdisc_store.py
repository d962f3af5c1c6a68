"""One dmsg-discovery store suite over memory, SQLite and a real Redis.

Redis runs at redis://127.0.0.1:6379; every test gets its own key namespace, removed afterwards.
Expiry is tested with an injected clock on memory/SQLite and through Redis's own TTL on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from skywire.cipher import KeyPair, PubKey
from skywire.dmsg.disc_entry import ClientInfo, Entry, KeyNotFoundError, UnexpectedError, sign
from skywire.services.dmsgdisc.store import (
    CLIENT_ENTRY_TIMEOUT_TTL,
    SERVER_ENTRY_TTL,
    DiscStore,
    open_store,
)
from skywire.services.dmsgdisc.store.memory import MemoryStore
from skywire.services.dmsgdisc.store.redis import RedisStore
from skywire.services.dmsgdisc.store.sqlite import SqliteStore
from tests.conftest import backend_unavailable

REDIS_URL = "redis://127.0.0.1:6379"
SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


@dataclass
class Backend:
    name: str
    store: DiscStore
    clock: FakeClock
    redis: aioredis.Redis | None = None
    namespace: str = ""


@contextlib.asynccontextmanager
async def _redis_store() -> AsyncIterator[tuple[RedisStore, aioredis.Redis, str]]:
    """A RedisStore in a fresh key namespace, whose keys are all deleted afterwards."""
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        await raw.ping()
    except (aioredis.ConnectionError, OSError) as exc:
        await raw.aclose()
        backend_unavailable("redis", f"{REDIS_URL}: {exc}")
    namespace = f"skywire-test-{uuid.uuid4().hex}:"
    store = RedisStore(raw, namespace=namespace)
    try:
        yield store, raw, namespace
    finally:
        keys = [k async for k in raw.scan_iter(match=f"{namespace}*")]
        if keys:
            await raw.delete(*keys)
        await store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    clock = FakeClock()
    if request.param == "memory":
        store: DiscStore = MemoryStore(clock=clock)
        yield Backend("memory", store, clock)
        await store.close()
    elif request.param == "sqlite":
        store = await SqliteStore.open(str(tmp_path / "disc.db"), clock=clock)
        yield Backend("sqlite", store, clock)
        await store.close()
    else:
        async with _redis_store() as (rstore, raw, namespace):
            yield Backend("redis", rstore, clock, raw, namespace)


def _client(kp: KeyPair, seq: int = 0, servers: tuple[PubKey, ...] = (), **kw: object) -> Entry:
    entry = Entry.new_client(kp.pk, seq, servers, timestamp=T0 + seq)
    return sign(replace(entry, **kw), kp.sk)  # type: ignore[arg-type]


def _server(kp: KeyPair, sessions: int, seq: int = 0, addr: str = "1.2.3.4:8081") -> Entry:
    return sign(Entry.new_server(kp.pk, seq, addr, sessions, timestamp=T0 + seq), kp.sk)


async def test_set_get_round_trip_keeps_every_field(backend: Backend) -> None:
    store = backend.store
    a, b, srv = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    client = _client(a, 3, (srv.pk,), client_type="visor")
    nil_client = _client(b, 0, client=ClientInfo(None))
    server = _server(srv, 7)
    server = replace(server, server=replace(server.server, server_type="official"))  # type: ignore[arg-type]
    for e in (client, nil_client, server):
        await store.set(e)
    assert await store.get(a.pk) == client
    assert await store.get(b.pk) == nil_client
    assert (await store.get(b.pk)).client == ClientInfo(None)
    assert await store.get(srv.pk) == server


async def test_missing_key_and_delete(backend: Backend) -> None:
    store = backend.store
    kp = KeyPair.generate()
    with pytest.raises(KeyNotFoundError) as info:
        await store.get(kp.pk)
    assert info.value.code == 404
    await store.delete(kp.pk)  # deleting nothing is fine
    await store.set(_client(kp))
    await store.delete(kp.pk)
    with pytest.raises(KeyNotFoundError):
        await store.get(kp.pk)
    assert await store.client_pks() == []


async def test_replace_updates_the_entry(backend: Backend) -> None:
    store = backend.store
    kp, s = KeyPair.generate(), KeyPair.generate()
    await store.set(_client(kp, 0))
    newer = _client(kp, 1, (s.pk,))
    await store.set(newer)
    assert await store.get(kp.pk) == newer
    assert await store.client_pks() == [kp.pk]


async def test_listings(backend: Backend) -> None:
    store = backend.store
    clients = [KeyPair.generate() for _ in range(3)]
    servers = [KeyPair.generate() for _ in range(4)]
    await store.set(_client(clients[0], client_type="visor"))
    await store.set(_client(clients[1]))
    await store.set(_client(clients[2], client_type="app"))
    for kp, sessions in zip(servers, (5, 0, 100, 20), strict=True):
        await store.set(_server(kp, sessions))

    assert await store.client_pks() == sorted(kp.pk for kp in clients)
    assert await store.visor_client_pks() == [clients[0].pk]
    assert {e.static for e in await store.all_servers()} == {kp.pk for kp in servers}
    available = await store.available_servers()
    assert [e.server.available_sessions for e in available if e.server] == [100, 20, 5]
    assert [e.static for e in available] == [servers[2].pk, servers[3].pk, servers[0].pk]
    limited = await store.available_servers(2)
    assert len(limited) == 2
    assert all(e.static in {kp.pk for kp in servers} for e in limited)
    sessions = [e.server.available_sessions for e in limited if e.server]
    assert sessions == sorted(sessions, reverse=True)
    assert await store.count() == (4, 3)


async def test_empty_listings(backend: Backend) -> None:
    store = backend.store
    assert await store.client_pks() == []
    assert await store.visor_client_pks() == []
    assert await store.all_servers() == []
    assert await store.available_servers() == []
    assert await store.count() == (0, 0)
    await store.purge()


async def test_changing_kind_moves_the_key_between_listings(backend: Backend) -> None:
    store = backend.store
    kp = KeyPair.generate()
    await store.set(_client(kp, 0, client_type="visor"))
    await store.set(_server(kp, 3, seq=1))
    assert await store.client_pks() == []
    assert await store.visor_client_pks() == []
    assert [e.static for e in await store.all_servers()] == [kp.pk]
    await store.set(_client(kp, 2))
    assert await store.all_servers() == []
    assert await store.client_pks() == [kp.pk]


async def test_server_entries_expire_after_two_minutes(backend: Backend) -> None:
    store = backend.store
    kp = KeyPair.generate()
    await store.set(_server(kp, 5))
    if backend.redis is not None:
        ttl = await backend.redis.pttl(f"{backend.namespace}{kp.pk.hex()}")
        assert SERVER_ENTRY_TTL * 1000 - 5000 < ttl <= SERVER_ENTRY_TTL * 1000
        return
    backend.clock.advance(SERVER_ENTRY_TTL - 0.001)
    assert (await store.get(kp.pk)).static == kp.pk
    assert len(await store.available_servers()) == 1
    backend.clock.advance(0.001)
    with pytest.raises(KeyNotFoundError):
        await store.get(kp.pk)
    assert await store.all_servers() == []
    assert await store.available_servers() == []
    assert await store.count() == (0, 0)


async def test_server_ttl_restarts_on_every_write(backend: Backend) -> None:
    store = backend.store
    kp = KeyPair.generate()
    await store.set(_server(kp, 5))
    if backend.redis is not None:
        key = f"{backend.namespace}{kp.pk.hex()}"
        await backend.redis.pexpire(key, 1000)
        await store.set(_server(kp, 6, seq=1))
        assert await backend.redis.pttl(key) > SERVER_ENTRY_TTL * 1000 - 5000
        return
    backend.clock.advance(100)
    await store.set(_server(kp, 6, seq=1))
    backend.clock.advance(100)
    assert (await store.get(kp.pk)).sequence == 1


async def test_client_entries_do_not_expire_unless_asked(backend: Backend) -> None:
    store = backend.store
    forever, timed = KeyPair.generate(), KeyPair.generate()
    await store.set(_client(forever))
    await store.set(_client(timed), timeout=True)
    if backend.redis is not None:
        assert await backend.redis.pttl(f"{backend.namespace}{forever.pk.hex()}") == -1
        ttl = await backend.redis.pttl(f"{backend.namespace}{timed.pk.hex()}")
        assert CLIENT_ENTRY_TIMEOUT_TTL * 1000 - 5000 < ttl <= CLIENT_ENTRY_TIMEOUT_TTL * 1000
        return
    backend.clock.advance(CLIENT_ENTRY_TIMEOUT_TTL - 0.001)
    assert await store.client_pks() == sorted([forever.pk, timed.pk])
    backend.clock.advance(0.001)
    assert await store.client_pks() == [forever.pk]
    with pytest.raises(KeyNotFoundError):
        await store.get(timed.pk)
    backend.clock.advance(365 * 24 * 3600)
    assert (await store.get(forever.pk)).static == forever.pk


async def test_rewriting_a_server_as_a_client_clears_the_expiry(backend: Backend) -> None:
    store = backend.store
    kp = KeyPair.generate()
    await store.set(_server(kp, 5))
    await store.set(_client(kp, 1))
    if backend.redis is not None:
        assert await backend.redis.pttl(f"{backend.namespace}{kp.pk.hex()}") == -1
        return
    backend.clock.advance(SERVER_ENTRY_TTL * 10)
    assert (await store.get(kp.pk)).client is not None


async def test_purge_removes_what_expired(backend: Backend) -> None:
    store = backend.store
    gone, kept = KeyPair.generate(), KeyPair.generate()
    await store.set(_server(gone, 5))
    await store.set(_client(kept))
    if backend.redis is not None:
        # Redis expires the key itself; purge drops the index member left behind.
        await backend.redis.delete(f"{backend.namespace}{gone.pk.hex()}")
        assert await backend.redis.sismember(f"{backend.namespace}servers", gone.pk.hex())
        await store.purge()
        assert not await backend.redis.sismember(f"{backend.namespace}servers", gone.pk.hex())
        assert await store.client_pks() == [kept.pk]
        return
    backend.clock.advance(SERVER_ENTRY_TTL)
    await store.purge()
    backend.clock.now = T0  # turning the clock back shows the row is gone, not just hidden
    with pytest.raises(KeyNotFoundError):
        await store.get(gone.pk)
    assert await store.client_pks() == [kept.pk]


async def test_redis_layout_matches_upstream() -> None:
    async with _redis_store() as (store, r, ns):
        await _check_redis_layout(store, r, ns)


async def _check_redis_layout(store: RedisStore, r: aioredis.Redis, ns: str) -> None:
    c, s = KeyPair.generate(), KeyPair.generate()
    client = _client(c, client_type="visor")
    await store.set(client)
    await store.set(_server(s, 9))
    assert await r.get(f"{ns}{c.pk.hex()}") == client.to_json()
    assert await r.smembers(f"{ns}clients") == {c.pk.hex().encode()}
    assert await r.smembers(f"{ns}visorClients") == {c.pk.hex().encode()}
    assert await r.smembers(f"{ns}servers") == {s.pk.hex().encode()}
    # members whose key vanished are dropped when a listing meets them
    await r.delete(f"{ns}{c.pk.hex()}", f"{ns}{s.pk.hex()}")
    assert await store.client_pks() == []
    assert await store.visor_client_pks() == []
    assert await store.all_servers() == []
    for name in ("clients", "visorClients", "servers"):
        assert await r.scard(f"{ns}{name}") == 0
    # a corrupt payload is skipped in listings, and is an unexpected error on get
    await r.set(f"{ns}{s.pk.hex()}", b"{not json")
    await r.sadd(f"{ns}servers", s.pk.hex())
    assert await store.all_servers() == []
    with pytest.raises(UnexpectedError) as info:
        await store.get(s.pk)
    assert info.value.code == 500


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "persist.db")
    kp = KeyPair.generate()
    entry = _client(kp, 4, client_type="visor")
    async with await open_store("sqlite", db=path) as store:
        await store.set(entry)
    async with await open_store("sqlite", db=path) as store:
        assert await store.get(kp.pk) == entry
        assert await store.visor_client_pks() == [kp.pk]


async def test_sqlite_in_memory_and_factory(tmp_path: Path) -> None:
    async with await open_store("sqlite", db=":memory:") as store:
        assert isinstance(store, SqliteStore)
        await store.set(_server(KeyPair.generate(), 1))
        assert len(await store.all_servers()) == 1
    async with await open_store("memory") as store:
        assert isinstance(store, MemoryStore)
    with pytest.raises(ValueError):
        await open_store("postgres")


async def test_tombstones(backend: Backend) -> None:
    store = backend.store
    kp = KeyPair.generate()
    assert await store.tombstone(kp.pk) is None
    await store.bury(kp.pk, T0 + 5, T0 + 7, 60.0)
    assert await store.tombstone(kp.pk) == (T0 + 5, T0 + 7)
    await store.bury(kp.pk, T0 + 9, T0 + 11, 60.0)  # a later delete replaces it
    assert await store.tombstone(kp.pk) == (T0 + 9, T0 + 11)
    await store.unbury(kp.pk)
    await store.unbury(kp.pk)  # forgetting nothing is fine
    assert await store.tombstone(kp.pk) is None


async def test_redis_tombstones_are_shared_and_expire() -> None:
    async with _redis_store() as (store, raw, ns):
        other = RedisStore(aioredis.Redis.from_url(REDIS_URL), namespace=ns)
        try:
            kp = KeyPair.generate()
            await store.bury(kp.pk, T0, T0 + 1, 30.0)
            assert await other.tombstone(kp.pk) == (T0, T0 + 1)
            assert 0 < await raw.pttl(f"{ns}deleted:{kp.pk.hex()}") <= 30_000
            # a tombstone is no entry: listings and sets do not see it
            assert await other.client_pks() == []
            await raw.set(f"{ns}deleted:{kp.pk.hex()}", b"garbage")
            assert await other.tombstone(kp.pk) is None
            await other.unbury(kp.pk)
            assert await raw.exists(f"{ns}deleted:{kp.pk.hex()}") == 0
        finally:
            await other.close()


async def test_two_discovery_replicas_on_one_redis_share_deletes() -> None:
    """What one replica deletes, the other neither serves nor lets a captured copy restore."""
    from skywire.dmsg.disc_entry import WrongTimeError
    from skywire.services.dmsgdisc import DiscClient, DiscoveryServer

    async with _redis_store() as (store1, _raw, ns):
        store2 = RedisStore(aioredis.Redis.from_url(REDIS_URL), namespace=ns)
        clock = FakeClock()
        try:
            async with (
                DiscoveryServer(store1, clock=clock, purge_interval=None) as one,
                DiscoveryServer(store2, clock=clock, purge_interval=None) as two,
                DiscClient(one.url, clock=clock) as c1,
                DiscClient(two.url, clock=clock) as c2,
            ):
                kp = KeyPair.generate()
                first = _client(kp, 0)
                await c1.post_entry(first)
                assert await c2.get_entry(kp.pk) == first
                clock.advance(1)
                fresh = sign(replace(first, sequence=1, timestamp=clock()), kp.sk)
                await c2.delete_entry(fresh)
                with pytest.raises(KeyNotFoundError):
                    await c1.get_entry(kp.pk)
                for c in (c1, c2):
                    with pytest.raises(WrongTimeError):
                        await c.post_entry(first)
                with pytest.raises(KeyNotFoundError):
                    await c2.get_entry(kp.pk)
                clock.advance(1)
                newer = _client(kp, 0)
                newer = sign(replace(newer, timestamp=clock()), kp.sk)
                await c1.post_entry(newer)  # the holder may come back
                assert await c2.get_entry(kp.pk) == newer
        finally:
            await store2.close()


async def test_redis_store_queues_commands_beyond_its_connections() -> None:
    """More concurrent commands than connections wait for one instead of failing with
    "Too many connections" (a few hundred concurrent lookups used to answer 500)."""
    async with _redis_store() as (_store, _raw, ns):
        store = await RedisStore.open(REDIS_URL, namespace=ns, max_connections=2)
        try:
            kps = [KeyPair.generate() for _ in range(5)]
            for kp in kps:
                await store.set(_client(kp, 1))
            got = await asyncio.gather(*(store.get(kps[i % 5].pk) for i in range(200)))
            assert [e.static for e in got] == [kps[i % 5].pk for i in range(200)]
        finally:
            await store.close()


async def test_redis_listing_walks_large_sets_in_chunks() -> None:
    """More members than one pipeline chunk: every live key is listed, dangling ones dropped."""
    from skywire.services.dmsgdisc.store.redis import LIST_CHUNK

    async with _redis_store() as (store, r, ns):
        live = sorted(f"{i:066x}" for i in range(1, LIST_CHUNK + 50))
        dead = [f"{i:066x}" for i in range(LIST_CHUNK + 50, LIST_CHUNK + 80)]
        await r.sadd(f"{ns}clients", *live, *dead)
        await r.mset({f"{ns}{m}": b"{}" for m in live})
        # the member keys are no curve points: listings skip what does not parse as a key,
        # but the walk itself (existence) covers every chunk
        await store.client_pks()
        assert await r.scard(f"{ns}clients") == len(live)
        # the purge walks the set inside Redis, in several SSCAN steps
        await r.sadd(f"{ns}clients", *dead)
        store.purge_lease = 0
        await store.purge()
        assert sorted(m.decode() for m in await r.smembers(f"{ns}clients")) == live


async def test_redis_purge_runs_once_per_lease_across_replicas() -> None:
    async with _redis_store() as (store, r, ns):
        other = RedisStore(aioredis.Redis.from_url(REDIS_URL), namespace=ns, purge_lease=60)
        try:
            store.purge_lease = 60
            c1, c2 = KeyPair.generate(), KeyPair.generate()
            await store.set(_client(c1))
            await r.sadd(f"{ns}clients", c2.pk.hex())  # dangling: its key is gone
            await store.purge()
            assert await r.sismember(f"{ns}clients", c2.pk.hex()) == 0
            assert 0 < await r.pttl(f"{ns}purgeLease") <= 60_000
            await r.sadd(f"{ns}clients", c2.pk.hex())
            await other.purge()  # within the lease taken by the first replica: skipped
            assert await r.sismember(f"{ns}clients", c2.pk.hex()) == 1
            await r.delete(f"{ns}purgeLease")
            await other.purge()
            assert await r.sismember(f"{ns}clients", c2.pk.hex()) == 0
            assert await store.client_pks() == [c1.pk]
        finally:
            await other.close()
