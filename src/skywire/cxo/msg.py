"""CXO node wire messages (protocol version 3) and their framing.

A message is one type byte followed by the Skycoin encoding of its body (``Sub``/``Unsub`` are
hand-encoded upstream, but as the raw 33-byte key they are the same bytes). Decoding is strict:
trailing bytes are ``incomplete decoding``.

On a connection each message travels as a *payload*
``seq u32 LE ‖ rseq u32 LE ‖ message`` (``rseq`` = the seq being answered, 0 if none), and each
payload in a *frame* ``u32 BE length ‖ payload``; a length of 0 or over 64 MiB is refused.
:class:`FrameReader` is the sans-I/O reader: bytes in, payloads out.

Ping and Pong exist only to be decoded: a reference node closes the connection on either, so
a node must never send them.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, cast

from skywire.cipher import PubKey, Sig
from skywire.wire import skyenc
from skywire.wire.skyenc import SkyEncError

__all__ = [
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Ack",
    "Err",
    "FrameError",
    "FrameReader",
    "List",
    "Message",
    "MsgError",
    "MsgType",
    "Object",
    "Ok",
    "Packet",
    "PeerInfo",
    "Peers",
    "Ping",
    "Pong",
    "RootMsg",
    "RqList",
    "RqObject",
    "RqPeers",
    "RqPreview",
    "Sub",
    "Syn",
    "Unsub",
    "decode_msg",
    "encode_frame",
    "encode_msg",
]

PROTOCOL_VERSION = 3
MAX_FRAME = 64 << 20

ERR_EMPTY = "empty message"
ERR_INCOMPLETE = "incomplete decoding"


class MsgError(SkyEncError):
    """A message, payload or frame that cannot be decoded (the reference's message text)."""


class FrameError(MsgError):
    """A frame length of 0 or over :data:`MAX_FRAME`; the connection must be closed."""


class MsgType(enum.IntEnum):
    PING = 1
    PONG = 2
    SYN = 3
    ACK = 4
    OK = 5
    ERR = 6
    SUB = 7
    UNSUB = 8
    RQ_LIST = 9
    LIST = 10
    ROOT = 11
    RQ_OBJECT = 12
    OBJECT = 13
    RQ_PREVIEW = 14
    RQ_PEERS = 15
    PEERS = 16


@skyenc.schema
class Ping:
    """Keepalive: declared upstream but never handled; do not send it."""

    TYPE: ClassVar[MsgType] = MsgType.PING


@skyenc.schema
class Pong:
    """Reply to Ping (same caveat)."""

    TYPE: ClassVar[MsgType] = MsgType.PONG


@skyenc.schema
class Syn:
    """Handshake request from the dialer."""

    TYPE: ClassVar[MsgType] = MsgType.SYN
    protocol: int = skyenc.field(skyenc.U16)
    node_id: PubKey = skyenc.field(skyenc.PUBKEY)


@skyenc.schema
class Ack:
    """Handshake accepted."""

    TYPE: ClassVar[MsgType] = MsgType.ACK
    node_id: PubKey = skyenc.field(skyenc.PUBKEY)


@skyenc.schema
class Ok:
    """Generic success reply."""

    TYPE: ClassVar[MsgType] = MsgType.OK


@skyenc.schema
class Err:
    """Generic failure reply (an empty reason answers an RqObject that timed out)."""

    TYPE: ClassVar[MsgType] = MsgType.ERR
    err: str = skyenc.field(skyenc.STRING, default="")


@skyenc.schema
class Sub:
    """Subscribe to a feed; answered by Ok or Err, then a Root push."""

    TYPE: ClassVar[MsgType] = MsgType.SUB
    feed: PubKey = skyenc.field(skyenc.PUBKEY)


@skyenc.schema
class Unsub:
    """Unsubscribe (one-way)."""

    TYPE: ClassVar[MsgType] = MsgType.UNSUB
    feed: PubKey = skyenc.field(skyenc.PUBKEY)


@skyenc.schema
class RqList:
    """Ask for the list of shared feeds."""

    TYPE: ClassVar[MsgType] = MsgType.RQ_LIST


_PUBKEYS = skyenc.Slice(skyenc.PUBKEY)


@skyenc.schema
class List:
    """Reply to RqList."""

    TYPE: ClassVar[MsgType] = MsgType.LIST
    feeds: list[PubKey] = skyenc.field(_PUBKEYS, default_factory=list)


@skyenc.schema
class RootMsg:
    """A new Root of a feed (also the reply to RqPreview); ``value`` is the encoded Root."""

    TYPE: ClassVar[MsgType] = MsgType.ROOT
    feed: PubKey = skyenc.field(skyenc.PUBKEY)
    nonce: int = skyenc.field(skyenc.U64)
    seq: int = skyenc.field(skyenc.U64)
    value: bytes = skyenc.field(skyenc.BYTES)
    sig: Sig = skyenc.field(skyenc.SIG)


@skyenc.schema
class RqObject:
    """Request one object by key."""

    TYPE: ClassVar[MsgType] = MsgType.RQ_OBJECT
    key: bytes = skyenc.field(skyenc.SHA256)


@skyenc.schema
class Object:
    """Reply to RqObject; the receiver checks SHA-256(value) against the key it asked for."""

    TYPE: ClassVar[MsgType] = MsgType.OBJECT
    value: bytes = skyenc.field(skyenc.BYTES)


@skyenc.schema
class RqPreview:
    """Ask for the last Root of a feed without subscribing."""

    TYPE: ClassVar[MsgType] = MsgType.RQ_PREVIEW
    feed: PubKey = skyenc.field(skyenc.PUBKEY)


@skyenc.schema
class RqPeers:
    """Peer exchange request."""

    TYPE: ClassVar[MsgType] = MsgType.RQ_PEERS
    feed: PubKey = skyenc.field(skyenc.PUBKEY)


@skyenc.schema
class PeerInfo:
    pubkey: PubKey = skyenc.field(skyenc.PUBKEY)
    metadata: bytes = skyenc.field(skyenc.BYTES, default=b"")
    tcp_addr: str = skyenc.field(skyenc.STRING, default="")
    udp_addr: str = skyenc.field(skyenc.STRING, default="")


_PEER_INFOS = skyenc.Slice(skyenc.as_codec(PeerInfo))


@skyenc.schema
class Peers:
    """Reply to RqPeers."""

    TYPE: ClassVar[MsgType] = MsgType.PEERS
    feed: PubKey = skyenc.field(skyenc.PUBKEY)
    list: list[PeerInfo] = skyenc.field(_PEER_INFOS, default_factory=list)


Message = (
    Ping
    | Pong
    | Syn
    | Ack
    | Ok
    | Err
    | Sub
    | Unsub
    | RqList
    | List
    | RootMsg
    | RqObject
    | Object
    | RqPreview
    | RqPeers
    | Peers
)

_BY_TYPE: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Ping,
        Pong,
        Syn,
        Ack,
        Ok,
        Err,
        Sub,
        Unsub,
        RqList,
        List,
        RootMsg,
        RqObject,
        Object,
        RqPreview,
        RqPeers,
        Peers,
    )
}


