"""Redis discovery store, laid out as upstream: so a Python and a Go discovery can share one DB.

* key ``<ns><pk hex>`` → entry JSON, with a real Redis expiry (``PX``) where the entry has a TTL;
* sets ``<ns>servers``, ``<ns>clients`` and ``<ns>visorClients`` index the keys;
* ``<ns>purgeLease`` (ours, short-lived) lets one discovery replica in a few seconds purge;
* ``<ns>deleted:<pk hex>`` → ``"<timestamp>:<buried_at>"`` is the tombstone of a deleted entry
  (ours, with an expiry), so that every discovery replica on this Redis refuses a copy captured
  before the delete.

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
from skywire.services.redispool import DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_TIMEOUT, connect

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_PURGE_LEASE",
    "LIST_CHUNK",
    "RedisStore",
]

log = logging.getLogger(__name__)

LIST_CHUNK = 2000
"""Keys checked per round trip when a listing or a purge walks an index set."""
PURGE_SCRIPT = """
local res = redis.call('SSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
local removed = 0
for _, m in ipairs(res[2]) do
  if redis.call('EXISTS', ARGV[1] .. m) == 0 then
    redis.call('SREM', KEYS[1], m)
    removed = removed + 1
  end
end
return {res[1], removed}
"""
"""One SSCAN step over an index set, dropping members whose entry key is gone, inside Redis
(a purge used to fetch every member and pipeline an EXISTS each: 7 s of CPU for 100k clients,
every 10 s). Entry keys are not declared in KEYS: fine on one Redis, not on a Redis Cluster."""
DEFAULT_PURGE_LEASE = 5.0
"""Seconds after a purge pass during which another pass on the same Redis is skipped."""


class RedisStore(DiscStore):
    """Entries in Redis. Open with :meth:`open`, or wrap an existing ``redis.asyncio`` client."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "",
        purge_lease: float = DEFAULT_PURGE_LEASE,
    ) -> None:
        self._r = client
        self.namespace = namespace
        self.purge_lease = purge_lease
        self.purge_key = f"{namespace}purgeLease"
        self._purge_step = client.register_script(PURGE_SCRIPT)
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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> RedisStore:
        """Connect and ping; raises the client's connection error when Redis is not there.

        At most ``max_connections`` commands are in flight; more wait up to ``pool_timeout``
        seconds for a connection (redis-py's default pool refuses them at once instead, which
        turned a few hundred concurrent lookups into 500 "Too many connections" answers).
        """
        client = await connect(
            url, password=password, max_connections=max_connections, pool_timeout=pool_timeout
        )
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

    def grave_key(self, pk: PubKey) -> str:
        """The Redis key holding the tombstone of ``pk``."""
        return f"{self.namespace}deleted:{pk.hex()}"

    async def bury(self, pk: PubKey, timestamp: int, buried_at: int, lifetime: float) -> None:
        px = max(1, int(lifetime * 1000))
        await self._r.set(self.grave_key(pk), f"{timestamp}:{buried_at}", px=px)

    async def tombstone(self, pk: PubKey) -> tuple[int, int] | None:
        raw = await self._r.get(self.grave_key(pk))
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            timestamp, buried_at = text.split(":")
            return int(timestamp), int(buried_at)
        except ValueError:
            log.warning("ignoring malformed tombstone %r of %s", text, pk)
            return None

    async def unbury(self, pk: PubKey) -> None:
        await self._r.delete(self.grave_key(pk))

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
        # EXISTS in pipelines of LIST_CHUNK keys: between two round trips the event loop
        # serves other requests (one 100k-command pipeline held it for seconds).
        exists: list[int] = []
        for start in range(0, len(members), LIST_CHUNK):
            async with self._r.pipeline(transaction=False) as pipe:
                for m in members[start : start + LIST_CHUNK]:
                    pipe.exists(self.key(m))
                exists.extend(await pipe.execute())
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
        """Drop index members whose key expired. Every discovery sharing this Redis runs it
        on a timer; the first in each ``purge_lease`` seconds takes a lease key and walks the
        sets, the others skip their pass (0: never skip)."""
        if self.purge_lease > 0:
            px = max(1, int(self.purge_lease * 1000))
            if not await self._r.set(self.purge_key, b"1", nx=True, px=px):
                return
        removed = 0
        for set_key in (self.servers_key, self.clients_key, self.visors_key):
            cursor = b"0"
            while True:
                cursor, n = await self._purge_step(
                    keys=[set_key], args=[self.namespace, cursor, LIST_CHUNK]
                )
                removed += int(n)
                if cursor in (b"0", "0", 0):
                    break
        if removed:
            log.debug("purge removed %d expired index members", removed)

    async def close(self) -> None:
        await self._r.aclose()
