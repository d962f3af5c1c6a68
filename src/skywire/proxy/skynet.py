"""skynetweb's connector: a ``.skynet`` name becomes a stream over a route.

* ``<pk>.skynet[:port]`` asks the route finder for a route to ``pk``'s routing port ``port``;
* ``<hop>…<dest>.skynet`` is a source route: each hop is a visor's key (the transport to it is
  found in transport discovery, or, for this visor's own first hop, created: stcpr, then sudph,
  never dmsg) or a transport ID (its edges give the next visor). The forward hops, and the
  same transports reversed, go to the setup node as they are;
* ``<alias>.skynet`` is this visor: the connection goes straight to the local service
  published on that port.

Routes are pooled (:class:`RoutePool`): every proxied connection to one destination, port and
path is a yamux stream over one route group (this side is the yamux client), so a page with
thirty resources sets up one route. A route unused for ``idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from skywire.cipher import PubKey
from skywire.proxy.errors import (
    DestinationRefusedError,
    HopError,
    ProxyError,
    UnreachableError,
)
from skywire.proxy.hostname import ProxyTarget
from skywire.routing.route import Hop
from skywire.transport.entry import Entry, make_transport_id
from skywire.transport.manager import TransportError
from skywire.wire.errors import WireError
from skywire.wire.stream import ByteStream, TcpStream
from skywire.wire.tasks import TaskTree
from skywire.wire.yamux_aio import YamuxSession

__all__ = [
    "CREATE_TYPES",
    "AddressHop",
    "LocalTransports",
    "PoolKey",
    "RouteDialer",
    "RoutePool",
    "SkynetConnector",
    "TransportLookup",
    "route_address",
    "source_route",
]

log = logging.getLogger(__name__)

CREATE_TYPES = ("stcpr", "sudph")
"""Transport types a source route may create for this visor's first hop, in order."""
_ROUTE_ERRORS = (ConnectionError, OSError, TimeoutError, WireError)


class RouteDialer(Protocol):
    """The router as the connector uses it."""

    @property
    def pk(self) -> PubKey: ...

    async def dial_routes(
        self, remote: PubKey, local_port: int = 0, remote_port: int = 0
    ) -> ByteStream: ...

    async def dial_source_route(
        self,
        remote: PubKey,
        remote_port: int,
        forward: Sequence[Hop],
        reverse: Sequence[Hop],
    ) -> ByteStream: ...


