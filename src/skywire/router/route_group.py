"""Route groups: one bidirectional logical connection over a route (``route_group.go``).

A route group holds this visor's two edge rules of a route: the **Forward** rule (packets leave
as ``Data(route_id = fwd.next_route_id)`` on transport ``fwd.next_tp_id``) and the **Consume**
rule (packets arriving under ``cons.key_route_id`` are this group's). The group's descriptor
is the Forward rule's, seen from this edge (``src`` = this visor); the Consume rule carries the
arriving path's descriptor (its inverse), as upstream setup nodes make it.

The protocol state lives in two sans-I/O cores, tested without sockets or sleeps:

* :class:`RouteHandshake` — the route handshake ([2026] rules): the initiator sends a Handshake
  right away and **retransmits** it until the responder's arrives; the responder answers every
  Handshake it gets; neither waits longer than ``timeout`` and a missing Handshake **fails** the
  dial instead of silently running in plaintext.
* :class:`RouteTimers` — KeepAlive after ``keep_alive/2`` without sending, Ping every
  ``ping_interval`` (the Pong echo gives the route latency).

:class:`RouteGroup` is the asyncio shell: a :class:`~skywire.wire.stream.ByteStream` apps read
and write. When both ends advertise encryption the bytes run through Noise KK (initiator = the
dialer, static keys = the two visor keys), framed as in spec §3.6, inside Data packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from skywire.cipher import PubKey, SecKey
from skywire.router.setup_client import BidirectionalRoute
from skywire.routing.packet import (
    MAX_PAYLOAD_SIZE,
    Capability,
    CloseCode,
    Handshake,
    PacketError,
    PacketType,
    make_handshake,
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

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""[2026] bounded wait for the peer's Handshake (PR #3027 / #4057)."""
DEFAULT_HANDSHAKE_RETRANSMIT = 1.0
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


# ---------------------------------------------------------------------------------- sans-I/O


class RouteHandshake:
    """The route handshake as a state machine; time enters only as an argument.

    Drive it with :meth:`receive` (a Handshake packet arrived), :meth:`handle_timer` (the clock
    reached :meth:`get_timer`) and drain :meth:`packets_to_send` after each call.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        encrypt: bool,
        now: float,
        timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        retransmit: float = DEFAULT_HANDSHAKE_RETRANSMIT,
        capabilities: Capability = Capability.NONE,
    ) -> None:
        if timeout <= 0 or retransmit <= 0:
            raise ValueError("handshake timeout and retransmit interval must be positive")
        self.initiator = initiator
        self.encrypt = encrypt
        self.capabilities = capabilities
        self.deadline = now + timeout
        self.retransmit = retransmit
        self.peer: Handshake | None = None
        self.failed = False
        self.sent = 0
        self._out = 0
        self._next_send: float | None = None
        if initiator:
            self._out = 1
            self._next_send = now + retransmit

    @property
    def done(self) -> bool:
        """The handshake completed: the peer's Handshake arrived (and ours went out)."""
        return self.peer is not None and not self.failed

    @property
    def encrypted(self) -> bool:
        """Both ends advertise encryption: run Noise KK over the route."""
        return self.done and self.encrypt and self.peer is not None and self.peer.encrypt

    def payload(self) -> bytes:
        """Our Handshake payload ([2026] form: flag ‖ capability bitmap LE)."""
        return make_handshake(0, self.encrypt, self.capabilities).payload

    def packets_to_send(self) -> list[bytes]:
        """Handshake payloads to send now (each one a Handshake packet)."""
        out = [self.payload() for _ in range(self._out)]
        self.sent += self._out
        self._out = 0
        return out

    def receive(self, handshake: Handshake, now: float) -> None:
        if self.failed:
            return
        if self.initiator:
            if self.peer is None:
                self.peer = handshake
                self._next_send = None
            return
        # Responder: answer every Handshake; a repeat means ours was lost.
        if now <= self.deadline or self.peer is not None:
            if self.peer is None:
                self.peer = handshake
            self._out += 1

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (``None``: nothing pending)."""
        if self.done or self.failed:
            return None
        if self._next_send is not None:
            return min(self._next_send, self.deadline)
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.done or self.failed:
            return
        if now >= self.deadline:
            self.failed = True
            self._out = 0
            self._next_send = None
            return
        if self._next_send is not None and now >= self._next_send:
            self._out += 1
            self._next_send = now + self.retransmit


class TimerAction(enum.Enum):
    KEEP_ALIVE = "keep_alive"
    PING = "ping"


class RouteTimers:
    """KeepAlive and Ping schedule of a running route group (sans-I/O).

    A KeepAlive goes out when nothing was sent for ``keep_alive_interval`` seconds; a Ping every
    ``ping_interval`` seconds (``0`` disables pings). Report every send with :meth:`on_sent`.
    """

    def __init__(self, keep_alive_interval: float, ping_interval: float, now: float) -> None:
        if keep_alive_interval <= 0:
            raise ValueError("keep-alive interval must be positive")
        self.keep_alive_interval = keep_alive_interval
        self.ping_interval = ping_interval
        self.last_sent = now
        self.next_ping = now + ping_interval if ping_interval > 0 else None

    def on_sent(self, now: float) -> None:
        self.last_sent = max(self.last_sent, now)

    def get_timer(self) -> float:
        due = self.last_sent + self.keep_alive_interval
        return due if self.next_ping is None else min(due, self.next_ping)

    def handle_timer(self, now: float) -> list[TimerAction]:
        out: list[TimerAction] = []
        if self.next_ping is not None and now >= self.next_ping:
            out.append(TimerAction.PING)
            self.next_ping = now + self.ping_interval
            self.last_sent = now
        if now >= self.last_sent + self.keep_alive_interval:
            out.append(TimerAction.KEEP_ALIVE)
            self.last_sent = now
        return out


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
            raise RouteHandshakeError(f"route closed during the handshake: {exc}") from exc
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
            await self._on_remote_close()
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

    async def _on_remote_close(self) -> None:
        self.remote_closed = True
        if self._closing:
            self._close_done.set()
            return
        if self._closed:
            return
        # Answer with our own Close: it removes the rules of our forward path on every hop.
        with contextlib.suppress(ConnectionError):
            await self._send(PacketType.CLOSE, bytes([CloseCode.REQUESTED]))
        self._finish()

    # ------------------------------------------------------------------ raw byte stream
    async def _raw_read(self, max_bytes: int) -> bytes:
        while not self._rx:
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
                if self._closed or self._closing or self.remote_closed:
                    raise RouteClosedError("write on a closed route group")
                await self._send(PacketType.DATA, bytes(view[off : off + DATA_CHUNK]))

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
