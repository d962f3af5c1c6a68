"""Managed transports and the TransportManager.

A transport is one authenticated, encrypted connection between two visors over one carrier,
named by its deterministic ID. After the carrier is up, settlement runs: the dialer sends its
half-signed entry, the listener checks it, countersigns it, registers it in transport discovery
and answers one status byte. From then on the connection carries routing packets
(``type ‖ route id ‖ size ‖ payload``).

The manager owns every transport's read task, the accept loop of each carrier, the loop that
keeps persistent transports up and the latency probe; closing it cancels and awaits them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.errors import DmsgError
from skywire.transport.entry import (
    Entry,
    EntryError,
    SignedEntry,
    make_entry,
    make_transport_id,
)
from skywire.transport.managed import (
    TRANSPORT_PING,
    TRANSPORT_PONG,
    ManagedTransport,
    TransportError,
    TransportStats,
)
from skywire.transport.network import Conn, Network, TransportNetworkError
from skywire.transport.resolver import ResolverError
from skywire.transport.settlement import (
    SettlementError,
    SettlementInitiator,
    SettlementResponder,
    SettlementStatus,
)
from skywire.wire.errors import WireError
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = [
    "CARRIER_START_ERRORS",
    "REGISTRY_ERRORS",
    "ManagedTransport",
    "Registry",
    "RegistryError",
    "TransportError",
    "TransportManager",
    "TransportStats",
]

log = logging.getLogger(__name__)

SETTLEMENT_TIMEOUT = 20.0
LATENCY_INTERVAL = 10.0
PERSISTENT_GRACE = 2.0
DEAD_AFTER_ROUNDS = 3
PERSISTENT_RETRY_MAX = 30.0
DEREGISTER_WAIT = 2.0
"""How long a new connection with the same ID waits for the lost one's deregistration."""


class RegistryError(Exception):
    """Transport discovery refused a request, or could not be asked (the base of its
    client's errors)."""


REGISTRY_ERRORS: tuple[type[BaseException], ...] = (RegistryError, OSError, TimeoutError)
"""What a :class:`Registry` call may raise."""


CARRIER_START_ERRORS: tuple[type[BaseException], ...] = (
    ResolverError,
    DmsgError,
    WireError,
    OSError,
    TimeoutError,
)
"""Why a carrier may fail to start (a port taken, a resolver that refused or is away...)."""


class Registry(Protocol):
    """Where transports are published (transport discovery); every call raises one of
    :data:`REGISTRY_ERRORS` or nothing."""

    async def register(self, entries: list[SignedEntry]) -> None: ...

    async def deregister(self, tp_id: uuid.UUID) -> None: ...

    async def report_latency(self, tp_id: uuid.UUID, latency_ms: float) -> None: ...


PacketHandler = Callable[["ManagedTransport", int, int, bytes], Awaitable[None]]
LostHandler = Callable[["ManagedTransport"], None]


