"""One uptime tracker store suite over memory, SQLite and a real PostgreSQL.

PostgreSQL runs at postgresql://postgres@127.0.0.1:5432/test; every test gets its own schema,
dropped afterwards (``SKYWIRE_REQUIRE_BACKENDS=1`` turns an absent server into a failure). Time
is an argument: heartbeats are stamped with chosen times, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skywire.cipher import KeyPair
from skywire.services.ut.store import UptimeStore, VisorNotFoundError, open_store
from skywire.services.ut.store.memory import MemoryStore
from skywire.services.ut.store.postgres import PostgresStore
from skywire.services.ut.store.sqlite import SqliteStore
from skywire.services.ut.uptime import Credit, day_start
from tests.backends.test_httpauth_store import PG_URL, pg_schema

MIDNIGHT = day_start("2023-11-15")
TOL = 600.0


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UptimeStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        s = await SqliteStore.open(str(tmp_path / "ut.db"))
        yield s
        await s.close()
    else:
        async with pg_schema() as (pool, schema):
            await PostgresStore.create_schema(pool, schema)
            yield PostgresStore(pool, schema=schema)


async def test_heartbeats_credit_the_gaps_between_them(store: UptimeStore) -> None:
    a = KeyPair.generate().pk
    assert await store.heartbeat(a, "v1", MIDNIGHT - 400, TOL) == []  # the first
    assert await store.heartbeat(a, "v1", MIDNIGHT - 100, TOL) == [Credit("2023-11-14", 300.0)]
    got = await store.heartbeat(a, "v2", MIDNIGHT + 200, TOL)
    assert got == [Credit("2023-11-14", 100.0), Credit("2023-11-15", 200.0)]
    assert await store.heartbeat(a, "v2", MIDNIGHT + 2000, TOL) == []  # away for 30 minutes
    assert await store.heartbeat(a, "v2", MIDNIGHT + 2300, TOL) == [Credit("2023-11-15", 300.0)]
    assert await store.daily([a], "2023-11-01") == {a: {"2023-11-14": 400.0, "2023-11-15": 500.0}}
    assert await store.daily(None, "2023-11-15") == {a: {"2023-11-15": 500.0}}
    [rec] = await store.visors([a])
    assert (rec.pk, rec.version, rec.first_seen, rec.last_seen) == (
        a,
        "v2",
        MIDNIGHT - 400,
        MIDNIGHT + 2300,
    )


async def test_listing_is_by_key_and_only_known_visors(store: UptimeStore) -> None:
    keys = [KeyPair.generate().pk for _ in range(4)]
    for i, pk in enumerate(keys[:3]):
        await store.heartbeat(pk, f"v{i}", MIDNIGHT + i, TOL)
    listed = await store.visors()
    assert [r.pk for r in listed] == sorted(keys[:3], key=lambda k: k.raw)
    assert [r.pk for r in await store.visors([keys[3], keys[1]])] == [keys[1]]
    assert await store.visors([keys[3]]) == []
    assert await store.daily([keys[3]], "2000-01-01") == {}


async def test_uptimes_over_a_window(store: UptimeStore) -> None:
    a, b = KeyPair.generate().pk, KeyPair.generate().pk
    t = MIDNIGHT - 900
    while t <= MIDNIGHT + 900:  # every 5 minutes from 23:45 to 00:15
        await store.heartbeat(a, "v1", t, TOL)
        t += 300
    await store.heartbeat(b, "v1", MIDNIGHT, TOL)
    now = MIDNIGHT + 1200
    found = await store.uptimes(None, now, days=2, tolerance=TOL)
    assert [u.pk for u in found] == sorted([a, b], key=lambda k: k.raw)
    ua = await store.uptime(a, now, 2, TOL)
    assert [(d.day, d.up) for d in ua.days] == [("2023-11-14", 900.0), ("2023-11-15", 900.0)]
    assert ua.online and ua.up == 1800.0
    ub = await store.uptime(b, now, 2, TOL)
    assert [(d.day, d.up) for d in ub.days] == [("2023-11-15", 0.0)]  # seen today only
    assert not (await store.uptime(b, now + TOL, 2, TOL)).online
    with pytest.raises(VisorNotFoundError) as info:
        await store.uptime(KeyPair.generate().pk, now, 2, TOL)
    assert info.value.status == 404


async def test_concurrent_heartbeats_credit_a_gap_once(store: UptimeStore) -> None:
    a = KeyPair.generate().pk
    await store.heartbeat(a, "v1", MIDNIGHT, TOL)
    got = await asyncio.gather(*(store.heartbeat(a, "v1", MIDNIGHT + 300, TOL) for _ in range(8)))
    assert sum(sum(c.seconds for c in g) for g in got) == 300.0
    assert await store.daily([a], "2023-11-15") == {a: {"2023-11-15": 300.0}}


async def test_purge_drops_old_days_and_visors_gone_since(store: UptimeStore) -> None:
    old, live = KeyPair.generate().pk, KeyPair.generate().pk
    for pk in (old, live):
        await store.heartbeat(pk, "v1", MIDNIGHT - 2 * 86400, TOL)
        await store.heartbeat(pk, "v1", MIDNIGHT - 2 * 86400 + 300, TOL)
    await store.heartbeat(live, "v1", MIDNIGHT + 10, TOL)
    await store.heartbeat(live, "v1", MIDNIGHT + 310, TOL)
    dropped = await store.purge_before("2023-11-15")
    assert dropped == 3  # live's old day, old's day and old's record
    assert [r.pk for r in await store.visors()] == [live]
    assert await store.daily(None, "2000-01-01") == {live: {"2023-11-15": 300.0}}
    assert await store.purge_before("2023-11-15") == 0


async def test_nonces_are_kept_alongside(store: UptimeStore) -> None:
    a = KeyPair.generate().pk
    nonces = store.nonce_store()
    assert await nonces.nonce(a) == 0
    assert await nonces.increment(a) == 1
    assert await store.nonce_store().nonce(a) == 1


async def test_two_postgres_replicas_share_the_accounting() -> None:
    async with pg_schema() as (_, schema):
        first = await open_store("postgres", pg_url=PG_URL, pg_schema=schema)
        second = await open_store("postgres", pg_url=PG_URL, pg_schema=schema)
        async with first, second:
            a = KeyPair.generate().pk
            await first.heartbeat(a, "v1", MIDNIGHT, TOL)
            got = await asyncio.gather(
                *(s.heartbeat(a, "v1", MIDNIGHT + 300, TOL) for s in (first, second) * 4)
            )
            assert sum(len(g) for g in got) == 1
            assert await second.daily([a], "2023-11-15") == {a: {"2023-11-15": 300.0}}


async def test_sqlite_keeps_uptimes_across_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "ut.db")
    a = KeyPair.generate().pk
    async with await open_store("sqlite", db=path) as s:
        await s.heartbeat(a, "v1", MIDNIGHT, TOL)
        await s.heartbeat(a, "v1", MIDNIGHT + 300, TOL)
        await s.nonce_store().increment(a)
    async with await open_store("sqlite", db=path) as s:
        assert await s.heartbeat(a, "v1", MIDNIGHT + 600, TOL) == [Credit("2023-11-15", 300.0)]
        assert await s.daily([a], "2023-11-15") == {a: {"2023-11-15": 600.0}}
        assert await s.nonce_store().nonce(a) == 1
