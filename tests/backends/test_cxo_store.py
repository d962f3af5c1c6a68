"""One CXO store suite over the in-memory and SQLite backends."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skywire.cipher import SecKey
from skywire.cxo.objects import ZERO_HASH, Refs
from skywire.cxo.root import new_root
from skywire.cxo.store import (
    ChainError,
    CXOStore,
    HashMismatchError,
    MemoryStore,
    MissingObjectError,
    NoSuchFeedError,
    RootMeta,
    StoreError,
)
from skywire.cxo.store_sqlite import SqliteStore

SK = SecKey(hashlib.sha256(b"vector-key-1").digest())
FEED = SK.pubkey()
OTHER = SecKey(hashlib.sha256(b"vector-key-2").digest()).pubkey()


def obj(text: str) -> tuple[bytes, bytes]:
    data = text.encode()
    return hashlib.sha256(data).digest(), data


def meta(nonce: int, seq: int, prev: bytes = ZERO_HASH, time: int = 0, tag: str = "") -> RootMeta:
    h = hashlib.sha256(f"root-{nonce}-{seq}-{tag}".encode()).digest()
    return RootMeta(FEED, nonce, seq, h, prev, time=time)


def chain(nonce: int, n: int, time0: int = 0) -> list[RootMeta]:
    out: list[RootMeta] = []
    for seq in range(n):
        out.append(meta(nonce, seq, out[-1].hash if out else ZERO_HASH, time=time0 + seq))
    return out


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CXOStore]:
    s: CXOStore
    if request.param == "memory":
        s = MemoryStore(max_heads=3)
    else:
        s = await SqliteStore.open(str(tmp_path / "cxo.db"), max_heads=3)
    async with s:
        yield s


# --- objects ------------------------------------------------------------------------------------


async def test_put_get_counts_and_sweep(store: CXOStore) -> None:
    k, v = obj("a")
    assert await store.get(k) is None and await store.rc(k) is None
    assert await store.put(k, v) == 1
    assert await store.put(k, v) == 2
    assert await store.get(k) == v and await store.has(k)
    assert await store.inc(k, -2) == 0
    assert await store.get(k) == v  # count 0 stays until a sweep
    k2, v2 = obj("b")
    await store.put(k2, v2)
    assert await store.object_stats() == (2, 2)
    assert await store.sweep() == 1
    assert await store.get(k) is None and await store.get(k2) == v2


async def test_bad_objects_change_nothing(store: CXOStore) -> None:
    k, v = obj("a")
    k2, v2 = obj("b")
    with pytest.raises(HashMismatchError):
        await store.put_many([(k, v), (k2, b"not b")])
    assert await store.get(k) is None
    await store.put_many([(k, v), (k2, v2)])
    with pytest.raises(StoreError):
        await store.inc_many([k, k2, k2], -1)  # k2 would go below 0
    assert await store.rc(k) == 1 and await store.rc(k2) == 1
    with pytest.raises(MissingObjectError):
        await store.inc_many([k, obj("missing")[0]], 1)
    assert await store.rc(k) == 1


async def test_refs_objects_round_trip(store: CXOStore) -> None:
    hashes = [hashlib.sha256(str(i).encode()).digest() for i in range(300)]
    refs = Refs.from_hashes(hashes)
    await store.put_many(refs.flush())
    objects = {}
    for key, _ in refs.objects():
        data = await store.get(key)
        assert data is not None
        objects[key] = data
    assert list(Refs.load(refs.hash, objects.__getitem__)) == hashes


# --- index --------------------------------------------------------------------------------------


async def test_feeds(store: CXOStore) -> None:
    assert await store.feeds() == []
    await store.add_feed(FEED)
    await store.add_feed(FEED)
    await store.add_feed(OTHER)
    assert await store.feeds() == sorted([FEED, OTHER], key=lambda p: p.raw)
    assert await store.has_feed(FEED)
    with pytest.raises(NoSuchFeedError):
        await store.add_root(RootMeta(SecKey.generate().pubkey(), 1, 0, obj("r")[0]))


async def test_chain_per_head(store: CXOStore) -> None:
    await store.add_feed(FEED)
    r = chain(5, 3)
    for m in r:
        assert await store.add_root(m) == []
    assert await store.roots(FEED, 5) == r
    assert await store.last_root(FEED, 5) == r[2]
    assert await store.get_root(FEED, 5, 1) == r[1]
    assert await store.add_root(r[1]) == []  # the same Root again: nothing happens
    with pytest.raises(ChainError):  # another Root with a known seq
        await store.add_root(meta(5, 1, r[0].hash, tag="x"))
    with pytest.raises(ChainError):  # prev does not match seq 2
        await store.add_root(meta(5, 3, obj("wrong")[0]))
    with pytest.raises(ChainError):  # seq 0 with a prev
        await store.add_root(meta(6, 0, r[0].hash))
    # a gap is fine (a subscriber only sees some Roots), the links around it are still checked
    await store.add_root(meta(5, 10, obj("nine")[0]))
    with pytest.raises(ChainError):
        await store.add_root(meta(5, 9, r[2].hash))  # seq 10 does not point back to it
    assert [m.seq for m in await store.roots(FEED, 5)] == [0, 1, 2, 10]


async def test_full_flag_and_active_root(store: CXOStore) -> None:
    await store.add_feed(FEED)
    a = chain(1, 2, time0=100)
    b = chain(2, 1, time0=500)
    for m in a + b:
        await store.add_root(m)
    assert await store.active_root(FEED) == b[0]
    await store.set_full(FEED, 1, 1)
    got = await store.get_root(FEED, 1, 1)
    assert got is not None and got.full
    with pytest.raises(StoreError):
        await store.set_full(FEED, 1, 7)
    await store.add_feed(OTHER)
    assert await store.active_root(OTHER) is None


async def test_max_heads_evicts_least_recently_used(store: CXOStore) -> None:
    await store.add_feed(FEED)
    for nonce in (1, 2, 3):
        await store.add_root(meta(nonce, 0))
    assert await store.heads(FEED) == [1, 2, 3]
    await store.add_root(meta(1, 1, (await store.roots(FEED, 1))[0].hash))  # touch head 1
    assert await store.heads(FEED) == [2, 3, 1]
    evicted = await store.add_root(meta(4, 0))
    assert evicted == [meta(2, 0)]
    assert await store.heads(FEED) == [3, 1, 4]
    assert await store.roots(FEED, 2) == []


async def test_keep_last_and_delete(store: CXOStore) -> None:
    await store.add_feed(FEED)
    r = chain(9, 5)
    for m in r:
        await store.add_root(m)
    removed = await store.keep_last(FEED, 9, 2)
    assert removed == r[:3]
    assert await store.roots(FEED, 9) == r[3:]
    assert await store.del_root(FEED, 9, 3) == r[3]
    assert await store.del_root(FEED, 9, 3) is None
    assert await store.del_root(FEED, 9, 4) == r[4]
    assert await store.heads(FEED) == []  # the head went with its last Root
    for m in chain(9, 2):
        await store.add_root(m)
    assert await store.del_feed(FEED) == chain(9, 2)
    assert await store.feeds() == []
    with pytest.raises(NoSuchFeedError):
        await store.roots(FEED, 9)


async def test_u64_nonce_and_seq(store: CXOStore) -> None:
    await store.add_feed(FEED)
    big = 2**64 - 1
    await store.add_root(meta(big, 2**63 + 5, obj("p")[0]))
    await store.add_root(meta(big, 3, obj("q")[0]))
    assert [m.seq for m in await store.roots(FEED, big)] == [3, 2**63 + 5]
    assert await store.heads(FEED) == [big]
    with pytest.raises(StoreError):
        await store.add_root(meta(2**64, 0))


async def test_a_published_root_and_its_objects(store: CXOStore) -> None:
    """The flow a publisher follows: store objects, sign a Root, index it, count references."""
    await store.add_feed(FEED)
    k, v = obj("leaf")
    r0 = new_root(SK, nonce=1, time_ns=1)
    await store.put(r0.hash, r0.encode())
    await store.put(k, v)
    await store.add_root(RootMeta(FEED, 1, r0.seq, r0.hash, r0.prev, r0.sig, r0.time))
    r1 = new_root(SK, nonce=1, last=r0, time_ns=2)
    await store.put(r1.hash, r1.encode())
    await store.inc(k, 1)
    await store.add_root(RootMeta(FEED, 1, r1.seq, r1.hash, r1.prev, r1.sig, r1.time))
    for gone in await store.keep_last(FEED, 1, 1):
        await store.inc(gone.hash, -1)
        await store.inc(k, -1)
    assert await store.sweep() == 1  # r0's bytes
    assert await store.rc(k) == 1 and await store.get(r1.hash) == r1.encode()
    last = await store.last_root(FEED, 1)
    assert last is not None and last.sig == r1.sig


async def test_sqlite_persists(tmp_path: Path) -> None:
    path = str(tmp_path / "p.db")
    async with await SqliteStore.open(path) as s:
        await s.add_feed(FEED)
        await s.add_root(meta(1, 0))
        await s.put(*obj("x"))
    async with await SqliteStore.open(path) as s:
        assert await s.roots(FEED, 1) == [meta(1, 0)]
        assert await s.rc(obj("x")[0]) == 1
