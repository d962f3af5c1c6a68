"""The address resolver's UDP side: sudph binds over KCP (default port 30178).

A visor opens a KCP conversation from the very UDP socket it will use for sudph transports, and
on it (each line is one KCP message; no Noise):

1. runs the connection handshake as initiator with ``DstAddr = {null PK, 0}`` — the resolver
   learns the visor's key from ``SrcAddr`` and accepts any port;
2. sends ``{"port":"<its UDP port>","addresses":["<local ip>",…]}``;
3. sends ``heartbeat`` every 10 s (which also keeps its NAT mapping open), and ``delBind`` when
   it shuts down.

The resolver binds the key to the ``ip:port`` it saw the conversation come from, and whenever
another visor resolves that key for sudph it pushes ``{"PK":"<requester>","Addr":"ip:port"}``
over the conversation so that the bound visor sends a ``holepunch`` datagram to the requester.

Beyond upstream (whose sudph binds never expire): a bind that hears nothing for
``heartbeat_timeout`` seconds is dropped, and the stored bind carries the same TTL, refreshed by
each heartbeat, so a crashed resolver leaves nothing behind in Redis either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from skywire.cipher import PubKey
from skywire.dmsg.addr import Addr
from skywire.services.ar.store import (
    ARStore,
    ARStoreError,
    VisorData,
    VisorDataError,
    parse_local_addresses,
)
from skywire.transport.handshake import (
    HANDSHAKE_TIMEOUT,
    HandshakeError,
    InitiatorHandshake,
    ResponderHandshake,
)
from skywire.transport.kcp import Address, KCPConnection, KCPEndpoint, KCPOptions
from skywire.wire.stream import ByteStream

__all__ = [
    "DEFAULT_UDP_PORT",
    "DEL_BIND_MESSAGE",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_MESSAGE",
    "HEARTBEAT_TIMEOUT",
    "HOLE_PUNCH_MESSAGE",
    "MAX_MESSAGE",
    "HolePunchRequest",
    "SUDPHBindServer",
    "format_udp_addr",
    "run_initiator_handshake",
    "run_responder_handshake",
]

log = logging.getLogger("skywire.ar.udp")

DEFAULT_UDP_PORT = 30178
HEARTBEAT_MESSAGE = b"heartbeat"
DEL_BIND_MESSAGE = b"delBind"
HOLE_PUNCH_MESSAGE = b"holepunch"
"""The 9-byte datagram a visor sends to open its NAT towards a peer."""

HEARTBEAT_INTERVAL = 10.0
"""Seconds between a visor's heartbeats."""

HEARTBEAT_TIMEOUT = 30.0
"""Seconds without any message after which the resolver drops an sudph bind."""

MAX_MESSAGE = 4096
"""The read size of both ends (a message is one KCP message)."""

SUDPH = "sudph"