def encode_msg(msg: Message) -> bytes:
    """Type byte ‖ body."""
    return bytes((msg.TYPE,)) + skyenc.encode(msg)


def decode_msg(data: bytes) -> Message:
    """Parse one message strictly."""
    if not data:
        raise MsgError(ERR_EMPTY)
    cls = _BY_TYPE.get(data[0])
    if cls is None:
        raise MsgError(f"invalid message type: Type<{data[0]}>")
    try:
        value, used = skyenc.decode_prefix(skyenc.as_codec(cls), data[1:])
    except MsgError:
        raise
    except SkyEncError as exc:
        raise MsgError(str(exc)) from exc
    if used != len(data) - 1:
        raise MsgError(ERR_INCOMPLETE)
    return cast(Message, value)


_HEADER = struct.Struct("<II")
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Packet:
    """One message with its connection header: ``seq ‖ rseq ‖ message``."""

    seq: int
    rseq: int
    msg: Message

    def encode(self) -> bytes:
        """The payload as handed to the transport."""
        try:
            header = _HEADER.pack(self.seq, self.rseq)
        except struct.error as exc:
            raise MsgError(f"seq or rseq out of range: {exc}") from exc
        return header + encode_msg(self.msg)

    @classmethod
    def decode(cls, payload: bytes) -> Packet:
        if len(payload) < _HEADER.size:
            raise MsgError(skyenc.ERR_BUFFER_UNDERFLOW)
        seq, rseq = _HEADER.unpack_from(payload)
        return cls(seq, rseq, decode_msg(payload[_HEADER.size :]))

    def frame(self) -> bytes:
        return encode_frame(self.encode())


def encode_frame(payload: bytes) -> bytes:
    """``u32 BE length ‖ payload``."""
    if not 0 < len(payload) <= MAX_FRAME:
        raise FrameError(f"frame length {len(payload)} outside 1..{MAX_FRAME}")
    return _LEN.pack(len(payload)) + payload


class FrameReader:
    """Sans-I/O frame reader: :meth:`feed` bytes as they arrive, get back whole payloads.

    A bad length raises :class:`FrameError` as soon as its 4 bytes arrive (nothing of the frame
    is buffered) and the reader refuses all further input.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._need: int | None = None
        self._failed = False

    def feed(self, data: bytes) -> list[bytes]:
        if self._failed:
            raise FrameError("frame reader already failed")
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._need is None:
                if len(self._buf) < 4:
                    return out
                (n,) = _LEN.unpack_from(self._buf)
                if not 0 < n <= self._max:
                    self._failed = True
                    self._buf.clear()
                    raise FrameError(f"frame length {n} outside 1..{self._max}")
                del self._buf[:4]
                self._need = n
            if len(self._buf) < self._need:
                return out
            out.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)
