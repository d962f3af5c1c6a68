"""Routing packets (``pkg/routing/packet.go``): the unit every transport carries between visors.

Layout (all integers big-endian)::

    [0]     type          u8
    [1:5]   route ID      u32   (the ID as known by the visor RECEIVING the packet)
    [5:7]   payload size  u16   (≤ 65535)
    [7:]    payload

Types 0–6 are the [2024] set; 7–19 were added in [2026] (types 8–16 and 18–19 travel with
route ID 0, at transport level). :class:`Packet` is the codec, :class:`PacketDecoder` splits a
byte stream into packets (a transport reads the 7-byte header, then ``size`` bytes), and the
``make_*`` / ``parse_*`` helpers build and read each type's payload.

Every decoder raises a :class:`PacketError` subclass for malformed input, never anything else.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from skywire.wire.errors import WireError

__all__ = [
    "HEADER_SIZE",
    "MAX_PAYLOAD_SIZE",
    "MAX_ROUTE_ID",
    "MAX_SACK_WORDS",
    "TRANSPORT_LEVEL_TYPES",
    "Capability",
    "CloseCode",
    "Handshake",
    "MalformedPayloadError",
    "Packet",
    "PacketDecoder",
    "PacketError",
    "PacketType",
    "PayloadTooBigError",
    "Ping",
    "Sack",
    "TruncatedPacketError",
    "UnknownPacketTypeError",
    "make_close",
    "make_data",
    "make_error",
    "make_handshake",
    "make_keepalive",
    "make_mux_data",
    "make_ping",
    "make_pong",
    "make_sack",
    "parse_close",
    "parse_handshake",
    "parse_mux_data",
    "parse_ping",
    "parse_pong",
    "parse_sack",
]

HEADER_SIZE = 7
"""Bytes before the payload: type (1) ‖ route ID (4) ‖ payload size (2)."""
MAX_PAYLOAD_SIZE = 0xFFFF
"""The largest payload the u16 size field can describe."""
MAX_ROUTE_ID = 0xFFFFFFFF
MAX_SACK_WORDS = 32
"""At most this many 64-bit bitmap words follow a SACK's word count."""

_HEADER = struct.Struct(">BIH")
_I64 = struct.Struct(">q")
_PING = struct.Struct(">qq")
_U32 = struct.Struct(">I")


class PacketError(WireError):
    """A packet or a packet payload could not be encoded or decoded."""


class PayloadTooBigError(PacketError):
    """The payload does not fit the u16 size field (upstream ``ErrPayloadTooBig``)."""

    def __init__(self, size: int | None = None) -> None:
        super().__init__("packet size exceeded")
        self.size = size


class TruncatedPacketError(PacketError):
    """Fewer bytes than the header, or than the header's payload size, announce."""


class UnknownPacketTypeError(PacketError):
    """The type byte names no packet type; ``value`` and ``route_id`` are the header's."""

    def __init__(self, value: int, route_id: int) -> None:
        super().__init__(f"unknown packet type {value}")
        self.value = value
        self.route_id = route_id


class MalformedPayloadError(PacketError):
    """A payload is too short or otherwise malformed for its packet type."""


class PacketType(enum.IntEnum):
    """The packet type byte."""

    DATA = 0
    CLOSE = 1
    KEEP_ALIVE = 2
    HANDSHAKE = 3
    PING = 4
    PONG = 5
    ERROR = 6
    # [2026]
    SACK = 7
    TRANSPORT_PING = 8
    TRANSPORT_PONG = 9
    CASCADE_SETUP = 10
    CASCADE_ACK = 11
    DHT = 12
    SETUP_RPC = 13
    VISOR_RPC = 14
    SKYNET_FORWARD = 15
    APP_DIRECT = 16
    DATAGRAM = 17
    TRANSPORT_BW_PROBE = 18
    TRANSPORT_BW_ACK = 19

    @property
    def go_name(self) -> str:
        """The upstream ``PacketType.String()`` text (``DataPacket``, ``Ping`` …)."""
        return _GO_NAMES.get(self, self.name.title().replace("_", ""))

    @property
    def transport_level(self) -> bool:
        """True for the [2026] types that travel with route ID 0 (not along a route)."""
        return self in TRANSPORT_LEVEL_TYPES


