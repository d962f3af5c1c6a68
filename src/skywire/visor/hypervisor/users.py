"""The hypervisor's accounts, in SQLite (``hypervisor.db_path``, by default
``<local_path>/users.db``): one table, a user name and the scrypt hash of its password.

Upstream keeps users in BoltDB and lets the first visitor create the account; so does this
(:meth:`UserDB.create` refuses once an account exists), and an operator can also set (or reset)
the password without the page: :func:`set_password` (``hypervisor.password`` in the config does
it at start). Hashing runs in a thread: scrypt is slow on purpose.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from skywire.visor.hypervisor.auth import (
    check_password,
    check_username,
    hash_password,
    verify_password,
)
from skywire.visor.hypervisor.errors import AccountError, BadLoginError

__all__ = ["DEFAULT_USER", "UserDB", "set_password"]

DEFAULT_USER = "admin"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (strftime('%s', 'now'))
);
"""


class UserDB:
    """``async with UserDB(path) as users:``; ``":memory:"`` for a throwaway one."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: aiosqlite.Connection | None = None
        self._write = asyncio.Lock()

    async def __aenter__(self) -> Self:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.executescript(_SCHEMA)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        if self.path != ":memory:":
            os.chmod(self.path, 0o600)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("UserDB is not open")
        return self._conn

    async def count(self) -> int:
        async with self.conn.execute("SELECT COUNT(*) FROM users") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _hash_of(self, name: str) -> str | None:
        async with self.conn.execute("SELECT password FROM users WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def create(self, name: str, password: str) -> None:
        """The first (and only) account; :class:`AccountError` (403) once one exists."""
        check_username(name)
        check_password(password)
        stored = await asyncio.to_thread(hash_password, password)
        async with self._write:
            if await self.count():
                error = AccountError("an account exists already: log in, or reset its password")
                error.status = 403
                raise error
            await self.conn.execute(
                "INSERT INTO users (name, password) VALUES (?, ?)", (name, stored)
            )

    async def set_password(self, name: str, password: str) -> None:
        """Set ``name``'s password, creating the account when there is none."""
        check_username(name)
        check_password(password)
        stored = await asyncio.to_thread(hash_password, password)
        async with self._write:
            await self.conn.execute(
                "INSERT INTO users (name, password) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET password = excluded.password",
                (name, stored),
            )

    async def verify(self, name: str, password: str) -> None:
        """Raises :class:`BadLoginError` unless ``password`` is ``name``'s (the same error and
        about the same time for an unknown name)."""
        stored = await self._hash_of(name)
        if stored is None:
            # spend the same work, so that timing does not tell which names exist
            await asyncio.to_thread(hash_password, password)
            raise BadLoginError()
        if not await asyncio.to_thread(verify_password, password, stored):
            raise BadLoginError()


async def set_password(path: str | Path, password: str, name: str = DEFAULT_USER) -> None:
    """Set (or reset) a hypervisor account's password in the database at ``path``."""
    async with UserDB(path) as users:
        await users.set_password(name, password)