class TransportManager:
    """Creates, accepts, keeps and removes this visor's transports."""

    def __init__(
        self,
        sk: SecKey,
        networks: Iterable[Network],
        *,
        registry: Registry | None = None,
        persistent: Iterable[tuple[PubKey, str]] = (),
        latency_interval: float = LATENCY_INTERVAL,
    ) -> None:
        self.sk = sk
        self.pk = sk.pubkey()
        self.networks: dict[str, Network] = {n.tp_type: n for n in networks}
        self.registry = registry
        self.persistent: set[tuple[PubKey, str]] = set(persistent)
        self.latency_interval = latency_interval
        self.transports: dict[uuid.UUID, ManagedTransport] = {}
        self.packet_handler: PacketHandler | None = None
        self.on_lost: LostHandler | None = None
        """Told (synchronously) of every transport that ends, for whatever reason."""
        # every task: accept loops, settlements, the persistent and latency loops, one reader
        # per transport (also kept by ID in _readers)
        self._tasks = TaskTree("transport-manager", log)
        self._readers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._dialing: dict[uuid.UUID, asyncio.Future[ManagedTransport]] = {}
        # deregistrations of transports that went away, by ID, while in flight
        self._deregistering: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._tasks.start()
        for tp_type, net in list(self.networks.items()):
            try:
                await net.start()
            except CARRIER_START_ERRORS as exc:  # a carrier that cannot start is left out
                log.warning("transport type %s unavailable: %s", tp_type, exc)
                del self.networks[tp_type]
                with contextlib.suppress(*CARRIER_START_ERRORS):
                    await net.close()
                continue
            self._spawn(self._accept_loop(net), f"tp-accept-{net.tp_type}")
        self._spawn(self._persistent_loop(), "tp-persistent")
        if self.latency_interval > 0:
            self._spawn(self._latency_loop(), "tp-latency")

    async def __aenter__(self) -> TransportManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            self._tasks.spawn(coro, name)
        except TaskTreeClosedError:
            log.debug("transport manager closed: %s not started", name)

    async def close(self) -> None:
        """Close every transport and carrier; await every task. Entries stay in discovery
        unless removed with :meth:`delete_transport` (the peer may redial a persistent one)."""
        if self._closed:
            return
        self._closed = True
        for fut in self._dialing.values():
            fut.cancel()
        await self._tasks.close()
        for tp in list(self.transports.values()):
            await tp.close()
        self.transports.clear()
        for net in self.networks.values():
            await net.close()

    # ------------------------------------------------------------------ queries
    def get(self, tp_id: uuid.UUID) -> ManagedTransport | None:
        return self.transports.get(tp_id)

    def by_remote(self, pk: PubKey, tp_type: str | None = None) -> list[ManagedTransport]:
        return [
            tp
            for tp in self.transports.values()
            if tp.remote_pk == pk and (tp_type is None or tp.type == tp_type)
        ]

    def transport_types(self) -> list[str]:
        return sorted(self.networks)

    async def wait_for(self, tp_id: uuid.UUID) -> ManagedTransport:
        """Wait until the transport with ``tp_id`` is up (e.g. dialed by the peer)."""
        while True:
            tp = self.transports.get(tp_id)
            if tp is not None and not tp.closed:
                return tp
            self._changed.clear()
            await self._changed.wait()

    async def wait_gone(self, tp_id: uuid.UUID) -> None:
        while tp_id in self.transports:
            self._changed.clear()
            await self._changed.wait()

    # ------------------------------------------------------------------ create / remove
    async def save_transport(
        self, remote: PubKey, tp_type: str, label: str = "user"
    ) -> ManagedTransport:
        """The transport to ``remote`` over ``tp_type``: the existing one or a new one."""
        if self._closed:
            raise TransportError("transport manager closed")
        if remote == self.pk:
            raise TransportError("a transport to oneself is not allowed")
        net = self.networks.get(tp_type)
        if net is None:
            raise TransportError(f"transport type {tp_type!r} is not enabled here")
        tp_id = make_transport_id(self.pk, remote, tp_type)
        existing = self.transports.get(tp_id)
        if existing is not None and not existing.closed:
            return existing
        pending = self._dialing.get(tp_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[ManagedTransport] = asyncio.get_running_loop().create_future()
        self._dialing[tp_id] = fut
        try:
            await self._deregistered(tp_id)
            conn = await net.dial(remote)
            tp = await self._settle_initiator(conn, label)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()
            if isinstance(exc, TransportNetworkError | EntryError | WireError | OSError):
                raise TransportError(f"{tp_type} transport to {remote}: {exc}") from exc
            raise
        else:
            fut.set_result(tp)
            return tp
        finally:
            self._dialing.pop(tp_id, None)

    async def delete_transport(self, tp_id: uuid.UUID) -> None:
        """Close the transport and remove it from transport discovery."""
        tp = self.transports.get(tp_id)
        if tp is None:
            raise TransportError(f"no transport {tp_id}")
        tp.deleted = True
        self.persistent.discard((tp.remote_pk, tp.type))
        await tp.close()
        reader = self._readers.get(tp_id)
        if reader is not None and reader is not asyncio.current_task():
            await asyncio.wait({reader})
        self._forget(tp)
        await self._deregister(tp_id)

    async def _deregister(self, tp_id: uuid.UUID) -> None:
        if self.registry is None:
            return
        try:
            await self.registry.deregister(tp_id)
        except REGISTRY_ERRORS as exc:
            log.info("could not deregister transport %s: %s", tp_id, exc)

    def _deregister_lost(self, tp: ManagedTransport) -> None:
        """A transport that went away is taken off offer at once (its peer may be dead); when
        it comes back, settlement registers it again."""
        if self.registry is None or self._closed or tp.deleted or tp.id in self._deregistering:
            return
        # A dial of the same ID already under way (a redial that began before this one ended)
        # decides: if it brings the transport back, there is nothing to take off offer.
        dialing = self._dialing.get(tp.id)
        try:
            task = self._tasks.spawn(
                self._deregister_gone(tp.id, dialing), f"tp-deregister-{tp.id}"
            )
        except TaskTreeClosedError:
            return
        self._deregistering[tp.id] = task

    async def _deregister_gone(
        self, tp_id: uuid.UUID, dialing: asyncio.Future[ManagedTransport] | None
    ) -> None:
        try:
            if dialing is not None:
                await asyncio.wait({dialing})
            if tp_id not in self.transports:  # not back
                await self._deregister(tp_id)
        finally:
            if self._deregistering.get(tp_id) is asyncio.current_task():
                del self._deregistering[tp_id]

    async def _deregistered(self, tp_id: uuid.UUID) -> None:
        """Let a deregistration of ``tp_id`` still in flight land before the transport is
        registered again (else it could undo the new registration); bounded, then dropped."""
        task = self._deregistering.get(tp_id)
        if task is None or task is asyncio.current_task():
            return
        _, pending = await asyncio.wait({task}, timeout=DEREGISTER_WAIT)
        if pending:
            task.cancel()
            await asyncio.wait({task})

    # ------------------------------------------------------------------ settlement
    async def _settle_initiator(self, conn: Conn, label: str) -> ManagedTransport:
        s = SettlementInitiator(self.pk, self.sk, conn.remote_pk, conn.tp_type, label)
        try:
            async with asyncio.timeout(SETTLEMENT_TIMEOUT):
                await conn.stream.write(s.data_to_send())
                s.receive_data(await conn.stream.readexactly(1))
        except BaseException as exc:
            with contextlib.suppress(ConnectionError, WireError, OSError):
                await conn.stream.close()
            if isinstance(exc, asyncio.IncompleteReadError):
                raise TransportError("peer closed during settlement") from exc
            if isinstance(exc, TimeoutError):
                raise TransportError("settlement timed out") from exc
            raise
        return self._adopt(s.entry, conn)

    async def _settle_responder(self, conn: Conn) -> ManagedTransport | None:
        s = SettlementResponder(self.pk, self.sk, conn.remote_pk, conn.tp_type)
        try:
            async with asyncio.timeout(SETTLEMENT_TIMEOUT):
                while not s.receive_data(await conn.stream.read(4096) or _eof()):
                    pass
                assert s.signed_entry is not None
                if self.registry is not None:
                    await self._deregistered(s.signed_entry.entry.id)
                    try:
                        await self.registry.register([s.signed_entry])
                    except REGISTRY_ERRORS as exc:
                        log.warning(
                            "transport discovery refused %s: %s", s.signed_entry.entry.id, exc
                        )
                        await conn.stream.write(SettlementStatus.FAILURE.encode())
                        raise TransportError(f"registration failed: {exc}") from exc
                await conn.stream.write(SettlementStatus.OK.encode())
        except SettlementError as exc:
            with contextlib.suppress(ConnectionError, WireError, OSError):
                await conn.stream.write(s.data_to_send())
            log.info("settlement with %s refused: %s", conn.remote_pk, exc)
            await conn.stream.close()
            return None
        except (TransportError, EOFError, ConnectionError, WireError, OSError, TimeoutError) as exc:
            log.info("settlement with %s failed: %s", conn.remote_pk, exc)
            with contextlib.suppress(ConnectionError, WireError, OSError):
                await conn.stream.close()
            return None
        return self._adopt(s.signed_entry.entry, conn)

    def _adopt(self, entry: Entry, conn: Conn) -> ManagedTransport:
        old = self.transports.get(entry.id)
        if old is not None:
            # The peer dialed again (e.g. after a restart): the new connection wins.
            old.deleted = True
            self._spawn(old.close(), f"tp-close-old-{entry.id}")
        tp = ManagedTransport(entry, conn, self.pk)
        self.transports[entry.id] = tp
        # a replaced transport's reader stays in the tree until it ends
        self._readers[entry.id] = self._tasks.spawn(self._read_loop(tp), f"tp-read-{entry.id}")
        self._changed.set()
        log.info(
            "transport %s (%s) with %s is up (%s)",
            entry.id,
            entry.type,
            tp.remote_pk,
            "post-quantum hybrid" if tp.post_quantum else "classical",
        )
        return tp

    def _forget(self, tp: ManagedTransport) -> None:
        if self.transports.get(tp.id) is tp:
            del self.transports[tp.id]
            reader = self._readers.get(tp.id)
            if reader is not None and reader.done():
                del self._readers[tp.id]
        self._changed.set()

    # ------------------------------------------------------------------ loops
    async def _accept_loop(self, net: Network) -> None:
        while True:
            try:
                conn = await net.accept()
            except TransportNetworkError:
                return
            except ConnectionError:
                return
            self._spawn(self._settle_accepted(conn), f"tp-settle-{conn.remote_pk}")

    async def _settle_accepted(self, conn: Conn) -> None:
        await self._settle_responder(conn)

    async def _read_loop(self, tp: ManagedTransport) -> None:
        try:
            while True:
                ptype, route_id, payload = await tp.read_packet()
                if ptype == TRANSPORT_PING:
                    await tp.write_packet(TRANSPORT_PONG, 0, payload)
                elif ptype == TRANSPORT_PONG:
                    tp._on_pong(payload)
                elif self.packet_handler is not None:
                    await self.packet_handler(tp, ptype, route_id, payload)
                else:
                    await tp.inbox.put((ptype, route_id, payload))
        except (EOFError, TransportError, ConnectionError, WireError, OSError) as exc:
            log.info("transport %s ended: %s", tp.id, exc)
        finally:
            await tp.close()
            if self._readers.get(tp.id) is asyncio.current_task():
                del self._readers[tp.id]
            self._forget(tp)
            if self.transports.get(tp.id) is None:
                self._deregister_lost(tp)
            if self.on_lost is not None:
                self.on_lost(tp)

    async def _persistent_loop(self) -> None:
        """Keep every persistent transport up.

        When one drops, the edge whose key sorts first redials at once (as the reference
        chooses the redialing side); the other waits a grace period for it (one period for
        all of them), then redials too. At start nobody is about to redial us (our peers
        are backing off, or do not know we are back), so the first pass dials them all.
        """
        wait = 1.0
        first = True
        while True:
            missing = [
                (pk, t)
                for pk, t in sorted(self.persistent, key=lambda x: (x[0].raw, x[1]))
                if not self.by_remote(pk, t)
            ]
            failed = False
            grace_ends = asyncio.get_running_loop().time() + (0.0 if first else PERSISTENT_GRACE)
            first = False
            for pk, t in missing:
                expected = make_entry(self.pk, pk, t)
                tp_id = expected.id
                if not expected.is_least_significant_edge(self.pk):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(grace_ends):
                            await self.wait_for(tp_id)
                    if self.by_remote(pk, t):
                        continue
                try:
                    await self.save_transport(pk, t)
                except TransportError as exc:
                    failed = True
                    log.info("persistent transport to %s (%s): %s", pk, t, exc)
            wait = min(wait * 2, PERSISTENT_RETRY_MAX) if failed else 1.0
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait if failed or missing else None):
                    await self._changed.wait()

    async def _latency_loop(self) -> None:
        while True:
            await asyncio.sleep(self.latency_interval)
            for tp in list(self.transports.values()):
                if not tp.answers_pings and tp.unanswered_pings >= 1:
                    # A peer that let its first probe go unanswered has no transport pings
                    # (the reference visor logs "unknown packet type" for each): one is enough.
                    continue
                try:
                    ms = await tp.ping()
                except (TransportError, TimeoutError) as exc:
                    tp.unanswered_pings += 1
                    # Carriers without a close signal (KCP) leave a transport whose peer went
                    # away looking alive: silence for several probe rounds ends it, but only
                    # when the peer is known to answer probes.
                    silent = time.monotonic() - tp.last_received
                    if tp.answers_pings and silent > DEAD_AFTER_ROUNDS * self.latency_interval:
                        log.info("transport %s silent for %.0f s: closing it", tp.id, silent)
                        await tp.close()
                    else:
                        why = str(exc) or f"{type(exc).__name__} (no answer in time)"
                        log.info("latency probe on %s to %s failed: %s", tp.id, tp.remote_pk, why)
                    continue
                tp.unanswered_pings = 0
                if self.registry is not None:
                    try:
                        await self.registry.report_latency(tp.id, ms)
                    except REGISTRY_ERRORS as exc:
                        log.debug("latency report for %s failed: %s", tp.id, exc)


def _eof() -> bytes:
    raise EOFError("peer closed during settlement")