_GO_NAMES = {
    PacketType.DATA: "DataPacket",
    PacketType.CLOSE: "ClosePacket",
    PacketType.KEEP_ALIVE: "KeepAlivePacket",
    PacketType.HANDSHAKE: "Handshake",
    PacketType.PING: "Ping",
    PacketType.PONG: "Pong",
    PacketType.ERROR: "Error",
}

TRANSPORT_LEVEL_TYPES = frozenset(PacketType(v) for v in (*range(8, 17), 18, 19))
"""Types carried with route ID 0, addressed to the transport peer rather than a route."""

_TYPES: tuple[PacketType | None, ...] = tuple(
    PacketType(v) if v in PacketType._value2member_map_ else None for v in range(256)
)


class CloseCode(enum.IntEnum):
    """The one-byte payload of a Close packet."""

    REQUESTED = 0
    """``CloseRequested``: the visor closes the route group."""
    LEG_RETIRED = 1
    """[2026] ``CloseLegRetired``: one leg of a multiplexed route group is retired."""
    PATH_BROKEN = 0x80
    """Ours: a transport of the route went away, so the route is torn down (the ends see an
    error, not an orderly end). The reference closes on any code and passes the code on."""

    def describe(self) -> str:
        return {
            CloseCode.REQUESTED: "Closing requested by visor",
            CloseCode.LEG_RETIRED: "Leg retired",
            CloseCode.PATH_BROKEN: "Path broken",
        }[self]


class Capability(enum.IntFlag):
    """[2026] capability bits of a Handshake payload (little-endian u16 after the flag byte)."""

    NONE = 0
    MUX = 1 << 0
    SACK = 1 << 1
    CASCADE = 1 << 2


def _check_route_id(route_id: int) -> None:
    if not 0 <= route_id <= MAX_ROUTE_ID:
        raise PacketError(f"route ID {route_id} out of range 0..{MAX_ROUTE_ID}")


@dataclass(frozen=True, slots=True)
class Packet:
    """One routing packet. Construction checks the route ID range and the payload size."""

    type: PacketType
    route_id: int
    payload: bytes = field(default=b"")

    def __post_init__(self) -> None:
        _check_route_id(self.route_id)
        if len(self.payload) > MAX_PAYLOAD_SIZE:
            raise PayloadTooBigError(len(self.payload))
        if not isinstance(self.type, PacketType):
            value = int(self.type)
            typ = _TYPES[value] if 0 <= value <= 0xFF else None
            if typ is None:
                raise UnknownPacketTypeError(value, self.route_id)
            object.__setattr__(self, "type", typ)
        if not isinstance(self.payload, bytes):
            object.__setattr__(self, "payload", bytes(self.payload))

    @property
    def size(self) -> int:
        """The payload size field."""
        return len(self.payload)

    def encode(self) -> bytes:
        return _HEADER.pack(self.type, self.route_id, len(self.payload)) + self.payload

    def __bytes__(self) -> bytes:
        return self.encode()

    @staticmethod
    def decode_header(header: bytes) -> tuple[PacketType, int, int]:
        """``(type, route_id, payload_size)`` from the first 7 bytes of ``header``."""
        if len(header) < HEADER_SIZE:
            raise TruncatedPacketError(
                f"packet header needs {HEADER_SIZE} bytes, got {len(header)}"
            )
        value, route_id, size = _HEADER.unpack_from(header)
        typ = _TYPES[value]
        if typ is None:
            raise UnknownPacketTypeError(value, route_id)
        return typ, route_id, size

    @classmethod
    def decode(cls, data: bytes) -> Packet:
        """Parse exactly one packet; trailing or missing bytes are an error."""
        typ, route_id, size = cls.decode_header(data)
        end = HEADER_SIZE + size
        if len(data) < end:
            raise TruncatedPacketError(
                f"packet announces {size} payload bytes, {len(data) - HEADER_SIZE} present"
            )
        if len(data) > end:
            raise PacketError(f"{len(data) - end} bytes after the packet payload")
        return cls(typ, route_id, bytes(data[HEADER_SIZE:end]))

    def __str__(self) -> str:
        return f"{self.type.go_name}(rtID:{self.route_id}, size:{self.size})"


