"""Redis address-resolver store, laid out as upstream so a Python and a Go resolver can share a DB:
key ``<ns>address-resolver:<type>:<pk hex>`` → :class:`~skywire.services.ar.store.VisorData`
JSON, with a real Redis expiry. The namespace is empty by default (the upstream layout); tests
give each run their own.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from skywire.cipher import CipherError, PubKey
from skywire.services.ar.store import (
    ARStore,
    ARStoreError,
    NoEntryError,
    VisorData,
    VisorDataError,
    check_type,
)
from skywire.services.redispool import DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_TIMEOUT, connect

__all__ = ["SERVICE_NAME", "RedisStore"]

log = logging.getLogger(__name__)

SERVICE_NAME = "address-resolver"


class RedisStore(ARStore):
    """Binds in Redis. Open with :meth:`open`, or wrap an existing ``redis.asyncio`` client
    (which :meth:`close` then closes)."""

    def __init__(self, client: aioredis.Redis, *, namespace: str = "") -> None:
        self._r = client
        self.namespace = namespace

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
        At most ``max_connections`` commands are in flight; more wait for a connection
        (:mod:`skywire.services.redispool`)."""
        client = await connect(
            url, password=password, max_connections=max_connections, pool_timeout=pool_timeout
        )
        return cls(client, namespace=namespace)

    def key(self, tp_type: str, pk: PubKey) -> str:
        """The Redis key of a bind."""
        return f"{self.namespace}{SERVICE_NAME}:{tp_type}:{pk.hex()}"

    async def bind(
        self, tp_type: str, pk: PubKey, data: VisorData, *, ttl: float | None = None
    ) -> None:
        check_type(tp_type)
        px = None if ttl is None else max(1, int(ttl * 1000))
        await self._r.set(self.key(tp_type, pk), data.to_json(), px=px)

    async def del_bind(self, tp_type: str, pk: PubKey) -> None:
        check_type(tp_type)
        await self._r.delete(self.key(tp_type, pk))

    async def resolve(self, tp_type: str, pk: PubKey) -> VisorData:
        check_type(tp_type)
        raw = await self._r.get(self.key(tp_type, pk))
        if raw is None:
            raise NoEntryError()
        try:
            return VisorData.from_json(raw)
        except VisorDataError as exc:
            raise ARStoreError(f"stored bind of {pk} ({tp_type}) is corrupt: {exc}") from exc

    async def get_all(self, tp_type: str) -> list[PubKey]:
        check_type(tp_type)
        prefix = f"{self.namespace}{SERVICE_NAME}:{tp_type}:"
        out: list[PubKey] = []
        async for raw in self._r.scan_iter(match=prefix + "*", count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                out.append(PubKey.from_hex(key[len(prefix) :]))
            except CipherError:
                log.warning("ignoring malformed key %r", key)
        return sorted(set(out))

    async def close(self) -> None:
        await self._r.aclose()
