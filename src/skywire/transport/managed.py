"""One settled transport: routing packets in and out over its carrier, byte counters and a
transport-level latency probe (packet types 8/9, route ID 0)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from dataclasses import dataclass, field

from skywire.cipher import PubKey
from skywire.transport.entry import Entry
from skywire.transport.network import Conn
from skywire.wire.errors import WireError
from skywire.wire.noise_aio import NoiseStream

__all__ = [
    "HEADER_LEN",
    "PACKET_HEADER",
    "TRANSPORT_PING",
    "TRANSPORT_PONG",
    "ManagedTransport",
    "TransportError",
    "TransportStats",
]

PACKET_HEADER = struct.Struct(">BIH")
HEADER_LEN = PACKET_HEADER.size  # 7
TRANSPORT_PING = 8  # transport-level packet types (route ID 0)
TRANSPORT_PONG = 9


class TransportError(Exception):
    """A transport could not be made, or is gone."""


@dataclass
class TransportStats:
    sent: int = 0
    received: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    created: float = field(default_factory=time.time)


class ManagedTransport:
    """A settled transport: packet I/O with byte counters and a latency probe."""

    def __init__(self, entry: Entry, conn: Conn, local_pk: PubKey) -> None:
        self.entry = entry
        self.conn = conn
        self.local_pk = local_pk
        self.stats = TransportStats()
        self.latency_ms: float | None = None
        self.inbox: asyncio.Queue[tuple[int, int, bytes]] = asyncio.Queue(1024)
        self._write_lock = asyncio.Lock()
        self._pings: dict[int, asyncio.Future[float]] = {}
        self._closed = asyncio.Event()
        self.deleted = False
        self.last_received = time.monotonic()
        self.answers_pings = False
        """True once the peer answered a transport-level ping; the reference visor never does
        (it drops packet types it does not know), so its silence proves nothing."""
        self.unanswered_pings = 0

    @property
    def id(self) -> uuid.UUID:
        return self.entry.id

    @property
    def type(self) -> str:
        return self.entry.type

    @property
    def remote_pk(self) -> PubKey:
        return self.entry.remote_edge(self.local_pk)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def write_packet(self, ptype: int, route_id: int, payload: bytes = b"") -> None:
        """Send one routing packet."""
        if self.closed:
            raise TransportError(f"transport {self.id} is closed")
        if len(payload) > 0xFFFF:
            raise TransportError("packet payload larger than 65535 bytes")
        data = PACKET_HEADER.pack(ptype, route_id, len(payload)) + payload
        async with self._write_lock:
            try:
                await self.conn.stream.write(data)
            except (ConnectionError, WireError, OSError) as exc:
                raise TransportError(f"transport {self.id}: {exc}") from exc
        self.stats.sent += len(payload)
        self.stats.packets_sent += 1

    async def read_packet(self) -> tuple[int, int, bytes]:
        """The next packet from the peer (``EOFError`` when the transport ends)."""
        try:
            head = await self.conn.stream.readexactly(HEADER_LEN)
            ptype, route_id, size = PACKET_HEADER.unpack(head)
            payload = await self.conn.stream.readexactly(size) if size else b""
        except asyncio.IncompleteReadError as exc:
            raise EOFError(f"transport {self.id} ended") from exc
        self.stats.received += len(payload)
        self.stats.packets_received += 1
        self.last_received = time.monotonic()
        return ptype, route_id, payload

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip of a transport-level ping, in milliseconds (also kept as ``latency_ms``)."""
        stamp = time.monotonic_ns()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings[stamp] = fut
        try:
            await self.write_packet(TRANSPORT_PING, 0, struct.pack(">q", stamp))
            async with asyncio.timeout(timeout):
                rtt = await fut
        finally:
            self._pings.pop(stamp, None)
        self.latency_ms = rtt
        return rtt

    def _on_pong(self, payload: bytes) -> None:
        if len(payload) < 8:
            return
        (stamp,) = struct.unpack(">q", payload[:8])
        fut = self._pings.get(stamp)
        if fut is not None and not fut.done():
            self.answers_pings = True
            fut.set_result((time.monotonic_ns() - stamp) / 1e6)

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(TransportError("transport closed"))
                fut.exception()
        with contextlib.suppress(ConnectionError, WireError, OSError):
            await self.conn.stream.close()

    def summary(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "local_pk": self.local_pk.hex(),
            "remote_pk": self.remote_pk.hex(),
            "type": self.type,
            "label": self.entry.label,
            "is_up": not self.closed,
            "latency_ms": self.latency_ms,
            "sent": self.stats.sent,
            "received": self.stats.received,
            "post_quantum": self.post_quantum,
        }

    @property
    def post_quantum(self) -> bool:
        """Whether the transport's Noise keys are the hybrid (ML-KEM-768) ones."""
        stream = self.conn.stream
        return isinstance(stream, NoiseStream) and stream.noise.pq_active
