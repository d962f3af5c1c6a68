"""One way for the services' Redis stores to connect: a bounded pool whose commands queue.

redis-py's default pool opens a connection per concurrent command and refuses one past its
limit at once ("Too many connections"); under a few hundred concurrent clients a service then
answered 500s. Here at most ``max_connections`` commands are in flight and the others wait up
to ``pool_timeout`` seconds for a free connection.
"""

from __future__ import annotations

import redis.asyncio as aioredis

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_POOL_TIMEOUT", "connect"]

DEFAULT_MAX_CONNECTIONS = 64
"""Connections one store opens to Redis at most."""
DEFAULT_POOL_TIMEOUT = 10.0
"""Seconds a command waits for a free connection before failing."""


async def connect(
    url: str,
    *,
    password: str | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
) -> aioredis.Redis:
    """A client on a bounded, queueing pool, pinged once; raises the client's connection error
    (and leaves nothing open) when Redis is not there."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, password=password, max_connections=max_connections, timeout=pool_timeout
    )
    client = aioredis.Redis.from_pool(pool)
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client
