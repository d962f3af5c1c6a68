"""The setup node's connections to hops (``RPCGateway`` on dmsg port 136), pooled.

* a dial failing with dmsg error 202 is retried up to ``attempts`` times with linear backoff,
  each attempt a full dial (the dmsg client re-runs its server selection); other errors and
  cancellation return at once;
* a visor whose dial just failed every attempt is remembered as unreachable for a few seconds
  (``unreachable_for``): meanwhile a dial to it is one attempt, so the set-ups that meet a dead
  visor in the seconds before its transports leave the route finder's answers fail fast and
  are re-planned by their requesters, instead of each paying the whole backoff;
* a call on a pooled connection that turns out dead ("connection is shut down", EOF,
  unexpected EOF, closed connection) is re-dialled **once** and the fresh client replaces the
  pooled one; a hop that is really gone still fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from skywire.cipher import PubKey
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.router.gateway import GATEWAY_PORT
from skywire.services.rsn.stats import SetupStats
from skywire.wire.netrpc import RPCClient, RPCConnectionShutdown, RPCServerError
from skywire.wire.stream import ByteStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = ["Dial", "HopDialError", "HopPool", "is_stale_connection_error"]

log = logging.getLogger(__name__)

Dial = Callable[[PubKey, int], Awaitable[ByteStream]]

CALL_TIMEOUT = 10.0
DIAL_ATTEMPTS = 3
# 0.25 s then 0.5 s: long enough for a visor to reconnect to a restarted relay (tens of ms),
# short enough that a set-up meeting a visor that just died fails within a second
DIAL_BACKOFF = 0.25
POOL_TTL = 60.0
UNREACHABLE_FOR = 5.0
_STALE_TEXT = (
    "connection is shut down",
    "unexpected eof",
    "eof",
    "closed connection",
    "use of closed network connection",
    "connection closed",
)


class HopDialError(ConnectionError):
    """A hop could not be dialled on port 136 (after the allowed retries)."""

    def __init__(self, pk: PubKey, cause: BaseException, attempts: int) -> None:
        super().__init__(f"dial {pk}: {cause} (attempts: {attempts})")
        self.pk = pk
        self.cause = cause
        self.attempts = attempts


def is_stale_connection_error(exc: BaseException) -> bool:
    """True for the errors a dead pooled connection produces (PR #3042, #4116)."""
    if isinstance(exc, RPCServerError | HopDialError | TimeoutError):
        return False
    if isinstance(
        exc,
        RPCConnectionShutdown | EOFError | asyncio.IncompleteReadError | ConnectionResetError,
    ):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _STALE_TEXT)


@dataclass
class _Pooled:
    client: RPCClient
    last_used: float