def format_udp_addr(addr: Address) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6), as Go prints a ``*net.UDPAddr``."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class HolePunchRequest:
    """The resolver's push ``{"PK":…,"Addr":…}``: visor ``pk`` at ``addr`` wants to reach us."""

    pk: PubKey
    addr: str

    def to_json(self) -> bytes:
        return json.dumps({"PK": self.pk.hex(), "Addr": self.addr}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> HolePunchRequest:
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise VisorDataError(f"hole-punch request: invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise VisorDataError("hole-punch request: expected an object")
        pk_text, addr = obj.get("PK"), obj.get("Addr")
        if not isinstance(pk_text, str) or not isinstance(addr, str):
            raise VisorDataError("hole-punch request: PK and Addr must be strings")
        try:
            pk = PubKey.from_hex(pk_text)
        except ValueError as exc:
            raise VisorDataError(f"hole-punch request: {exc}") from exc
        return cls(pk, addr)

    def udp_address(self) -> Address:
        """``addr`` split into ``(host, port)``; ``ValueError`` if it is not ``host:port``."""
        host, sep, port = self.addr.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"not host:port: {self.addr!r}")
        return host.strip("[]"), int(port)


async def _drive(stream: ByteStream, machine: InitiatorHandshake | ResponderHandshake) -> None:
    out = machine.data_to_send()
    if out:
        await stream.write(out)
    while not machine.complete:
        data = await stream.read(MAX_MESSAGE)
        if not data:
            raise ConnectionError("connection closed during the handshake")
        try:
            machine.receive_data(data)
        finally:
            out = machine.data_to_send()
            if out:
                await stream.write(out)


async def run_initiator_handshake(
    stream: ByteStream, machine: InitiatorHandshake, timeout: float = HANDSHAKE_TIMEOUT
) -> bytes:
    """Drive ``machine`` over ``stream``; returns bytes received past the last frame."""
    async with asyncio.timeout(timeout):
        await _drive(stream, machine)
    return machine.leftover


async def run_responder_handshake(
    stream: ByteStream, machine: ResponderHandshake, timeout: float = HANDSHAKE_TIMEOUT
) -> tuple[Addr, bytes]:
    """Drive ``machine`` over ``stream``; returns the initiator's address and any leftover."""
    async with asyncio.timeout(timeout):
        await _drive(stream, machine)
    assert machine.remote_addr is not None
    return machine.remote_addr, machine.leftover


class _Bind:
    def __init__(self, pk: PubKey, conn: KCPConnection, data: VisorData) -> None:
        self.pk = pk
        self.conn = conn
        self.data = data


class SUDPHBindServer:
    """Accepts sudph binds on one UDP socket and keeps them in ``store`` while they live.

    Use as ``async with SUDPHBindServer(store).serve(host, port) as srv`` or call
    :meth:`start` / :meth:`close`. It owns its endpoint and every task it starts.
    """

    def __init__(
        self,
        store: ARStore,
        *,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        kcp_options: KCPOptions | None = None,
    ) -> None:
        self.store = store
        self.heartbeat_timeout = heartbeat_timeout
        self._kcp_options = kcp_options
        self._endpoint: KCPEndpoint | None = None
        self._main: asyncio.Task[None] | None = None
        self._binds: dict[PubKey, _Bind] = {}
        self._changed = asyncio.Condition()

    @property
    def udp_addr(self) -> Address:
        """``(host, port)`` of the UDP socket."""
        if self._endpoint is None:
            raise RuntimeError("not started")
        return self._endpoint.local_addr

    @property
    def conversations(self) -> int:
        """Live KCP conversations on the UDP socket (binds and handshakes in progress)."""
        return len(self._endpoint.connections) if self._endpoint is not None else 0

    @property
    def ignored(self) -> int:
        """New conversations refused by the endpoint's limits (a garbage flood shows here)."""
        return self._endpoint.ignored if self._endpoint is not None else 0

    @property
    def bound(self) -> dict[PubKey, VisorData]:
        """The binds held right now."""
        return {pk: b.data for pk, b in self._binds.items()}

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_UDP_PORT) -> None:
        if self._endpoint is not None:
            raise RuntimeError("already started")
        self._endpoint = await KCPEndpoint.open(host, port, options=self._kcp_options)
        self._main = asyncio.create_task(self._accept_loop(self._endpoint), name="ar-udp-accept")

    async def close(self) -> None:
        """Stop accepting, end every bind connection (the stored binds are deleted) and release
        the socket."""
        main, self._main = self._main, None
        if main is not None:
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await main
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.close()

    async def wait_until(self, predicate: Callable[[dict[PubKey, VisorData]], bool]) -> None:
        """Return once ``predicate(self.bound)`` holds (checked whenever a bind changes)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.bound))

    async def wait_for(self, pk: PubKey, *, bound: bool) -> None:
        """Return once ``pk`` is (``bound=True``) or is no longer (``False``) bound here."""
        await self.wait_until(lambda binds: (pk in binds) == bound)

    async def push(self, target: PubKey, request: HolePunchRequest) -> bool:
        """Send ``request`` to the visor bound as ``target``; ``False`` if it is not bound."""
        bind = self._binds.get(target)
        if bind is None:
            return False
        try:
            await bind.conn.write(request.to_json())
        except ConnectionError as exc:
            log.warning("push to %s failed: %s", target, exc)
            return False
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _accept_loop(self, endpoint: KCPEndpoint) -> None:
        async with asyncio.TaskGroup() as tg:
            while True:
                try:
                    conn = await endpoint.accept()
                except ConnectionError:
                    return
                log.info("new UDP connection from %s", format_udp_addr(conn.remote_addr))
                tg.create_task(self._serve(conn))

    async def _serve(self, conn: KCPConnection) -> None:
        bind: _Bind | None = None
        try:
            bind = await self._open_bind(conn)
            if bind is not None:
                await self._follow(bind)
        except (HandshakeError, VisorDataError, ConnectionError, TimeoutError) as exc:
            log.info("sudph bind from %s failed: %s", format_udp_addr(conn.remote_addr), exc)
        except ARStoreError as exc:
            log.warning("sudph bind: store error: %s", exc)
        except Exception:
            log.exception("sudph bind from %s crashed", format_udp_addr(conn.remote_addr))
        finally:
            await conn.close()
            if bind is not None and self._binds.get(bind.pk) is bind:
                del self._binds[bind.pk]
                with contextlib.suppress(Exception):
                    await self.store.del_bind(SUDPH, bind.pk)
                log.info("unbound %s (sudph)", bind.pk)
            await self._notify()

    async def _open_bind(self, conn: KCPConnection) -> _Bind | None:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            remote, leftover = await run_responder_handshake(conn, ResponderHandshake())
            first = leftover or await conn.read(MAX_MESSAGE)
        if not first:
            return None
        port, addresses = parse_local_addresses(first)
        data = VisorData(format_udp_addr(conn.remote_addr), port, addresses)
        pk = remote.pk
        old = self._binds.get(pk)
        bind = _Bind(pk, conn, data)
        self._binds[pk] = bind
        if old is not None:
            log.info("new bind connection from %s, closing the old one", pk)
            await old.conn.close()
        await self.store.bind(SUDPH, pk, data, ttl=self.heartbeat_timeout)
        log.info("bound %s to %s (sudph)", pk, data.remote_addr)
        await self._notify()
        return bind

    async def _follow(self, bind: _Bind) -> None:
        while True:
            try:
                async with asyncio.timeout(self.heartbeat_timeout):
                    message = await bind.conn.read(MAX_MESSAGE)
            except TimeoutError:
                log.info("no heartbeat from %s for %g s", bind.pk, self.heartbeat_timeout)
                return
            if not message:
                return
            if message == HEARTBEAT_MESSAGE:
                if self._binds.get(bind.pk) is bind:
                    await self.store.bind(SUDPH, bind.pk, bind.data, ttl=self.heartbeat_timeout)
            elif message == DEL_BIND_MESSAGE:
                log.info("%s asked to be unbound (sudph)", bind.pk)
                return
            else:
                log.debug("unexpected message from %s: %r", bind.pk, message[:64])