class LocalTransport(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def type(self) -> str: ...


class LocalTransports(Protocol):
    """This visor's transports (the transport manager)."""

    def by_remote(self, pk: PubKey, tp_type: str | None = None) -> Sequence[LocalTransport]: ...

    async def save_transport(self, pk: PubKey, tp_type: str) -> LocalTransport: ...


@runtime_checkable
class TransportLookup(Protocol):
    """Transport discovery as the connector uses it."""

    async def find_transport(self, tp_id: uuid.UUID) -> Entry | None: ...

    async def get_transports_by_edge(self, pk: PubKey) -> list[Entry]: ...


# ---------------------------------------------------------------------------- source routes


async def source_route(
    me: PubKey,
    chain: Sequence[PubKey | uuid.UUID],
    dest: PubKey,
    local: LocalTransports,
    lookup: TransportLookup,
) -> list[Hop]:
    """The forward hops from ``me`` to ``dest`` that ``chain`` names; :class:`HopError`
    names the hop that does not exist."""
    hops: list[Hop] = []
    at = me
    for element in chain:
        if isinstance(element, uuid.UUID):
            entry = await _lookup(lookup, element)
            if entry is None:
                raise HopError(f"transport {element} does not exist (not in transport discovery)")
            if at not in entry.edges:
                raise HopError(
                    f"transport {element} does not touch {at} (its edges: "
                    f"{entry.edges[0]}, {entry.edges[1]})"
                )
            nxt = entry.edges[1] if entry.edges[0] == at else entry.edges[0]
            hops.append(Hop(element, at, nxt))
        else:
            if element == at:
                raise HopError(f"hop {element} repeats the visor before it")
            nxt = element
            hops.append(Hop(await _transport_between(at, nxt, me, local, lookup), at, nxt))
        at = nxt
    if at != dest:
        hops.append(Hop(await _transport_between(at, dest, me, local, lookup), at, dest))
    return hops


async def _lookup(lookup: TransportLookup, tp_id: uuid.UUID) -> Entry | None:
    try:
        return await lookup.find_transport(tp_id)
    except _ROUTE_ERRORS as exc:
        raise UnreachableError(f"transport discovery: {exc}") from exc


async def _transport_between(
    a: PubKey, b: PubKey, me: PubKey, local: LocalTransports, lookup: TransportLookup
) -> uuid.UUID:
    if a == me:
        existing = local.by_remote(b)
        if existing:
            preferred = sorted(existing, key=lambda t: (t.type == "dmsg", t.type))
            return preferred[0].id
        errors = []
        for tp_type in CREATE_TYPES:
            try:
                return (await local.save_transport(b, tp_type)).id
            except (TransportError, *_ROUTE_ERRORS) as exc:
                errors.append(f"{tp_type}: {exc}")
        raise HopError(
            f"no transport from this visor to {b}, and none could be made ({'; '.join(errors)})"
        )
    try:
        entries = await lookup.get_transports_by_edge(a)
    except _ROUTE_ERRORS as exc:
        raise UnreachableError(f"transport discovery: {exc}") from exc
    found = [e for e in entries if b in e.edges and a in e.edges]
    if not found:
        raise HopError(f"no transport between {a} and {b} in transport discovery")
    found.sort(key=lambda e: (e.type == "dmsg", e.latency_ms is None, e.latency_ms or 0.0))
    return found[0].id


def reverse_of(hops: Sequence[Hop]) -> list[Hop]:
    """The same transports, walked back."""
    return [Hop(h.tp_id, h.dst, h.src) for h in reversed(hops)]


# ---------------------------------------------------------------------------- the route pool


@dataclass(frozen=True, slots=True)
class PoolKey:
    dest: PubKey
    port: int
    chain: tuple[PubKey | uuid.UUID, ...] = ()


@dataclass
class _Pooled:
    group: ByteStream
    session: YamuxSession
    last_used: float


class RoutePool:
    """One route group per :class:`PoolKey`, with yamux streams over it."""

    def __init__(
        self,
        dial: Callable[[PoolKey], Awaitable[ByteStream]],
        *,
        idle_timeout: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dial = dial
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._routes: dict[PoolKey, _Pooled] = {}
        self._locks: dict[PoolKey, asyncio.Lock] = {}
        self._tasks = TaskTree("route-pool", log)
        self.routes_dialed = 0
        self.streams_opened = 0

    @property
    def routes(self) -> int:
        return len(self._routes)

    @property
    def open_streams(self) -> int:
        """Streams still open over the pooled routes."""
        return sum(p.session.num_streams for p in self._routes.values())

    async def start(self) -> None:
        await self._tasks.start()
        self._tasks.spawn(self._reap(), "route-pool-reaper")

    async def close(self) -> None:
        await self._tasks.close()
        for key in list(self._routes):
            await self._drop(key)

    async def open(self, key: PoolKey) -> ByteStream:
        """A new stream to ``key``'s destination, over its pooled route (dialled if needed)."""
        for attempt in (1, 2):
            pooled = await self._get(key)
            try:
                stream = await pooled.session.open_stream()
            except _ROUTE_ERRORS as exc:
                log.info("route to %s:%d is gone (%s); dialling again", key.dest, key.port, exc)
                await self._drop(key, pooled)
                if attempt == 2:
                    raise
                continue
            pooled.last_used = self._clock()
            self.streams_opened += 1
            return stream
        raise AssertionError("unreachable")

    async def _get(self, key: PoolKey) -> _Pooled:
        pooled = self._routes.get(key)
        if pooled is not None and not pooled.session.closed:
            return pooled
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            pooled = self._routes.get(key)
            if pooled is not None and not pooled.session.closed:
                return pooled
            if pooled is not None:
                await self._drop(key, pooled)
            group = await self._dial(key)
            self.routes_dialed += 1
            session = YamuxSession.over_stream(group, client=True)
            session.start()
            pooled = _Pooled(group, session, self._clock())
            self._routes[key] = pooled
            return pooled

    async def _drop(self, key: PoolKey, pooled: _Pooled | None = None) -> None:
        current = self._routes.get(key)
        if pooled is None:
            pooled = current
        if pooled is None:
            return
        if current is pooled:
            del self._routes[key]
        with contextlib.suppress(*_ROUTE_ERRORS):
            await pooled.session.close()
        with contextlib.suppress(*_ROUTE_ERRORS):
            await pooled.group.close()

    def idle(self, now: float) -> list[PoolKey]:
        """Routes with no stream that were last used ``idle_timeout`` ago, or that died."""
        out = []
        for key, pooled in self._routes.items():
            if pooled.session.closed or (
                pooled.session.num_streams == 0 and now - pooled.last_used >= self.idle_timeout
            ):
                out.append(key)
            elif pooled.session.num_streams:
                pooled.last_used = now  # in use: idle time counts from the last stream
        return out

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(max(self.idle_timeout / 4, 0.05))
            for key in self.idle(self._clock()):
                log.info("closing idle route to %s:%d", key.dest, key.port)
                await self._drop(key)


# ---------------------------------------------------------------------------- the connector


class SkynetConnector:
    """Opens streams for ``.skynet`` names (see the module docstring)."""

    def __init__(
        self,
        router: RouteDialer,
        local: LocalTransports,
        lookup: TransportLookup,
        *,
        published: Callable[[int], tuple[str, int] | None] = lambda port: None,
        idle_timeout: float = 120.0,
    ) -> None:
        self.router = router
        self.local = local
        self.lookup = lookup
        self.published = published
        self.pool = RoutePool(self._dial, idle_timeout=idle_timeout)

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    async def open(self, target: ProxyTarget) -> ByteStream:
        if target.dest is None or target.dest == self.router.pk:
            return await self._open_local(target.port)
        key = PoolKey(target.dest, target.port, target.chain)
        try:
            return await self.pool.open(key)
        except ProxyError:
            raise
        except ConnectionRefusedError as exc:
            raise DestinationRefusedError(f"{target.dest}:{target.port}: {exc}") from exc
        except _ROUTE_ERRORS as exc:
            raise UnreachableError(f"{target.dest}:{target.port}: {exc}") from exc

    async def _open_local(self, port: int) -> ByteStream:
        addr = self.published(port)
        if addr is None:
            raise DestinationRefusedError(f"this visor publishes nothing on skynet port {port}")
        try:
            return await TcpStream.connect(*addr)
        except OSError as exc:
            raise DestinationRefusedError(
                f"skynet port {port}: local service {addr[0]}:{addr[1]}: {exc}"
            ) from exc

    async def _dial(self, key: PoolKey) -> ByteStream:
        if not key.chain:
            return await self.router.dial_routes(key.dest, remote_port=key.port)
        forward = await source_route(self.router.pk, key.chain, key.dest, self.local, self.lookup)
        return await self.router.dial_source_route(key.dest, key.port, forward, reverse_of(forward))


# ---------------------------------------------------------------------------- tp route-addr


@dataclass(frozen=True, slots=True)
class AddressHop:
    """One consecutive pair of a ``tp route-addr`` path and the transport chosen for it."""

    src: PubKey
    dst: PubKey
    tp_id: uuid.UUID
    type: str
    exists: bool
    note: str


TYPE_PREFERENCE = ("stcpr", "sudph", "stcp", "dmsg")


async def route_address(
    pks: Sequence[PubKey],
    me: PubKey,
    local: LocalTransports,
    lookup: TransportLookup,
    *,
    tp_type: str | None = None,
) -> tuple[list[AddressHop], str]:
    """The transport of each consecutive pair of ``pks`` and the ``.skynet`` address made of
    their IDs. An existing transport is taken (``tp_type`` if given, else by
    :data:`TYPE_PREFERENCE`); for a missing one the deterministic ID of ``tp_type`` (default
    stcpr, the type a source route creates first) is used, and the hop says so."""
    if len(pks) < 2:
        raise HopError("a route address needs at least two keys: the source and the destination")
    hops: list[AddressHop] = []
    for a, b in itertools.pairwise(pks):
        if a == b:
            raise HopError(f"{a} follows itself in the path")
        existing: list[tuple[uuid.UUID, str]]
        if a == me:
            existing = [(t.id, t.type) for t in local.by_remote(b)]
        else:
            try:
                entries = await lookup.get_transports_by_edge(a)
            except _ROUTE_ERRORS as exc:
                raise UnreachableError(f"transport discovery: {exc}") from exc
            existing = [(e.id, e.type) for e in entries if b in e.edges]
        if tp_type is not None:
            existing = [x for x in existing if x[1] == tp_type]
        if existing:
            existing.sort(key=lambda x: _rank(x[1]))
            tp_id, kind = existing[0]
            others = len(existing) - 1
            note = "exists" + (f" ({others} more of other types)" if others else "")
            hops.append(AddressHop(a, b, tp_id, kind, True, note))
            continue
        kind = tp_type or CREATE_TYPES[0]
        why = "asked for" if tp_type else "what a source route creates first"
        note = f"missing: {kind} ({why}); its ID is deterministic"
        if a == me:
            note += "; the proxy creates it on first use"
        else:
            note += f"; create it on {a} before use"
        hops.append(AddressHop(a, b, make_transport_id(a, b, kind), kind, False, note))
    name = ".".join([*(h.tp_id.hex for h in hops), pks[-1].hex(), "skynet"])
    return hops, name


def _rank(tp_type: str) -> int:
    return TYPE_PREFERENCE.index(tp_type) if tp_type in TYPE_PREFERENCE else len(TYPE_PREFERENCE)
