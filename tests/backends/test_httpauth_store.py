"""One httpauth nonce-store suite over memory, SQLite and a real PostgreSQL.

PostgreSQL runs at postgresql://postgres@127.0.0.1:5432/test; every test gets its own schema,
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import asyncpg  # type: ignore[import-untyped]
import pytest

from skywire.cipher import KeyPair
from skywire.services.httpauth import (
    MemoryNonceStore,
    NonceStore,
    PostgresNonceStore,
    SqliteNonceStore,
)
from tests.conftest import backend_unavailable

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.asynccontextmanager
async def pg_schema() -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A pool and a fresh schema, dropped (with everything in it) afterwards."""
    try:
        pool = await asyncpg.create_pool(PG_URL, min_size=1, max_size=4, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        backend_unavailable("postgres", f"{PG_URL}: {exc}")
        raise  # unreachable: backend_unavailable skips or fails
    schema = f"sw_test_{uuid.uuid4().hex[:16]}"
    try:
        await pool.execute(f'CREATE SCHEMA "{schema}"')
        yield pool, schema
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NonceStore]:
    if request.param == "memory":
        yield MemoryNonceStore()
    elif request.param == "sqlite":
        s = await SqliteNonceStore.open(str(tmp_path / "nonces.db"))
        yield s
        await s.close()
    else:
        async with pg_schema() as (pool, schema):
            await PostgresNonceStore.create_schema(pool, schema)
            yield PostgresNonceStore(pool, schema=schema)


async def test_unknown_key_starts_at_zero(store: NonceStore) -> None:
    kp = KeyPair.generate()
    assert await store.nonce(kp.pk) == 0
    assert await store.count() == 0


async def test_increment_is_per_key_and_strictly_increasing(store: NonceStore) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    assert [await store.increment(a.pk) for _ in range(3)] == [1, 2, 3]
    assert await store.nonce(a.pk) == 3
    assert await store.nonce(b.pk) == 0
    assert await store.increment(b.pk) == 1
    assert await store.count() == 2


async def test_concurrent_increments_are_not_lost(store: NonceStore) -> None:
    kp = KeyPair.generate()
    results = await asyncio.gather(*(store.increment(kp.pk) for _ in range(25)))
    assert sorted(results) == list(range(1, 26))
    assert await store.nonce(kp.pk) == 25


async def test_sqlite_namespaces_share_a_database_without_sharing_nonces(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(str(tmp_path / "shared.db"), isolation_level=None)
    try:
        await SqliteNonceStore.create_schema(conn)
        tpd = SqliteNonceStore(conn, namespace="tpd")
        ar = SqliteNonceStore(conn, namespace="ar")
        kp = KeyPair.generate()
        await tpd.increment(kp.pk)
        assert await tpd.nonce(kp.pk) == 1
        assert await ar.nonce(kp.pk) == 0
        await tpd.close()  # shared: does not close the connection
        assert await ar.increment(kp.pk) == 1
    finally:
        await conn.close()


async def test_sqlite_nonces_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "persist.db")
    kp = KeyPair.generate()
    async with await SqliteNonceStore.open(path) as s:
        await s.increment(kp.pk)
        await s.increment(kp.pk)
    async with await SqliteNonceStore.open(path) as s:
        assert await s.nonce(kp.pk) == 2


async def test_postgres_nonces_survive_reopen_and_namespaces() -> None:
    async with pg_schema() as (pool, schema):
        kp = KeyPair.generate()
        first = await PostgresNonceStore.open(PG_URL, schema=schema, namespace="tpd")
        async with first:
            assert await first.increment(kp.pk) == 1
        again = await PostgresNonceStore.open(PG_URL, schema=schema, namespace="tpd")
        other = PostgresNonceStore(pool, schema=schema, namespace="ar")
        async with again:
            assert await again.nonce(kp.pk) == 1
            assert await other.nonce(kp.pk) == 0


def test_schema_names_are_checked() -> None:
    from skywire.services.httpauth import pg_qualified

    assert pg_qualified(None, "t") == "t"
    assert pg_qualified("abc_1", "t") == '"abc_1".t'
    for bad in ('x"; DROP TABLE y; --', "1abc", "a b", "a" * 64):
        with pytest.raises(ValueError):
            pg_qualified(bad, "t")
