"""Route groups: one bidirectional logical connection over a route (``route_group.go``).

A route group holds this visor's two edge rules of a route: the **Forward** rule (packets leave
as ``Data(route_id = fwd.next_route_id)`` on transport ``fwd.next_tp_id``) and the **Consume**
rule (packets arriving under ``cons.key_route_id`` are this group's). The group's descriptor
is the Forward rule's, seen from this edge (``src`` = this visor); the Consume rule carries the
arriving path's descriptor (its inverse), as upstream setup nodes make it.

The protocol state lives in two sans-I/O cores (:mod:`skywire.router.route_core`: the route
handshake and the keep-alive/ping timers).

:class:`RouteGroup` is the asyncio shell: a :class:`~skywire.wire.stream.ByteStream` apps read
and write. When both ends advertise encryption the bytes run through Noise KK (initiator = the
dialer, static keys = the two visor keys), framed as in spec §3.6, inside Data packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from skywire.cipher import PubKey, SecKey
from skywire.router.route_core import (
    DEFAULT_HANDSHAKE_RETRANSMIT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    RouteHandshake,
    RouteTimers,
    TimerAction,
)
from skywire.router.setup_client import BidirectionalRoute
from skywire.routing.packet import (
    MAX_PAYLOAD_SIZE,
    CloseCode,
    PacketError,
    PacketType,
    make_ping,
    make_pong,
    parse_handshake,
    parse_ping,
    parse_pong,
)
from skywire.routing.packet import Packet as _Packet
from skywire.routing.rule import ConsumeRule, ForwardRule, RouteDescriptor
from skywire.wire.errors import NoiseError, WireError
from skywire.wire.noise import Pattern
from skywire.wire.noise_aio import NoiseStream

__all__ = [
    "DEFAULT_CLOSE_WAIT",
    "DEFAULT_HANDSHAKE_RETRANSMIT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "RouteClosedError",
    "RouteGroup",
    "RouteGroupConfig",
    "RouteHandshake",
    "RouteHandshakeError",
    "RouteTimers",
    "TimerAction",
]

log = logging.getLogger(__name__)

DEFAULT_PING_INTERVAL = 3.0
DEFAULT_CLOSE_WAIT = 2.0
DATA_CHUNK = 32 * 1024
"""Bytes of application data per Data packet (≤ 65535)."""
RX_BUFFER_LIMIT = 2 * 1024 * 1024
"""Received bytes a group buffers before the router waits (back-pressure to the transport)."""


class RouteClosedError(ConnectionError):
    """The route group is closed."""


class RouteHandshakeError(ConnectionError):
    """The route handshake did not complete (no Handshake from the peer in time, or Noise)."""


# ---------------------------------------------------------------------------------- asyncio


@dataclass(frozen=True)
class RouteGroupConfig:
    encrypt: bool = True
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    handshake_retransmit: float = DEFAULT_HANDSHAKE_RETRANSMIT
    ping_interval: float = DEFAULT_PING_INTERVAL
    close_wait: float = DEFAULT_CLOSE_WAIT


SendPacket = Callable[[ForwardRule, PacketType, bytes], Awaitable[None]]
"""Writes one packet along the group's forward rule (provided by the router)."""


class _RawRoute:
    """The plaintext byte stream of a route group: Data packets in and out."""

    def __init__(self, group: RouteGroup) -> None:
        self._g = group

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._g._raw_read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = await self._g._raw_read(n - len(out))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(out), n)
            out += chunk
        return bytes(out)

    async def write(self, data: bytes) -> None:
        await self._g._raw_write(data)

    async def close(self) -> None:
        await self._g.close()


