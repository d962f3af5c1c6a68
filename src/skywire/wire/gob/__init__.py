"""Go ``encoding/gob``, sans-I/O: type descriptors, a stateful encoder and an incremental decoder.

Python values are mapped to Go types through small immutable descriptors (:class:`GoType`
subclasses). A gob stream is a sequence of messages ``uint(len) ‖ int(type id) ‖ payload``; a
negative id introduces a type definition (a ``wireType``), a positive one a value.

* :class:`GobEncoder` keeps what one Go ``gob.Encoder`` keeps: the set of type ids already
  described on its stream. Type ids come from a :class:`GobTypeRegistry`, which plays the part of
  Go's process-wide id table (a fresh one starts at 64 like a fresh Go ≥ 1.21 process).
* :class:`GobDecoder` is fed bytes and hands out decoded values. It learns type ids from the
  definitions it reads and never assumes a number. Decoding into a descriptor matches struct
  fields by name (unknown wire fields are skipped, missing ones get their zero value); decoding
  with no descriptor returns plain Python data.

Every malformed, truncated or oversized input raises :class:`~skywire.wire.errors.GobError`.
"""

from __future__ import annotations

from skywire.wire.errors import GobError
from skywire.wire.gob.decode import GobDecoder, GobValue, gob_decode, gob_decode_prefix
from skywire.wire.gob.encode import GobEncoder, GobTypeRegistry, gob_encode
from skywire.wire.gob.types import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_TYPES,
    FIRST_USER_TYPE_ID,
    GO120_FIRST_USER_TYPE_ID,
    BinaryMarshaler,
    GoAny,
    GoAnyType,
    GoArray,
    GoBinaryMarshaler,
    GobLimitError,
    GoBool,
    GoBoolType,
    GobTypeMismatchError,
    GoBytes,
    GoBytesType,
    GoComplex64,
    GoComplex128,
    GoComplexType,
    GoField,
    GoFloat32,
    GoFloat64,
    GoFloatType,
    GoInt,
    GoInt8,
    GoInt16,
    GoInt32,
    GoInt64,
    GoInterface,
    GoInterfaceValue,
    GoIntType,
    GoMap,
    GoPtr,
    GoSlice,
    GoString,
    GoStringType,
    GoStruct,
    GoType,
    GoUint,
    GoUint8,
    GoUint16,
    GoUint32,
    GoUint64,
    GoUintType,
    WireType,
)
from skywire.wire.gob.types import FieldSpec as FieldSpec

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_TYPES",
    "FIRST_USER_TYPE_ID",
    "GO120_FIRST_USER_TYPE_ID",
    "BinaryMarshaler",
    "GoAny",
    "GoAnyType",
    "GoArray",
    "GoBinaryMarshaler",
    "GoBool",
    "GoBoolType",
    "GoBytes",
    "GoBytesType",
    "GoComplex64",
    "GoComplex128",
    "GoComplexType",
    "GoField",
    "GoFloat32",
    "GoFloat64",
    "GoFloatType",
    "GoInt",
    "GoInt8",
    "GoInt16",
    "GoInt32",
    "GoInt64",
    "GoIntType",
    "GoInterface",
    "GoInterfaceValue",
    "GoMap",
    "GoPtr",
    "GoSlice",
    "GoString",
    "GoStringType",
    "GoStruct",
    "GoType",
    "GoUint",
    "GoUint8",
    "GoUint16",
    "GoUint32",
    "GoUint64",
    "GoUintType",
    "GobDecoder",
    "GobEncoder",
    "GobError",
    "GobLimitError",
    "GobTypeMismatchError",
    "GobTypeRegistry",
    "GobValue",
    "WireType",
    "gob_decode",
    "gob_decode_prefix",
    "gob_encode",
]