class PacketDecoder:
    """Split a byte stream into packets (sans-I/O): :meth:`feed` bytes, get whole packets.

    A packet with an unknown type byte is skipped whole (as the upstream router drops it) and
    counted in :attr:`skipped_unknown`; the stream stays in sync.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped_unknown = 0

    @property
    def pending(self) -> int:
        """Bytes buffered that do not make a whole packet yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER_SIZE:
            value, route_id, size = _HEADER.unpack_from(buf, pos)
            end = pos + HEADER_SIZE + size
            if end > len(buf):
                break
            typ = _TYPES[value]
            if typ is None:
                self.skipped_unknown += 1
            else:
                out.append(Packet(typ, route_id, bytes(buf[pos + HEADER_SIZE : end])))
            pos = end
        del buf[:pos]
        return out


# -- builders ------------------------------------------------------------------------------


def make_data(route_id: int, payload: bytes) -> Packet:
    """A Data packet; a payload over 65535 bytes raises :class:`PayloadTooBigError`."""
    return Packet(PacketType.DATA, route_id, payload)


def make_mux_data(route_id: int, seq: int, payload: bytes) -> Packet:
    """[2026] mux-mode Data: a 4-byte BE sequence number, then the application bytes."""
    if not 0 <= seq <= 0xFFFFFFFF:
        raise PacketError(f"sequence number {seq} out of range")
    return Packet(PacketType.DATA, route_id, _U32.pack(seq) + payload)


def make_close(route_id: int, code: CloseCode | int = CloseCode.REQUESTED) -> Packet:
    if not 0 <= code <= 0xFF:
        raise PacketError(f"close code {code} out of range")
    return Packet(PacketType.CLOSE, route_id, bytes([code]))


def make_keepalive(route_id: int) -> Packet:
    return Packet(PacketType.KEEP_ALIVE, route_id)


def make_handshake(
    route_id: int, encrypt: bool, capabilities: Capability | int | None = None
) -> Packet:
    """A route Handshake.

    ``capabilities=None`` gives the [2024] one-byte payload (encryption flag only). Any other
    value gives the [2026] three-byte form: flag ‖ capability bitmap (u16 little-endian); a peer
    speaking only the [2024] types advertises ``Capability.NONE``.
    """
    flag = 1 if encrypt else 0
    if capabilities is None:
        return Packet(PacketType.HANDSHAKE, route_id, bytes([flag]))
    caps = int(capabilities)
    if not 0 <= caps <= 0xFFFF:
        raise PacketError(f"capability bitmap {caps:#x} does not fit 16 bits")
    return Packet(PacketType.HANDSHAKE, route_id, bytes([flag]) + caps.to_bytes(2, "little"))


def make_ping(route_id: int, timestamp_ms: int, throughput: int = 0) -> Packet:
    """Ping: int64 timestamp (ms) ‖ int64 throughput."""
    try:
        return Packet(PacketType.PING, route_id, _PING.pack(timestamp_ms, throughput))
    except struct.error as exc:
        raise PacketError(f"ping fields out of int64 range: {exc}") from exc


def make_pong(route_id: int, timestamp_ms: int) -> Packet:
    """Pong: the echoed int64 timestamp ‖ 8 zero bytes (size field 16, as upstream)."""
    try:
        return Packet(PacketType.PONG, route_id, _PING.pack(timestamp_ms, 0))
    except struct.error as exc:
        raise PacketError(f"pong timestamp out of int64 range: {exc}") from exc


def make_error(route_id: int, message: bytes | str) -> Packet:
    """An Error packet; the payload is the error text."""
    payload = message.encode() if isinstance(message, str) else bytes(message)
    return Packet(PacketType.ERROR, route_id, payload)