class RouteGroup:
    """A route between two apps: ``read`` / ``readexactly`` / ``write`` / ``close``.

    Made by the :class:`~skywire.router.router.Router` (``dial_routes`` or an accepted route);
    it runs the handshake before the app gets it.
    """

    def __init__(
        self,
        *,
        sk: SecKey,
        fwd: ForwardRule,
        cons: ConsumeRule,
        initiator: bool,
        send: SendPacket,
        on_closed: Callable[[RouteGroup], None],
        config: RouteGroupConfig,
    ) -> None:
        self.sk = sk
        self.fwd = fwd
        self.cons = cons
        self.desc: RouteDescriptor = fwd.desc  # seen from here: src = this edge
        self.initiator = initiator
        self.config = config
        self._send_packet = send
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._rx = bytearray()
        self._rx_changed = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._hs = RouteHandshake(
            initiator=initiator,
            encrypt=config.encrypt,
            now=self._loop.time(),
            timeout=config.handshake_timeout,
            retransmit=config.handshake_retransmit,
        )
        self._hs_changed = asyncio.Event()
        keep_alive = max(fwd.keep_alive_seconds / 2, 0.05)
        self._timers = RouteTimers(keep_alive, config.ping_interval, self._loop.time())
        self._timer_task: asyncio.Task[None] | None = None
        self._stream: _RawRoute | NoiseStream = _RawRoute(self)
        self._pings: dict[int, list[asyncio.Future[float]]] = {}
        self.latency_ms: float | None = None
        self.remote_closed = False
        self.broken: RouteClosedError | None = None
        """Why the route was torn down (a transport of it went away), once it was: reads end
        with this error after the bytes already received, writes raise it."""
        self._closing = False
        self._closed = False
        self._close_done = asyncio.Event()
        self.established = False
        self.route: BidirectionalRoute | None = None
        """The hops (known on the dialing side)."""

    # ------------------------------------------------------------------ identity
    @property
    def local_pk(self) -> PubKey:
        return self.desc.src_pk

    @property
    def remote_pk(self) -> PubKey:
        return self.desc.dst_pk

    @property
    def local_port(self) -> int:
        return self.desc.src_port

    @property
    def remote_port(self) -> int:
        return self.desc.dst_port

    @property
    def encrypted(self) -> bool:
        return isinstance(self._stream, NoiseStream)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handshake_state(self) -> RouteHandshake:
        return self._hs

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        keys = f"fwd={self.fwd.key_route_id} cons={self.cons.key_route_id}"
        return f"<RouteGroup {self.desc} {role} {keys}>"

    # ------------------------------------------------------------------ setup
    async def establish(self) -> None:
        """Run the route handshake (and Noise KK when both ends want it); start the timers.

        Raises :class:`RouteHandshakeError` when the peer's Handshake does not arrive within
        the configured bound; the caller closes the group then.
        """
        try:
            await self._run_handshake()
            if self._hs.encrypted:
                raw = self._stream
                assert isinstance(raw, _RawRoute)
                timeout = self.config.handshake_timeout
                try:
                    if self.initiator:
                        noise = await NoiseStream.initiate(
                            raw, Pattern.KK, self.sk, self.remote_pk, timeout=timeout
                        )
                    else:
                        noise = await NoiseStream.respond(
                            raw, Pattern.KK, self.sk, self.remote_pk, timeout=timeout
                        )
                except (NoiseError, WireError, asyncio.IncompleteReadError) as exc:
                    raise RouteHandshakeError(f"route noise handshake failed: {exc}") from exc
                self._stream = noise
        except RouteClosedError as exc:
            why = self.broken or exc
            raise RouteHandshakeError(f"route closed during the handshake: {why}") from exc
        self.established = True
        self._timers.on_sent(self._loop.time())
        self._timer_task = self._loop.create_task(
            self._timer_loop(), name=f"route-timers-{self.desc}"
        )

    async def _run_handshake(self) -> None:
        hs = self._hs
        while True:
            for payload in hs.packets_to_send():
                await self._send(PacketType.HANDSHAKE, payload)
            if hs.done:
                return
            if hs.failed:
                who = "responder" if self.initiator else "initiator"
                raise RouteHandshakeError(
                    f"no route handshake from the {who} {self.remote_pk} within "
                    f"{self.config.handshake_timeout:g}s"
                )
            if self._closed:
                raise RouteClosedError("route group closed")
            deadline = hs.get_timer()
            self._hs_changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._hs_changed.wait()
            except TimeoutError:
                hs.handle_timer(self._loop.time())

    # ------------------------------------------------------------------ packets from the router
    async def handle_packet(self, ptype: PacketType, payload: bytes) -> None:
        """A packet that arrived under this group's Consume rule."""
        if ptype is PacketType.DATA:
            await self._deliver(payload)
        elif ptype is PacketType.HANDSHAKE:
            try:
                hs = parse_handshake(_Packet(ptype, 0, payload))
            except PacketError:
                return
            was_done = self._hs.done
            self._hs.receive(hs, self._loop.time())
            if was_done:
                # A retransmission after we finished: answer it so the peer's wait ends.
                for p in self._hs.packets_to_send():
                    with contextlib.suppress(ConnectionError):
                        await self._send(PacketType.HANDSHAKE, p)
            self._hs_changed.set()
        elif ptype is PacketType.CLOSE:
            code = payload[0] if payload else CloseCode.REQUESTED
            await self._on_remote_close(code)
        elif ptype is PacketType.PING:
            try:
                ping = parse_ping(_Packet(ptype, 0, payload))
            except PacketError:
                return
            with contextlib.suppress(ConnectionError):
                await self._send(PacketType.PONG, make_pong(0, ping.timestamp_ms).payload)
        elif ptype is PacketType.PONG:
            try:
                stamp = parse_pong(_Packet(ptype, 0, payload))
            except PacketError:
                return
            rtt = max(time.time() * 1000 - stamp, 0.0)
            self.latency_ms = rtt
            for fut in self._pings.pop(stamp, []):
                if not fut.done():
                    fut.set_result(rtt)
        # KeepAlive: the Consume lookup already refreshed the rule; Error: ignored.

    async def _deliver(self, payload: bytes) -> None:
        while len(self._rx) >= RX_BUFFER_LIMIT and not self._closed:
            self._rx_changed.clear()
            await self._rx_changed.wait()
        if self._closed:
            return
        self._rx += payload
        self._rx_changed.set()

    async def _on_remote_close(self, code: int = CloseCode.REQUESTED) -> None:
        self.remote_closed = True
        if code == CloseCode.PATH_BROKEN and self.broken is None and not self._closed:
            self.broken = RouteClosedError(f"route {self.desc} broken: a hop lost its transport")
        if self._closing:
            self._close_done.set()
            return
        if self._closed:
            return
        # Answer with our own Close: it removes the rules of our forward path on every hop
        # (with the same code, so that a broken route is an error at the far end too).
        answer = CloseCode.PATH_BROKEN if self.broken is not None else CloseCode.REQUESTED
        with contextlib.suppress(ConnectionError):
            await self._send(PacketType.CLOSE, bytes([answer]))
        self._finish()

    # ------------------------------------------------------------------ raw byte stream
    async def _raw_read(self, max_bytes: int) -> bytes:
        while not self._rx:
            if self.broken is not None:
                raise self.broken
            if self._closed or self.remote_closed:
                return b""
            self._rx_changed.clear()
            await self._rx_changed.wait()
        n = min(max_bytes, len(self._rx))
        out = bytes(self._rx[:n])
        del self._rx[:n]
        self._rx_changed.set()
        return out

    async def _raw_write(self, data: bytes) -> None:
        view = memoryview(data)
        async with self._write_lock:
            for off in range(0, len(view), DATA_CHUNK):
                if self.broken is not None:
                    raise self.broken
                if self._closed or self._closing or self.remote_closed:
                    raise RouteClosedError("write on a closed route group")
                try:
                    await self._send(PacketType.DATA, bytes(view[off : off + DATA_CHUNK]))
                except RouteClosedError as exc:
                    # the first hop is gone: the route is, and the app must not think otherwise
                    if self.broken is None:
                        self.broken = RouteClosedError(f"route {self.desc} broken: {exc}")
                    self._finish()
                    raise self.broken from exc

    async def _send(self, ptype: PacketType, payload: bytes) -> None:
        assert len(payload) <= MAX_PAYLOAD_SIZE
        await self._send_packet(self.fwd, ptype, payload)
        self._timers.on_sent(self._loop.time())

    # ------------------------------------------------------------------ app surface
    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        return await self._stream.readexactly(n)

    async def write(self, data: bytes) -> None:
        if self.broken is not None:
            raise self.broken
        if self._closed or self._closing:
            raise RouteClosedError("write on a closed route group")
        await self._stream.write(data)

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip of a Ping along the route, in milliseconds (also kept as ``latency_ms``)."""
        stamp = int(time.time() * 1000)
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings.setdefault(stamp, []).append(fut)
        try:
            await self._send(PacketType.PING, make_ping(0, stamp).payload)
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            waiters = self._pings.get(stamp)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._pings[stamp]

    async def close(self) -> None:
        """Send Close along the route, wait (bounded) for the peer's Close, drop the rules."""
        if self._closed or self._closing:
            return
        self._closing = True
        if not self.remote_closed:
            try:
                await self._send(PacketType.CLOSE, bytes([CloseCode.REQUESTED]))
            except ConnectionError as exc:
                log.debug("route %s: sending close failed: %s", self.desc, exc)
            else:
                if self.established and self.config.close_wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.config.close_wait):
                            await self._close_done.wait()
        self._finish()
        task = self._timer_task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def abort(self) -> None:
        """Close without waiting for the peer's answer (failed handshake, shutdown)."""
        if self._closed:
            return
        self._closing = True
        with contextlib.suppress(ConnectionError):
            await self._send(PacketType.CLOSE, bytes([CloseCode.REQUESTED]))
        self._finish()
        task = self._timer_task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def break_route(self, reason: str) -> None:
        """Tear the route down because a transport of it went away: readers get an error after
        the bytes already received, writers get it at once; a Close (path broken) goes along
        the forward path, when that is still there, so the far end learns it too."""
        if self._closed:
            return
        if self.broken is None:
            self.broken = RouteClosedError(f"route {self.desc} broken: {reason}")
        log.info("%s", self.broken)
        self._closing = True
        with contextlib.suppress(ConnectionError):
            await self._send(PacketType.CLOSE, bytes([CloseCode.PATH_BROKEN]))
        self._finish()
        task = self._timer_task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def timers_running(self) -> bool:
        """Whether the keep-alive/ping timer task is alive."""
        return self._timer_task is not None and not self._timer_task.done()

    def _finish(self) -> None:
        """Local teardown: wake readers and writers, stop the timers, let the router forget us."""
        if self._closed:
            return
        self._closed = True
        self._rx_changed.set()
        self._hs_changed.set()
        self._close_done.set()
        for waiters in self._pings.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(RouteClosedError("route group closed"))
                    fut.exception()
        self._pings.clear()
        if self._timer_task is not None and self._timer_task is not asyncio.current_task():
            self._timer_task.cancel()
        self._on_closed(self)

    async def wait_closed(self) -> None:
        await self._close_done.wait()

    async def _timer_loop(self) -> None:
        try:
            while not self._closed:
                deadline = self._timers.get_timer()
                delay = deadline - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for action in self._timers.handle_timer(self._loop.time()):
                    if action is TimerAction.KEEP_ALIVE:
                        await self._send(PacketType.KEEP_ALIVE, b"")
                    else:
                        stamp = int(time.time() * 1000)
                        await self._send(PacketType.PING, make_ping(0, stamp).payload)
        except ConnectionError as exc:
            log.info("route %s: timers stopped: %s", self.desc, exc)
            self._finish()
