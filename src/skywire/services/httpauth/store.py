"""httpauth's nonce stores: the next expected nonce per public key, behind one ABC
(:class:`NonceStore`) with three backends (:class:`MemoryNonceStore`, :class:`SqliteNonceStore`,
:class:`PostgresNonceStore`), each able to share a service's own database under a namespace.
"""

from __future__ import annotations

import abc
import re
from types import TracebackType
from typing import TYPE_CHECKING, Self

from skywire.cipher import PubKey
from skywire.services.httpauth.sign import MAX_NONCE

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg  # type: ignore[import-untyped]

__all__ = [
    "MemoryNonceStore",
    "NonceStore",
    "PostgresNonceStore",
    "SqliteNonceStore",
    "pg_qualified",
]


class NonceStore(abc.ABC):
    """Next expected nonce per public key (0 for a key never seen)."""

    @abc.abstractmethod
    async def nonce(self, pk: PubKey) -> int:
        """The next nonce ``pk`` must use."""

    @abc.abstractmethod
    async def increment(self, pk: PubKey) -> int:
        """Consume ``pk``'s current nonce; returns the new next nonce."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many keys have a stored nonce."""

    async def close(self) -> None:  # noqa: B027 - most backends own nothing
        """Release what this store owns (nothing when it shares a service's database)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class MemoryNonceStore(NonceStore):
    """Nonces in a dict (tests, ``--store memory``)."""

    def __init__(self) -> None:
        self._nonces: dict[PubKey, int] = {}

    async def nonce(self, pk: PubKey) -> int:
        return self._nonces.get(pk, 0)

    async def increment(self, pk: PubKey) -> int:
        value = (self._nonces.get(pk, 0) + 1) & MAX_NONCE
        self._nonces[pk] = value
        return value

    async def count(self) -> int:
        return len(self._nonces)


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS httpauth_nonces (
    namespace TEXT NOT NULL,
    pk        TEXT NOT NULL,
    nonce     INTEGER NOT NULL,
    PRIMARY KEY (namespace, pk)
);
"""


class SqliteNonceStore(NonceStore):
    """Nonces in an SQLite table ``httpauth_nonces``, possibly in a service's own database.

    Build it over an open connection (shared; not closed here) after :meth:`create_schema`, or
    :meth:`open` a file of its own. Every operation is one statement, so it is atomic.
    ``namespace`` keeps services sharing one database from sharing nonces.
    """

    def __init__(
        self, conn: aiosqlite.Connection, *, namespace: str = "", owns_connection: bool = False
    ) -> None:
        self._db = conn
        self._namespace = namespace
        self._owns = owns_connection

    @staticmethod
    async def create_schema(conn: aiosqlite.Connection) -> None:
        await conn.executescript(_SQLITE_SCHEMA)

    @classmethod
    async def open(cls, path: str, *, namespace: str = "") -> SqliteNonceStore:
        import aiosqlite

        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
            await cls.create_schema(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, namespace=namespace, owns_connection=True)

    async def nonce(self, pk: PubKey) -> int:
        async with self._db.execute(
            "SELECT nonce FROM httpauth_nonces WHERE namespace = ? AND pk = ?",
            (self._namespace, pk.hex()),
        ) as cur:
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def increment(self, pk: PubKey) -> int:
        async with self._db.execute(
            "INSERT INTO httpauth_nonces (namespace, pk, nonce) VALUES (?, ?, 1) "
            "ON CONFLICT (namespace, pk) DO UPDATE SET nonce = nonce + 1 RETURNING nonce",
            (self._namespace, pk.hex()),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def count(self) -> int:
        async with self._db.execute(
            "SELECT COUNT(*) FROM httpauth_nonces WHERE namespace = ?", (self._namespace,)
        ) as cur:
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def close(self) -> None:
        if self._owns:
            await self._db.close()


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def pg_qualified(schema: str | None, table: str) -> str:
    """``"schema".table`` (or ``table``) after checking the schema is a plain identifier."""
    if schema is None or schema == "":
        return table
    if not _IDENT_RE.fullmatch(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return f'"{schema}".{table}'


class PostgresNonceStore(NonceStore):
    """Nonces in a PostgreSQL table ``httpauth_nonces`` (``schema`` optional).

    Build it over a pool (shared; not closed here) after :meth:`create_schema`, or :meth:`open`
    a pool of its own. ``namespace`` keeps services sharing one database from sharing nonces.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str | None = None,
        namespace: str = "",
        owns_pool: bool = False,
    ) -> None:
        self._pool = pool
        self._table = pg_qualified(schema, "httpauth_nonces")
        self._namespace = namespace
        self._owns = owns_pool

    @staticmethod
    async def create_schema(pool: asyncpg.Pool, schema: str | None = None) -> None:
        table = pg_qualified(schema, "httpauth_nonces")
        await pool.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "namespace TEXT NOT NULL, pk TEXT NOT NULL, nonce NUMERIC(20, 0) NOT NULL, "
            "PRIMARY KEY (namespace, pk))"
        )

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, namespace: str = ""
    ) -> PostgresNonceStore:
        import asyncpg

        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            await cls.create_schema(pool, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema=schema, namespace=namespace, owns_pool=True)

    async def nonce(self, pk: PubKey) -> int:
        value = await self._pool.fetchval(
            f"SELECT nonce FROM {self._table} WHERE namespace = $1 AND pk = $2",
            self._namespace,
            pk.hex(),
        )
        return 0 if value is None else int(value)

    async def increment(self, pk: PubKey) -> int:
        value = await self._pool.fetchval(
            f"INSERT INTO {self._table} AS t (namespace, pk, nonce) VALUES ($1, $2, 1) "
            "ON CONFLICT (namespace, pk) DO UPDATE SET nonce = t.nonce + 1 RETURNING nonce",
            self._namespace,
            pk.hex(),
        )
        return int(value)

    async def count(self) -> int:
        value = await self._pool.fetchval(
            f"SELECT COUNT(*) FROM {self._table} WHERE namespace = $1", self._namespace
        )
        return int(value or 0)

    async def close(self) -> None:
        if self._owns:
            await self._pool.close()
