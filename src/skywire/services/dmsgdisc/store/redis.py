"""Redis discovery store, laid out as upstream: so a Python and a Go discovery can share one DB.

* key ``<ns><pk hex>`` → entry JSON, with a real Redis expiry (``PX``) where the entry has a TTL;
* sets ``<ns>servers``, ``<ns>clients`` and ``<ns>visorClients`` index the keys.

The namespace is empty by default (the upstream layout); tests give each run its own. Set members
whose key has expired are removed whenever a listing meets them, and by :meth:`RedisStore.purge`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as aioredis

from skywire.cipher import CipherError, PubKey
from skywire.dmsg.disc_entry import DiscError, Entry, KeyNotFoundError, UnexpectedError, parse_entry
from skywire.services.dmsgdisc.store import DiscStore, entry_ttl

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)


class RedisStore(DiscStore):
    """Entries in Redis. Open with :meth:`open`, or wrap an existing ``redis.asyncio`` client."""

    def __init__(self, client: aioredis.Redis, *, namespace: str = "") -> None:
        self._r = client
        self.namespace = namespace
        self.servers_key = f"{namespace}servers"
        self.clients_key = f"{namespace}clients"
        self.visors_key = f"{namespace}visorClients"

    @classmethod
    async def open(
        cls,
        url: str = "redis://localhost:6379",
        *,
        namespace: str = "",
        password: str | None = None,
    ) -> RedisStore:
        """Connect and ping; raises the client's connection error when Redis is not there."""
        client = aioredis.Redis.from_url(url, password=password)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return cls(client, namespace=namespace)

    def key(self, pk: PubKey | str) -> str:
        """The Redis key holding the entry of ``pk``."""
        return f"{self.namespace}{pk if isinstance(pk, str) else pk.hex()}"

    async def get(self, pk: PubKey) -> Entry:
        payload = await self._r.get(self.key(pk))
        if payload is None:
            raise KeyNotFoundError()
        try:
            return parse_entry(payload)
        except DiscError as exc:
            log.warning("stored entry of %s does not parse: %s", pk, exc)
            raise UnexpectedError(f"stored entry of {pk} is corrupt") from exc

    async def set(self, entry: Entry, *, timeout: bool = False) -> None:
        ttl = entry_ttl(entry, timeout)
        pk = entry.static.hex()
        async with self._r.pipeline(transaction=True) as pipe:
            # SET without PX also clears an expiry left by an earlier (server) entry.
            pipe.set(self.key(pk), entry.to_json(), px=None if ttl is None else int(ttl * 1000))
            for set_key, member in (
                (self.servers_key, entry.server is not None),
                (self.clients_key, entry.client is not None),
                (self.visors_key, entry.is_visor),
            ):
                if member:
                    pipe.sadd(set_key, pk)
                else:
                    pipe.srem(set_key, pk)
            await pipe.execute()

    async def delete(self, pk: PubKey) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(pk))
            for set_key in (self.servers_key, self.clients_key, self.visors_key):
                pipe.srem(set_key, pk.hex())
            await pipe.execute()

    async def _members(self, set_key: str) -> list[str]:
        raw = await self._r.smembers(set_key)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)

    async def _drop_dangling(self, set_key: str, members: Sequence[str]) -> None:
        if members:
            log.debug("removing %d expired members from %s", len(members), set_key)
            await self._r.srem(set_key, *members)

    async def _live_pks(self, set_key: str) -> list[PubKey]:
        members = await self._members(set_key)
        if not members:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for m in members:
                pipe.exists(self.key(m))
            exists = await pipe.execute()
        gone = [m for m, n in zip(members, exists, strict=True) if not n]
        await self._drop_dangling(set_key, gone)
        out: list[PubKey] = []
        for m, n in zip(members, exists, strict=True):
            if n:
                try:
                    out.append(PubKey.from_hex(m))
                except CipherError:
                    log.warning("ignoring malformed member %r of %s", m, set_key)
        return out

    async def client_pks(self) -> list[PubKey]:
        return await self._live_pks(self.clients_key)

    async def visor_client_pks(self) -> list[PubKey]:
        return await self._live_pks(self.visors_key)

    async def all_servers(self) -> list[Entry]:
        members = await self._members(self.servers_key)
        if not members:
            return []
        payloads = await self._r.mget([self.key(m) for m in members])
        await self._drop_dangling(
            self.servers_key, [m for m, p in zip(members, payloads, strict=True) if p is None]
        )
        out: list[Entry] = []
        for m, payload in zip(members, payloads, strict=True):
            if payload is None:
                continue
            try:
                entry = parse_entry(payload)
            except DiscError as exc:
                log.warning("skipping stored entry of %s: %s", m, exc)
                continue
            if entry.server is not None:
                out.append(entry)
        return out

    async def count(self) -> tuple[int, int]:
        return len(await self.all_servers()), len(await self.client_pks())

    async def purge(self) -> None:
        await self.all_servers()
        await self.client_pks()
        await self.visor_client_pks()

    async def close(self) -> None:
        await self._r.aclose()