class HopPool:
    """Pooled net/rpc clients to hops' ``RPCGateway`` (setup node → visor, dmsg port 136)."""

    def __init__(
        self,
        dial: Dial,
        *,
        port: int = GATEWAY_PORT,
        attempts: int = DIAL_ATTEMPTS,
        backoff: float = DIAL_BACKOFF,
        call_timeout: float = CALL_TIMEOUT,
        ttl: float = POOL_TTL,
        unreachable_for: float = UNREACHABLE_FOR,
        stats: SetupStats | None = None,
    ) -> None:
        self._dial_fn = dial
        self.port = port
        self.attempts = max(attempts, 1)
        self.backoff = backoff
        self.call_timeout = call_timeout
        self.ttl = ttl
        self.unreachable_for = unreachable_for
        self._unreachable: dict[PubKey, float] = {}  # visor -> until when its dials are one try
        self.stats = stats or SetupStats()
        self.clients: dict[PubKey, _Pooled] = {}
        self._locks: dict[PubKey, asyncio.Lock] = {}
        self._loop = asyncio.get_running_loop()
        # clients dropped from the pool close in the background, under this tree
        self._closers = TaskTree("rsn-hop-pool", log)

    async def start(self) -> None:
        await self._closers.start()

    def recently_unreachable(self, pk: PubKey) -> bool:
        until = self._unreachable.get(pk)
        if until is None:
            return False
        if until <= self._loop.time():
            del self._unreachable[pk]
            return False
        return True

    async def _dial(self, pk: PubKey) -> RPCClient:
        try:
            client = await self._dial_attempts(pk)
        except HopDialError:
            now = self._loop.time()
            for old in [k for k, until in self._unreachable.items() if until <= now]:
                del self._unreachable[old]
            self._unreachable[pk] = now + self.unreachable_for
            raise
        self._unreachable.pop(pk, None)
        return client

    async def _dial_attempts(self, pk: PubKey) -> RPCClient:
        attempts = 1 if self.recently_unreachable(pk) else self.attempts
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(self.call_timeout):
                    stream = await self._dial_fn(pk, self.port)
            except DmsgError as exc:
                if exc.code != ErrorCode.CANNOT_CONNECT_TO_DELEGATED or attempt == attempts:
                    raise HopDialError(pk, exc, attempt) from exc
                self.stats.dial_retries += 1
                log.info("dial %s: %s; retry %d", pk, exc, attempt)
                await asyncio.sleep(self.backoff * attempt)
                continue
            except TimeoutError as exc:
                raise HopDialError(pk, TimeoutError("dial timed out"), attempt) from exc
            except (ConnectionError, OSError) as exc:
                raise HopDialError(pk, exc, attempt) from exc
            return RPCClient(stream)
        raise AssertionError("unreachable")

    def _discard(self, pk: PubKey, pooled: _Pooled) -> None:
        if self.clients.get(pk) is pooled:
            del self.clients[pk]
        try:
            self._closers.spawn(pooled.client.close(), f"close-hop-{pk}")
        except TaskTreeClosedError:
            log.debug("hop pool closed: client of %s left to its stream", pk)

    async def client(self, pk: PubKey, *, replace: RPCClient | None = None) -> RPCClient:
        """The pooled client of ``pk`` (dialled when missing, dead, idle too long or
        ``replace``)."""
        lock = self._locks.setdefault(pk, asyncio.Lock())
        async with lock:
            now = self._loop.time()
            cur = self.clients.get(pk)
            if cur is not None:
                stale = (
                    cur.client is replace
                    or cur.client.is_shut_down
                    or now - cur.last_used > self.ttl
                )
                if not stale:
                    cur.last_used = now
                    return cur.client
                self._discard(pk, cur)
            client = await self._dial(pk)
            self.clients[pk] = _Pooled(client, self._loop.time())
            return client

    async def call(self, pk: PubKey, method: str, arg: Any, arg_type: Any, reply_type: Any) -> Any:
        """``RPCGateway.<method>`` on ``pk``, bounded by :attr:`call_timeout`; re-dialled once
        when the pooled connection turns out dead."""
        client = await self.client(pk)
        try:
            return await self._call(pk, client, method, arg, arg_type, reply_type)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_stale_connection_error(exc):
                raise
            log.info("pooled connection to %s is dead (%s): re-dialling", pk, exc)
            self.stats.stale_redials += 1
        client = await self.client(pk, replace=client)
        return await self._call(pk, client, method, arg, arg_type, reply_type)

    async def _call(
        self, pk: PubKey, client: RPCClient, method: str, arg: Any, arg_type: Any, rt: Any
    ) -> Any:
        try:
            async with asyncio.timeout(self.call_timeout):
                return await client.call(f"RPCGateway.{method}", arg, arg_type, rt)
        except TimeoutError:
            pooled = self.clients.get(pk)
            if pooled is not None and pooled.client is client:
                self._discard(pk, pooled)
            raise

    async def close(self) -> None:
        """Close every pooled client, and wait for the ones already closing."""
        pooled_now = list(self.clients.values())
        self.clients.clear()
        for pooled in pooled_now:
            await pooled.client.close()
        closing = self._closers.live()
        if closing:
            await asyncio.wait(closing)
        await self._closers.close()
