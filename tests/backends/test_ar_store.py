"""One address-resolver store suite over memory and a real Redis.

Redis runs at redis://127.0.0.1:6379; every test gets its own key namespace, removed afterwards.
Expiry is tested with an injected clock on memory and through Redis's own key expiry on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from skywire.cipher import KeyPair, PubKey
from skywire.services.ar.store import (
    ARStore,
    NoEntryError,
    UnknownTransportTypeError,
    VisorData,
    VisorDataError,
    open_store,
    parse_local_addresses,
)
from skywire.services.ar.store.memory import MemoryStore
from skywire.services.ar.store.redis import RedisStore
from tests.conftest import backend_unavailable

REDIS_URL = "redis://127.0.0.1:6379"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    name: str
    store: ARStore
    clock: FakeClock
    redis: aioredis.Redis | None = None
    namespace: str = ""

    async def expire_now(self, tp_type: str, pk: PubKey, ttl: float) -> None:
        """Make a bind written with ``ttl`` reach its end of life."""
        if self.redis is not None:
            assert isinstance(self.store, RedisStore)
            key = self.store.key(tp_type, pk)
            pttl = await self.redis.pttl(key)
            assert ttl * 1000 - 5000 < pttl <= ttl * 1000
            await self.redis.pexpireat(key, 1)  # a moment long past: Redis drops the key
        else:
            self.clock.advance(ttl)


@contextlib.asynccontextmanager
async def _redis_store() -> AsyncIterator[tuple[RedisStore, aioredis.Redis, str]]:
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


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    clock = FakeClock()
    if request.param == "memory":
        store = MemoryStore(clock=clock)
        yield Backend("memory", store, clock)
        await store.close()
    else:
        async with _redis_store() as (rstore, raw, namespace):
            yield Backend("redis", rstore, clock, raw, namespace)


def _pk() -> PubKey:
    return KeyPair.generate().pk


async def test_bind_resolve_round_trip(backend: Backend) -> None:
    pk = _pk()
    data = VisorData("203.0.113.7", "7777", ("203.0.113.7", "192.168.1.2"))
    await backend.store.bind("stcpr", pk, data)
    assert await backend.store.resolve("stcpr", pk) == data
    with pytest.raises(NoEntryError):
        await backend.store.resolve("sudph", pk)  # types are separate


async def test_rebind_replaces(backend: Backend) -> None:
    pk = _pk()
    await backend.store.bind("sudph", pk, VisorData("198.51.100.1:4000", "4000"))
    await backend.store.bind("sudph", pk, VisorData("198.51.100.1:4001", "4001"))
    assert (await backend.store.resolve("sudph", pk)).remote_addr == "198.51.100.1:4001"


async def test_del_bind(backend: Backend) -> None:
    pk, other = _pk(), _pk()
    await backend.store.bind("stcpr", pk, VisorData("203.0.113.7", "1"))
    await backend.store.bind("sudph", pk, VisorData("203.0.113.7:9", "9"))
    await backend.store.bind("stcpr", other, VisorData("203.0.113.8", "1"))
    await backend.store.del_bind("stcpr", pk)
    await backend.store.del_bind("stcpr", pk)  # deleting nothing is not an error
    with pytest.raises(NoEntryError):
        await backend.store.resolve("stcpr", pk)
    assert (await backend.store.resolve("sudph", pk)).port == "9"
    assert (await backend.store.resolve("stcpr", other)).port == "1"


async def test_get_all_and_transports(backend: Backend) -> None:
    a, b, c = _pk(), _pk(), _pk()
    assert await backend.store.transports() == {}
    await backend.store.bind("stcpr", a, VisorData("203.0.113.1", "1"))
    await backend.store.bind("stcpr", b, VisorData("203.0.113.2", "1"))
    await backend.store.bind("sudph", b, VisorData("203.0.113.2:5", "5"))
    await backend.store.bind("sudph", c, VisorData("203.0.113.3:5", "5"))
    assert await backend.store.get_all("stcpr") == sorted([a, b])
    assert await backend.store.get_all("sudph") == sorted([b, c])
    assert await backend.store.transports() == {"stcpr": sorted([a, b]), "sudph": sorted([b, c])}


async def test_binds_expire_after_their_ttl(backend: Backend) -> None:
    timed, forever = _pk(), _pk()
    await backend.store.bind("sudph", timed, VisorData("203.0.113.1:5", "5"), ttl=30)
    await backend.store.bind("sudph", forever, VisorData("203.0.113.2:5", "5"))
    backend.clock.advance(29.9)
    assert (await backend.store.resolve("sudph", timed)).port == "5"
    await backend.expire_now("sudph", timed, 30 - 29.9 if backend.redis is None else 30)
    with pytest.raises(NoEntryError):
        await backend.store.resolve("sudph", timed)
    assert await backend.store.get_all("sudph") == [forever]
    assert (await backend.store.resolve("sudph", forever)).port == "5"
    if backend.redis is not None:
        assert isinstance(backend.store, RedisStore)
        assert await backend.redis.pttl(backend.store.key("sudph", forever)) == -1


async def test_rebinding_restarts_the_ttl(backend: Backend) -> None:
    pk = _pk()
    data = VisorData("203.0.113.1:5", "5")
    await backend.store.bind("sudph", pk, data, ttl=30)
    backend.clock.advance(20)
    if backend.redis is not None:
        assert isinstance(backend.store, RedisStore)
        await backend.redis.pexpire(backend.store.key("sudph", pk), 1000)  # nearly gone
    await backend.store.bind("sudph", pk, data, ttl=30)  # a heartbeat
    backend.clock.advance(20)
    assert await backend.store.resolve("sudph", pk) == data
    await backend.expire_now("sudph", pk, 10 if backend.redis is None else 30)
    with pytest.raises(NoEntryError):
        await backend.store.resolve("sudph", pk)


async def test_unknown_types_are_refused(backend: Backend) -> None:
    pk = _pk()
    for call in (
        backend.store.bind("stcp", pk, VisorData()),
        backend.store.resolve("dmsg", pk),
        backend.store.del_bind("quic", pk),
        backend.store.get_all(""),
    ):
        with pytest.raises(UnknownTransportTypeError):
            await call
    assert await backend.store.transports() == {}


async def test_redis_layout_is_upstreams() -> None:
    async with _redis_store() as (store, raw, namespace):
        pk = _pk()
        await store.bind("stcpr", pk, VisorData("203.0.113.7", "7777", ("203.0.113.7",)))
        raw_value = await raw.get(f"{namespace}address-resolver:stcpr:{pk.hex()}")
        assert (
            raw_value == b'{"remote_addr":"203.0.113.7","port":"7777","addresses":["203.0.113.7"]}'
        )
        # A corrupt value written by someone else is an error, not a crash or a fake entry.
        await raw.set(store.key("sudph", pk), b"not json")
        with pytest.raises(Exception, match="corrupt"):
            await store.resolve("sudph", pk)


async def test_redis_store_queues_commands_beyond_its_connections() -> None:
    """More concurrent commands than connections wait for one (never "Too many
    connections"), and the store opens no more connections than it was given."""
    async with _redis_store() as (_store, raw, ns):
        before = len(await raw.client_list())
        store = await RedisStore.open(REDIS_URL, namespace=ns, max_connections=2)
        try:
            pks = [_pk() for _ in range(5)]
            await asyncio.gather(
                *(store.bind("stcpr", pk, VisorData("203.0.113.7", str(i))) for i, pk in
                  enumerate(pks) for _ in range(20))
            )  # fmt: skip
            got = await asyncio.gather(*(store.resolve("stcpr", pks[i % 5]) for i in range(200)))
            assert [d.port for d in got] == [str(i % 5) for i in range(200)]
            assert len(await raw.client_list()) - before <= 2
        finally:
            await store.close()


async def test_open_store_by_name() -> None:
    store = await open_store("memory")
    assert isinstance(store, MemoryStore)
    await store.close()
    with pytest.raises(ValueError):
        await open_store("sqlite")


def test_visor_data_json() -> None:
    data = VisorData("1.2.3.4:5", "5", ("10.0.0.2",), is_local=True)
    assert data.to_json() == (
        b'{"remote_addr":"1.2.3.4:5","is_local":true,"port":"5","addresses":["10.0.0.2"]}'
    )
    assert VisorData.from_json(data.to_json()) == data
    assert VisorData.from_json(b'{"remote_addr":"x","port":"1","addresses":null}').addresses == ()
    for bad in (b"[]", b"{", b'{"port":5}', b'{"addresses":"x"}', b'{"is_local":"yes"}'):
        with pytest.raises(VisorDataError):
            VisorData.from_json(bad)
    assert parse_local_addresses(b'{"port":"7777","addresses":["1.2.3.4"]}') == (
        "7777",
        ("1.2.3.4",),
    )
    with pytest.raises(VisorDataError):
        parse_local_addresses(b'{"port":7777}')