def make_sack(route_id: int, last_contiguous: int, words: Sequence[int] = ()) -> Packet:
    """[2026] SACK: last contiguous seq (u32) ‖ word count (u8 ≤ 32) ‖ u64 bitmap words."""
    if not 0 <= last_contiguous <= 0xFFFFFFFF:
        raise PacketError(f"sequence number {last_contiguous} out of range")
    if len(words) > MAX_SACK_WORDS:
        raise PacketError(f"{len(words)} SACK words, at most {MAX_SACK_WORDS}")
    try:
        body = struct.pack(f">IB{len(words)}Q", last_contiguous, len(words), *words)
    except struct.error as exc:
        raise PacketError(f"SACK word out of u64 range: {exc}") from exc
    return Packet(PacketType.SACK, route_id, body)


# -- payload parsers -----------------------------------------------------------------------


def _expect(packet: Packet, typ: PacketType) -> bytes:
    if packet.type is not typ:
        raise MalformedPayloadError(f"expected a {typ.go_name} packet, got {packet.type.go_name}")
    return packet.payload


@dataclass(frozen=True, slots=True)
class Handshake:
    """A decoded Handshake payload."""

    encrypt: bool
    capabilities: Capability
    legacy: bool
    """True when the payload was the [2024] one-byte form."""


def parse_handshake(packet: Packet) -> Handshake:
    """Read a Handshake payload; bytes past the bitmap are ignored (forward compatibility)."""
    payload = _expect(packet, PacketType.HANDSHAKE)
    if not payload:
        raise MalformedPayloadError("empty handshake payload")
    encrypt = payload[0] == 1
    if len(payload) < 3:
        return Handshake(encrypt, Capability.NONE, legacy=True)
    caps = Capability(int.from_bytes(payload[1:3], "little"))
    return Handshake(encrypt, caps, legacy=False)


def parse_close(packet: Packet) -> CloseCode | int:
    """The close code (a :class:`CloseCode` when known, else the raw byte)."""
    payload = _expect(packet, PacketType.CLOSE)
    if not payload:
        raise MalformedPayloadError("empty close payload")
    code = payload[0]
    return CloseCode(code) if code in CloseCode._value2member_map_ else code


@dataclass(frozen=True, slots=True)
class Ping:
    timestamp_ms: int
    throughput: int


def parse_ping(packet: Packet) -> Ping:
    payload = _expect(packet, PacketType.PING)
    if len(payload) < _PING.size:
        raise MalformedPayloadError(f"ping payload needs 16 bytes, got {len(payload)}")
    ts, throughput = _PING.unpack_from(payload)
    return Ping(ts, throughput)


def parse_pong(packet: Packet) -> int:
    """The echoed timestamp (ms)."""
    payload = _expect(packet, PacketType.PONG)
    if len(payload) < _I64.size:
        raise MalformedPayloadError(f"pong payload needs 8 bytes, got {len(payload)}")
    ts: int = _I64.unpack_from(payload)[0]
    return ts


def parse_mux_data(packet: Packet) -> tuple[int, bytes]:
    """[2026] mux-mode Data: ``(sequence number, application bytes)``."""
    payload = _expect(packet, PacketType.DATA)
    if len(payload) < _U32.size:
        raise MalformedPayloadError(f"mux data payload needs 4 bytes, got {len(payload)}")
    seq: int = _U32.unpack_from(payload)[0]
    return seq, payload[4:]


@dataclass(frozen=True, slots=True)
class Sack:
    last_contiguous: int
    words: tuple[int, ...]


def parse_sack(packet: Packet) -> Sack:
    payload = _expect(packet, PacketType.SACK)
    if len(payload) < 5:
        raise MalformedPayloadError(f"SACK payload needs 5 bytes, got {len(payload)}")
    last, count = struct.unpack_from(">IB", payload)
    if count > MAX_SACK_WORDS:
        raise MalformedPayloadError(f"SACK announces {count} words, at most {MAX_SACK_WORDS}")
    if len(payload) != 5 + 8 * count:
        raise MalformedPayloadError(
            f"SACK announces {count} words, payload has {len(payload) - 5} bytes after the count"
        )
    words = struct.unpack_from(f">{count}Q", payload, 5)
    return Sack(last, tuple(words))
