"""Gob descriptors of the Go types skywire and dmsg put on the wire.

Structs here are dict-valued (keys are the Go field names); bind them to dataclasses by building
a :class:`~skywire.wire.gob.GoStruct` with the same name and fields and a ``py_type``.
"""

from __future__ import annotations

import uuid

from skywire.cipher import PubKey
from skywire.wire.gob import (
    GoArray,
    GoBinaryMarshaler,
    GoBool,
    GoBytes,
    GoInt64,
    GoSlice,
    GoStruct,
    GoUint8,
    GoUint16,
    GoUint32,
)

__all__ = [
    "BIDIRECTIONAL_ROUTE",
    "DMSG_ADDR",
    "EDGE_RULES",
    "HOP",
    "PUBKEY",
    "ROUTE_DESCRIPTOR",
    "ROUTE_ID",
    "ROUTE_IDS",
    "RULE",
    "RULES",
    "SHA256",
    "STREAM_REQUEST",
    "STREAM_RESPONSE",
    "UUID",
]


def _uuid_from_bytes(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(data))


def _uuid_to_bytes(value: uuid.UUID) -> bytes:
    return value.bytes


PUBKEY = GoBinaryMarshaler("PubKey", PubKey, zero=lambda: PubKey.NULL)
"""``cipher.PubKey``: 33 bytes through ``MarshalBinary``; the null key is the zero value."""

UUID = GoBinaryMarshaler(
    "UUID",
    uuid.UUID,
    marshal=_uuid_to_bytes,
    unmarshal=_uuid_from_bytes,
    zero=lambda: uuid.UUID(int=0),
)
"""``github.com/google/uuid.UUID``: 16 bytes through ``MarshalBinary``."""

SHA256 = GoArray(GoUint8, 32, "SHA256")
"""``cipher.SHA256`` (``[32]byte``): 32 separate gob uints, Python ``bytes``."""

DMSG_ADDR = GoStruct("Addr", [("PK", PUBKEY), ("Port", GoUint16)])
STREAM_REQUEST = GoStruct(
    "StreamRequest",
    [("Timestamp", GoInt64), ("SrcAddr", DMSG_ADDR), ("DstAddr", DMSG_ADDR), ("NoiseMsg", GoBytes)],
)
STREAM_RESPONSE = GoStruct(
    "StreamResponse",
    [("ReqHash", SHA256), ("Accepted", GoBool), ("ErrCode", GoUint16), ("NoiseMsg", GoBytes)],
)

ROUTE_ID = GoUint32
"""``routing.RouteID`` (uint32)."""
ROUTE_IDS = GoSlice(ROUTE_ID)
"""``[]routing.RouteID`` as sent at top level (``ReserveIDs`` reply)."""
ROUTE_DESCRIPTOR = GoArray(GoUint8, 70, "RouteDescriptor")
"""``routing.RouteDescriptor`` (``[70]byte``, element by element)."""
RULE = GoBytes
"""``routing.Rule`` (a named ``[]byte``: plain gob bytes)."""
RULES = GoSlice(RULE)
"""``[]routing.Rule`` as sent at top level (``AddIntermediaryRules`` argument)."""
EDGE_RULES = GoStruct(
    "EdgeRules", [("Desc", ROUTE_DESCRIPTOR), ("Forward", RULE), ("Reverse", RULE)]
)
HOP = GoStruct("Hop", [("TpID", UUID), ("From", PUBKEY), ("To", PUBKEY)])
_HOPS = GoSlice(HOP, "[]routing.Hop")
BIDIRECTIONAL_ROUTE = GoStruct(
    "BidirectionalRoute",
    [("Desc", ROUTE_DESCRIPTOR), ("KeepAlive", GoInt64), ("Forward", _HOPS), ("Reverse", _HOPS)],
)
"""``routing.BidirectionalRoute`` (``KeepAlive`` is a ``time.Duration`` in nanoseconds)."""
