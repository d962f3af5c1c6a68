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

import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from skywire.wire.errors import GobError

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

FIRST_USER_TYPE_ID = 64
"""First user type id of a fresh Go ≥ 1.21 process (the vectors' default)."""
GO120_FIRST_USER_TYPE_ID = 65
"""First user type id of a fresh Go ≤ 1.20 process."""

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_TYPES = 4096

_MAX_UINT64 = (1 << 64) - 1
_MAX_FLOAT32 = 3.4028234663852886e38


class GobLimitError(GobError):
    """A configured limit (message size, nesting depth, number of types) was exceeded."""


class GobTypeMismatchError(GobError):
    """The wire type of a value cannot be decoded into the requested descriptor."""


@runtime_checkable
class BinaryMarshaler(Protocol):
    """A Python class standing for a Go type that implements ``encoding.BinaryMarshaler``."""

    def marshal_binary(self) -> bytes: ...

    @classmethod
    def unmarshal_binary(cls, data: bytes) -> Self: ...


# --------------------------------------------------------------------------------------------
# Descriptors
# --------------------------------------------------------------------------------------------


class GoType:
    """Base class of every Go type descriptor."""

    __slots__ = ()

    def describe(self) -> str:
        """A Go-like spelling of the type, for error messages."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class GoIntType(GoType):
    """A signed Go integer (``int``/``intN``); gob id 2. Python ``int``."""

    bits: int = 64

    def describe(self) -> str:
        return f"int{self.bits}"


@dataclass(frozen=True, slots=True)
class GoUintType(GoType):
    """An unsigned Go integer (``uint``/``uintN``, named ones too); gob id 3. Python ``int``."""

    bits: int = 64

    def describe(self) -> str:
        return f"uint{self.bits}"


@dataclass(frozen=True, slots=True)
class GoBoolType(GoType):
    """Go ``bool``; gob id 1. Python ``bool``."""

    def describe(self) -> str:
        return "bool"


@dataclass(frozen=True, slots=True)
class GoFloatType(GoType):
    """Go ``float64``/``float32``; gob id 4. Python ``float``."""

    bits: int = 64

    def describe(self) -> str:
        return f"float{self.bits}"


@dataclass(frozen=True, slots=True)
class GoComplexType(GoType):
    """Go ``complex128``/``complex64``; gob id 7. Python ``complex``."""

    bits: int = 128

    def describe(self) -> str:
        return f"complex{self.bits}"


@dataclass(frozen=True, slots=True)
class GoStringType(GoType):
    """Go ``string``; gob id 6. Python ``str`` (non-UTF-8 bytes survive as surrogates)."""

    def describe(self) -> str:
        return "string"


@dataclass(frozen=True, slots=True)
class GoBytesType(GoType):
    """Go ``[]byte`` and every named ``[]uint8``; gob id 5. Python ``bytes``."""

    def describe(self) -> str:
        return "[]byte"


@dataclass(frozen=True, slots=True)
class GoAnyType(GoType):
    """Decode-only target: decode whatever the wire holds as plain Python data."""

    def describe(self) -> str:
        return "any"


@dataclass(frozen=True, slots=True)
class GoArray(GoType):
    """Go ``[N]T``; values are ``bytes`` when ``T`` is ``uint8``, else lists of length N.

    Gob sends an array as ``uint(N)`` followed by N elements, so ``[32]byte`` is 32 gob uints,
    not a byte string. ``name`` is the Go type name sent in the definition (``"SHA256"``).
    """

    elem: GoType
    length: int
    name: str = ""

    def __post_init__(self) -> None:
        if self.length < 0:
            raise ValueError("array length must not be negative")

    def describe(self) -> str:
        return self.name or f"[{self.length}]{self.elem.describe()}"


@dataclass(frozen=True, slots=True)
class GoSlice(GoType):
    """Go ``[]T`` for ``T`` other than ``uint8`` (use :data:`GoBytes` for that); Python list.

    ``name`` is what Go puts in the definition: the type's name, or for an unnamed slice used
    as a struct field its Go spelling (``"[]routing.Hop"``), or ``""`` at top level.
    """

    elem: GoType
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.elem, GoUintType) and self.elem.bits == 8:
            raise ValueError("[]uint8 is gob bytes: use GoBytes")

    def describe(self) -> str:
        return self.name or f"[]{self.elem.describe()}"


@dataclass(frozen=True, slots=True)
class GoMap(GoType):
    """Go ``map[K]V``; Python dict. ``None`` is a nil map (omitted from structs)."""

    key: GoType
    elem: GoType
    name: str = ""

    def describe(self) -> str:
        return self.name or f"map[{self.key.describe()}]{self.elem.describe()}"


@dataclass(frozen=True, slots=True)
class GoPtr(GoType):
    """Go ``*T``: transparent on the wire; ``None`` is nil (omitted, and decoded when absent)."""

    elem: GoType

    def describe(self) -> str:
        return "*" + self.elem.describe()


@dataclass(frozen=True, slots=True)
class GoField:
    """One struct field: Go name, descriptor and the Python attribute (defaults to the Go name)."""

    name: str
    type: GoType
    attr: str = ""

    @property
    def py_name(self) -> str:
        return self.attr or self.name


FieldSpec = GoField | tuple[str, GoType] | tuple[str, GoType, str]


class GoStruct(GoType):
    """A Go struct. Field order fixes the gob field numbers.

    ``fields`` holds :class:`GoField` or ``(go_name, type)`` / ``(go_name, type, attr)`` tuples.
    With ``py_type`` the decoder builds ``py_type(**{attr: value})`` and the encoder reads
    ``getattr(value, attr)``; without it values are dicts keyed by Go field name. The encoder
    also accepts any mapping keyed by Go field name.
    """

    __slots__ = ("_by_name", "_hash", "fields", "name", "py_type")

    name: str
    fields: tuple[GoField, ...]
    py_type: Callable[..., Any] | None

    def __init__(
        self,
        name: str,
        fields: Iterable[FieldSpec] = (),
        py_type: Callable[..., Any] | None = None,
    ) -> None:
        normalised: list[GoField] = []
        for spec in fields:
            if isinstance(spec, GoField):
                normalised.append(spec)
            elif len(spec) == 2:
                normalised.append(GoField(spec[0], spec[1]))
            else:
                normalised.append(GoField(spec[0], spec[1], spec[2]))
        self.name = name
        self.fields = tuple(normalised)
        self.py_type = py_type
        self._by_name = {f.name: f for f in reversed(self.fields)}
        self._hash = hash((self.name, self.fields, self.py_type))

    def field(self, name: str) -> GoField | None:
        """The field with Go name ``name``, if any."""
        return self._by_name.get(name)

    def describe(self) -> str:
        return self.name or "struct{...}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GoStruct):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.name == other.name
            and self.fields == other.fields
            and self.py_type == other.py_type
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"GoStruct({self.name!r}, {list(self.fields)!r})"


_MARSHALER_KINDS = ("GobEncoderT", "BinaryMarshalerT", "TextMarshalerT")


@dataclass(frozen=True, slots=True, eq=True)
class GoBinaryMarshaler(GoType):
    """A Go type with ``MarshalBinary`` (e.g. ``cipher.PubKey``, ``uuid.UUID``).

    The definition is a ``wireType`` with ``BinaryMarshalerT`` set (or ``wire_kind``); a value is
    ``uint(len) ‖ bytes``. Conversion uses ``marshal``/``unmarshal`` when given, otherwise the
    class's ``marshal_binary``/``unmarshal_binary`` (then ``to_bytes``/``__bytes__`` and
    ``from_bytes``/the constructor).
    As a struct field a value whose bytes are all zero (or ``None``) is omitted, like Go's
    ``IsZero``; a missing field decodes as ``zero()`` (``None`` without a factory).
    """

    name: str
    py_type: type[Any]
    marshal: Callable[[Any], bytes] | None = None
    unmarshal: Callable[[bytes], Any] | None = None
    zero: Callable[[], Any] | None = None
    wire_kind: str = "BinaryMarshalerT"

    def __post_init__(self) -> None:
        if self.wire_kind not in _MARSHALER_KINDS:
            raise ValueError(f"wire_kind must be one of {_MARSHALER_KINDS}")

    def describe(self) -> str:
        return self.name

    def to_bytes(self, value: Any) -> bytes:
        """Marshal ``value``; failures become :class:`GobError`."""
        try:
            if self.marshal is not None:
                data = self.marshal(value)
            elif hasattr(value, "marshal_binary"):
                data = value.marshal_binary()
            elif hasattr(value, "to_bytes") and not isinstance(value, int):
                data = value.to_bytes()
            else:
                data = bytes(value)
        except GobError:
            raise
        except Exception as exc:
            raise GobError(f"gob: marshalling {self.name}: {exc}") from exc
        if not isinstance(data, bytes | bytearray | memoryview):
            raise GobError(f"gob: marshalling {self.name} did not return bytes")
        return bytes(data)

    def from_bytes(self, data: bytes) -> Any:
        """Unmarshal ``data``; failures become :class:`GobError`."""
        try:
            if self.unmarshal is not None:
                return self.unmarshal(data)
            if hasattr(self.py_type, "unmarshal_binary"):
                return self.py_type.unmarshal_binary(data)
            if hasattr(self.py_type, "from_bytes"):
                return self.py_type.from_bytes(data)
            return self.py_type(data)
        except GobError:
            raise
        except Exception as exc:
            raise GobError(f"gob: unmarshalling {self.name}: {exc}") from exc

    def is_zero(self, value: Any) -> bool:
        """Whether Go would omit this value as a struct field."""
        return value is None or not any(self.to_bytes(value))

    def zero_value(self) -> Any:
        return self.zero() if self.zero is not None else None


@dataclass(frozen=True, slots=True)
class GoInterfaceValue:
    """A value held by a Go interface: the registered concrete type name and the value.

    ``type`` is the concrete descriptor (required to encode; set on decode when known).
    """

    name: str
    value: Any
    type: GoType | None = None


class GoInterface(GoType):
    """A Go interface field (gob id 8). Values are :class:`GoInterfaceValue` or ``None`` (nil).

    ``types`` maps registered names (``gob.Register``) to descriptors used when decoding;
    unknown names are decoded as plain data.
    """

    __slots__ = ("_hash", "types")

    types: Mapping[str, GoType]

    def __init__(self, types: Mapping[str, GoType] | None = None) -> None:
        self.types = dict(types or {})
        self._hash = hash(tuple(sorted(self.types.items(), key=lambda kv: kv[0])))

    def describe(self) -> str:
        return "interface {}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GoInterface):
            return NotImplemented
        return self.types == other.types

    def __hash__(self) -> int:
        return self._hash


GoInt = GoIntType(64)
GoInt8 = GoIntType(8)
GoInt16 = GoIntType(16)
GoInt32 = GoIntType(32)
GoInt64 = GoIntType(64)
GoUint = GoUintType(64)
GoUint8 = GoUintType(8)
GoUint16 = GoUintType(16)
GoUint32 = GoUintType(32)
GoUint64 = GoUintType(64)
GoBool = GoBoolType()
GoFloat64 = GoFloatType(64)
GoFloat32 = GoFloatType(32)
GoComplex128 = GoComplexType(128)
GoComplex64 = GoComplexType(64)
GoString = GoStringType()
GoBytes = GoBytesType()
GoAny = GoAnyType()

# --------------------------------------------------------------------------------------------
# Builtin and bootstrap wire types
# --------------------------------------------------------------------------------------------

_ID_BOOL, _ID_INT, _ID_UINT, _ID_FLOAT, _ID_BYTES, _ID_STRING, _ID_COMPLEX, _ID_INTERFACE = range(
    1, 9
)


@dataclass(frozen=True, slots=True)
class WireType:
    """A type as described on the wire (builtin, or learnt from a definition message)."""

    kind: str
    name: str = ""
    elem: int = 0
    key: int = 0
    length: int = 0
    fields: tuple[tuple[str, int], ...] = ()

    def describe(self) -> str:
        if self.name:
            return self.name
        if self.kind == "array":
            return f"[{self.length}]type#{self.elem}"
        if self.kind == "slice":
            return f"[]type#{self.elem}"
        if self.kind == "map":
            return f"map[type#{self.key}]type#{self.elem}"
        return self.kind


# Ids 16..24 are the types gob uses to describe types; Go never sends their definitions.
_BUILTIN_WIRE: dict[int, WireType] = {
    _ID_BOOL: WireType("bool", "bool"),
    _ID_INT: WireType("int", "int"),
    _ID_UINT: WireType("uint", "uint"),
    _ID_FLOAT: WireType("float", "float"),
    _ID_BYTES: WireType("bytes", "bytes"),
    _ID_STRING: WireType("string", "string"),
    _ID_COMPLEX: WireType("complex", "complex"),
    _ID_INTERFACE: WireType("interface", "interface"),
    16: WireType(
        "struct",
        "wireType",
        fields=(
            ("ArrayT", 17),
            ("SliceT", 19),
            ("StructT", 20),
            ("MapT", 23),
            ("GobEncoderT", 24),
            ("BinaryMarshalerT", 24),
            ("TextMarshalerT", 24),
        ),
    ),
    17: WireType("struct", "arrayType", fields=(("CommonType", 18), ("Elem", 2), ("Len", 2))),
    18: WireType("struct", "CommonType", fields=(("Name", 6), ("Id", 2))),
    19: WireType("struct", "sliceType", fields=(("CommonType", 18), ("Elem", 2))),
    20: WireType("struct", "structType", fields=(("CommonType", 18), ("Field", 22))),
    21: WireType("struct", "fieldType", fields=(("Name", 6), ("Id", 2))),
    22: WireType("slice", "[]*gob.fieldType", elem=21),
    23: WireType("struct", "mapType", fields=(("CommonType", 18), ("Key", 2), ("Elem", 2))),
    24: WireType("struct", "gobEncoderType", fields=(("CommonType", 18),)),
}

_COMMON_T = GoStruct("CommonType", [("Name", GoString), ("Id", GoInt)])
_ARRAY_T = GoStruct("arrayType", [("CommonType", _COMMON_T), ("Elem", GoInt), ("Len", GoInt)])
_SLICE_T = GoStruct("sliceType", [("CommonType", _COMMON_T), ("Elem", GoInt)])
_FIELD_T = GoStruct("fieldType", [("Name", GoString), ("Id", GoInt)])
_STRUCT_T = GoStruct("structType", [("CommonType", _COMMON_T), ("Field", GoSlice(GoPtr(_FIELD_T)))])
_MAP_T = GoStruct("mapType", [("CommonType", _COMMON_T), ("Key", GoInt), ("Elem", GoInt)])
_GOBENC_T = GoStruct("gobEncoderType", [("CommonType", _COMMON_T)])
_WIRE_T = GoStruct(
    "wireType",
    [
        ("ArrayT", GoPtr(_ARRAY_T)),
        ("SliceT", GoPtr(_SLICE_T)),
        ("StructT", GoPtr(_STRUCT_T)),
        ("MapT", GoPtr(_MAP_T)),
        ("GobEncoderT", GoPtr(_GOBENC_T)),
        ("BinaryMarshalerT", GoPtr(_GOBENC_T)),
        ("TextMarshalerT", GoPtr(_GOBENC_T)),
    ],
)
_WIRE_TYPE_ID = 16


def _base(t: GoType) -> GoType:
    while isinstance(t, GoPtr):
        t = t.elem
    return t


def _builtin_id(t: GoType) -> int | None:
    if isinstance(t, GoBoolType):
        return _ID_BOOL
    if isinstance(t, GoIntType):
        return _ID_INT
    if isinstance(t, GoUintType):
        return _ID_UINT
    if isinstance(t, GoFloatType):
        return _ID_FLOAT
    if isinstance(t, GoBytesType):
        return _ID_BYTES
    if isinstance(t, GoStringType):
        return _ID_STRING
    if isinstance(t, GoComplexType):
        return _ID_COMPLEX
    if isinstance(t, GoInterface):
        return _ID_INTERFACE
    return None


# --------------------------------------------------------------------------------------------
# Primitive encoding
# --------------------------------------------------------------------------------------------


def _put_uint(buf: bytearray, u: int) -> None:
    if u < 0x80:
        buf.append(u)
        return
    raw = u.to_bytes((u.bit_length() + 7) // 8, "big")
    buf.append(256 - len(raw))
    buf += raw


def _put_int(buf: bytearray, i: int) -> None:
    _put_uint(buf, (i << 1) if i >= 0 else ((~i) << 1) | 1)


def _float_bits(f: float) -> int:
    return int.from_bytes(struct.pack("<d", f), "big")


def _bits_float(u: int) -> float:
    value: float = struct.unpack("<d", u.to_bytes(8, "big"))[0]
    return value


def _to_float32(f: float) -> float:
    if math.isfinite(f) and abs(f) > _MAX_FLOAT32:
        raise GobError(f"gob: value {f!r} overflows float32")
    value: float = struct.unpack("<f", struct.pack("<f", f))[0]
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# Type registry and encoder
# --------------------------------------------------------------------------------------------


class GobTypeRegistry:
    """Allocates gob type ids like Go's process-wide table.

    Ids are given on first use: a struct before its fields (pre-order), an array, slice or map
    after its element types. Share one registry between encoders to reproduce a long-running Go
    process; use ``first_id=65`` to mimic Go ≤ 1.20.
    """

    def __init__(self, first_id: int = FIRST_USER_TYPE_ID) -> None:
        if first_id < FIRST_USER_TYPE_ID:
            raise ValueError(f"user type ids start at {FIRST_USER_TYPE_ID} or later")
        self._next = first_id
        self._ids: dict[GoType, int] = {}

    def type_id(self, t: GoType) -> int:
        """The id of ``t``, allocating ids for it and its components on first use."""
        b = _base(t)
        builtin = _builtin_id(b)
        if builtin is not None:
            return builtin
        known = self._ids.get(b)
        if known is not None:
            return known
        if isinstance(b, GoStruct):
            tid = self._new(b)
            for f in b.fields:
                self.type_id(f.type)
            return tid
        if isinstance(b, GoArray | GoSlice):
            self.type_id(b.elem)
            return self._new(b)
        if isinstance(b, GoMap):
            self.type_id(b.key)
            self.type_id(b.elem)
            return self._new(b)
        if isinstance(b, GoBinaryMarshaler):
            return self._new(b)
        raise GobError(f"gob: type {b.describe()} cannot be encoded")

    def _new(self, t: GoType) -> int:
        tid = self._next
        self._ids[t] = tid
        self._next += 1
        return tid

    def wire_type(self, t: GoType) -> dict[str, Any]:
        """The ``wireType`` (as a dict for the bootstrap descriptor) describing ``t``."""
        b = _base(t)
        tid = self.type_id(b)
        if isinstance(b, GoStruct):
            fields = [{"Name": f.name, "Id": self.type_id(f.type)} for f in b.fields]
            return {"StructT": {"CommonType": {"Name": b.name, "Id": tid}, "Field": fields}}
        if isinstance(b, GoArray):
            common = {"Name": b.name, "Id": tid}
            return {"ArrayT": {"CommonType": common, "Elem": self.type_id(b.elem), "Len": b.length}}
        if isinstance(b, GoSlice):
            return {
                "SliceT": {"CommonType": {"Name": b.name, "Id": tid}, "Elem": self.type_id(b.elem)}
            }
        if isinstance(b, GoMap):
            common = {"Name": b.name, "Id": tid}
            return {
                "MapT": {
                    "CommonType": common,
                    "Key": self.type_id(b.key),
                    "Elem": self.type_id(b.elem),
                }
            }
        if isinstance(b, GoBinaryMarshaler):
            return {b.wire_kind: {"CommonType": {"Name": b.name, "Id": tid}}}
        raise GobError(f"gob: type {b.describe()} has no definition")


class _EncodeJob:
    """One ``Encode`` call: collects definitions and the value without touching encoder state."""

    def __init__(self, registry: GobTypeRegistry, sent: set[int], max_depth: int) -> None:
        self.registry = registry
        self.sent = sent
        self.new_sent: set[int] = set()
        self.defs = bytearray()
        self.max_depth = max_depth

    def send_type(self, t: GoType) -> None:
        b = _base(t)
        if _builtin_id(b) is not None:
            return
        tid = self.registry.type_id(b)
        if tid in self.sent or tid in self.new_sent:
            return
        msg = bytearray()
        _put_int(msg, -tid)
        self.struct(msg, _WIRE_T, self.registry.wire_type(b), 0)
        _put_uint(self.defs, len(msg))
        self.defs += msg
        self.new_sent.add(tid)
        if isinstance(b, GoStruct):
            for f in b.fields:
                self.send_type(f.type)
        elif isinstance(b, GoArray | GoSlice):
            self.send_type(b.elem)
        elif isinstance(b, GoMap):
            self.send_type(b.key)
            self.send_type(b.elem)

    def top(self, value: Any, t: GoType) -> bytes:
        b = _base(t)
        if isinstance(b, GoInterface | GoAnyType):
            raise GobError(f"gob: cannot encode a top-level {b.describe()}")
        if value is None:
            raise GobError("gob: cannot encode nil value")
        self.send_type(b)
        body = bytearray()
        _put_int(body, self.registry.type_id(b))
        if isinstance(b, GoStruct):
            self.struct(body, b, value, 0)
        else:
            body.append(0)
            self.value(body, b, value, 0)
        out = bytearray(self.defs)
        _put_uint(out, len(body))
        out += body
        return bytes(out)

    def struct(self, buf: bytearray, t: GoStruct, value: Any, depth: int) -> None:
        last = -1
        for i, f in enumerate(t.fields):
            fv = _get_field(value, f, t)
            if _omitted(f.type, fv):
                continue
            _put_uint(buf, i - last)
            last = i
            self.value(buf, f.type, fv, depth + 1)
        buf.append(0)

    def value(self, buf: bytearray, t: GoType, v: Any, depth: int) -> None:
        if depth > self.max_depth:
            raise GobLimitError("gob: value nested too deeply")
        t = _base(t)
        if v is None and not isinstance(t, GoInterface):
            raise GobError(f"gob: cannot encode nil {t.describe()}")
        if isinstance(t, GoIntType):
            if not _is_int(v):
                raise GobError(f"gob: {t.describe()} needs an int, got {type(v).__name__}")
            lim = 1 << (t.bits - 1)
            if not -lim <= v < lim:
                raise GobError(f"gob: {v} out of range for {t.describe()}")
            _put_int(buf, v)
        elif isinstance(t, GoUintType):
            if not _is_int(v):
                raise GobError(f"gob: {t.describe()} needs an int, got {type(v).__name__}")
            if not 0 <= v < (1 << t.bits):
                raise GobError(f"gob: {v} out of range for {t.describe()}")
            _put_uint(buf, v)
        elif isinstance(t, GoBoolType):
            if not isinstance(v, bool):
                raise GobError(f"gob: bool needs a bool, got {type(v).__name__}")
            buf.append(1 if v else 0)
        elif isinstance(t, GoFloatType):
            if not _is_real(v):
                raise GobError(f"gob: {t.describe()} needs a float, got {type(v).__name__}")
            f = float(v)
            _put_uint(buf, _float_bits(_to_float32(f) if t.bits == 32 else f))
        elif isinstance(t, GoComplexType):
            if not (_is_real(v) or isinstance(v, complex)):
                raise GobError(f"gob: {t.describe()} needs a complex, got {type(v).__name__}")
            c = complex(v)
            re, im = (
                (c.real, c.imag) if t.bits == 128 else (_to_float32(c.real), _to_float32(c.imag))
            )
            _put_uint(buf, _float_bits(re))
            _put_uint(buf, _float_bits(im))
        elif isinstance(t, GoStringType):
            if not isinstance(v, str):
                raise GobError(f"gob: string needs a str, got {type(v).__name__}")
            raw = v.encode("utf-8", "surrogateescape")
            _put_uint(buf, len(raw))
            buf += raw
        elif isinstance(t, GoBytesType):
            if not isinstance(v, bytes | bytearray | memoryview):
                raise GobError(f"gob: []byte needs bytes, got {type(v).__name__}")
            raw = bytes(v)
            _put_uint(buf, len(raw))
            buf += raw
        elif isinstance(t, GoArray):
            items = _as_sequence(v, t)
            if len(items) != t.length:
                raise GobError(f"gob: {t.describe()} needs {t.length} elements, got {len(items)}")
            _put_uint(buf, t.length)
            for item in items:
                self.value(buf, t.elem, item, depth + 1)
        elif isinstance(t, GoSlice):
            items = _as_sequence(v, t)
            _put_uint(buf, len(items))
            for item in items:
                self.value(buf, t.elem, item, depth + 1)
        elif isinstance(t, GoMap):
            if not isinstance(v, Mapping):
                raise GobError(f"gob: {t.describe()} needs a mapping, got {type(v).__name__}")
            _put_uint(buf, len(v))
            for key, item in v.items():
                self.value(buf, t.key, key, depth + 1)
                self.value(buf, t.elem, item, depth + 1)
        elif isinstance(t, GoStruct):
            self.struct(buf, t, v, depth)
        elif isinstance(t, GoBinaryMarshaler):
            raw = t.to_bytes(v)
            _put_uint(buf, len(raw))
            buf += raw
        elif isinstance(t, GoInterface):
            self.interface(buf, t, v, depth)
        else:
            raise GobError(f"gob: type {t.describe()} cannot be encoded")

    def interface(self, buf: bytearray, t: GoInterface, v: Any, depth: int) -> None:
        if v is None:
            buf.append(0)
            return
        if not isinstance(v, GoInterfaceValue) or not v.name:
            raise GobError("gob: interface values must be GoInterfaceValue with a name")
        concrete = v.type if v.type is not None else t.types.get(v.name)
        if concrete is None:
            raise GobError(f"gob: no type given for interface value {v.name!r}")
        cb = _base(concrete)
        if isinstance(cb, GoInterface | GoAnyType):
            raise GobError("gob: an interface cannot hold an interface type")
        name = v.name.encode("utf-8", "surrogateescape")
        _put_uint(buf, len(name))
        buf += name
        self.send_type(cb)
        _put_int(buf, self.registry.type_id(cb))
        inner = bytearray()
        if isinstance(cb, GoStruct):
            self.struct(inner, cb, v.value, depth + 1)
        else:
            inner.append(0)
            self.value(inner, cb, v.value, depth + 1)
        _put_uint(buf, len(inner))
        buf += inner


def _as_sequence(v: Any, t: GoType) -> Sequence[Any]:
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    if isinstance(v, list | tuple):
        return v
    raise GobError(f"gob: {t.describe()} needs a list, got {type(v).__name__}")


def _get_field(value: Any, f: GoField, t: GoStruct) -> Any:
    if isinstance(value, Mapping):
        return value.get(f.name)
    try:
        return getattr(value, f.py_name)
    except AttributeError as exc:
        raise GobError(f"gob: {t.describe()} value has no attribute {f.py_name!r}") from exc


def _omitted(t: GoType, v: Any) -> bool:
    """Go's rule for leaving a struct field out: zero scalars, empty strings/slices, nil."""
    if v is None:
        return True
    t = _base(t)
    if isinstance(t, GoIntType | GoUintType | GoFloatType | GoComplexType):
        return (_is_real(v) or isinstance(v, complex)) and v == 0
    if isinstance(t, GoBoolType):
        return v is False
    if isinstance(t, GoStringType):
        return isinstance(v, str) and not v
    if isinstance(t, GoBytesType | GoSlice):
        return isinstance(v, bytes | bytearray | memoryview | list | tuple) and len(v) == 0
    if isinstance(t, GoBinaryMarshaler):
        return t.is_zero(v)
    return False


class GobEncoder:
    """The sending half of one gob stream (one Go ``gob.Encoder``).

    Each type is described once per encoder, outer type first then its components depth-first
    in field order. A failed :meth:`encode` leaves the encoder unchanged.
    """

    def __init__(
        self,
        registry: GobTypeRegistry | None = None,
        *,
        first_type_id: int = FIRST_USER_TYPE_ID,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.registry = registry if registry is not None else GobTypeRegistry(first_type_id)
        self.max_depth = max_depth
        self._sent: set[int] = set()

    def encode(self, value: Any, typ: GoType) -> bytes:
        """The messages for ``value`` (type definitions not yet sent, then the value)."""
        return self.encode_many([(value, typ)])

    def encode_many(self, items: Iterable[tuple[Any, GoType]]) -> bytes:
        """Several values back to back, all or nothing (a failure records no sent types)."""
        sent = set(self._sent)
        out = bytearray()
        for value, typ in items:
            job = _EncodeJob(self.registry, sent, self.max_depth)
            try:
                out += job.top(value, typ)
            except RecursionError as exc:
                raise GobLimitError("gob: value nested too deeply") from exc
            sent |= job.new_sent
        self._sent = sent
        return bytes(out)


def gob_encode(value: Any, typ: GoType, *, registry: GobTypeRegistry | None = None) -> bytes:
    """A complete gob stream for one value, as from a fresh ``gob.NewEncoder(w).Encode(v)``."""
    return GobEncoder(registry).encode(value, typ)


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def uint(self) -> int:
        if self.pos >= self.end:
            raise GobError("gob: unexpected end of message")
        b = self.data[self.pos]
        self.pos += 1
        if b < 0x80:
            return b
        n = 256 - b
        if n > 8:
            raise GobError("gob: encoded unsigned integer out of range")
        if self.pos + n > self.end:
            raise GobError("gob: unexpected end of message")
        v = int.from_bytes(self.data[self.pos : self.pos + n], "big")
        self.pos += n
        return v

    def sint(self) -> int:
        u = self.uint()
        return ~(u >> 1) if u & 1 else u >> 1

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise GobError(f"gob: length {n} exceeds the {self.end - self.pos} bytes left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def sub(self, n: int) -> _Reader:
        if n > self.end - self.pos:
            raise GobError(f"gob: length {n} exceeds the {self.end - self.pos} bytes left")
        r = _Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return r


@dataclass(frozen=True, slots=True)
class GobValue:
    """One decoded value message: its wire type id and name, and the value."""

    type_id: int
    type_name: str
    value: Any


class GobDecoder:
    """The receiving half of one gob stream, sans-I/O.

    :meth:`feed` bytes, then call :meth:`next_value` (``None`` until a whole value message has
    arrived). Framing or type-definition errors poison the decoder; an error decoding one value
    consumes that message and leaves the stream usable, like Go.
    """

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_types: int = DEFAULT_MAX_TYPES,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        self.max_types = max_types
        self._buf = bytearray()
        self._pos = 0
        self._consumed = 0
        self._types: dict[int, WireType] = {}
        self._failed: GobError | None = None
        self._matched: set[tuple[int, GoStruct]] = set()

    @property
    def consumed(self) -> int:
        """Bytes consumed so far (whole messages only)."""
        return self._consumed

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet consumed."""
        return len(self._buf) - self._pos

    @property
    def wire_types(self) -> Mapping[int, WireType]:
        """Types defined so far on this stream."""
        return dict(self._types)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_value(self, target: GoType | None = None) -> GobValue | None:
        """Decode the next value into ``target`` (plain data when ``None``), or ``None``."""
        if self._failed is not None:
            raise GobError(f"gob: stream failed earlier: {self._failed}")
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            r = _Reader(frame)
            try:
                tid = r.sint()
                if tid < 0:
                    self._define(-tid, r)
                    continue
                if tid == 0:
                    raise GobError("gob: type id 0 in message")
            except GobError as exc:
                self._failed = exc
                raise
            return self._decode_message(tid, r, target)

    def values(self, target: GoType | None = None) -> Iterator[Any]:
        """Every complete value currently buffered, decoded into ``target``."""
        while (item := self.next_value(target)) is not None:
            yield item.value

    def _next_frame(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail == 0:
            return None
        first = buf[pos]
        if first < 0x80:
            size, head = first, 1
        else:
            width = 256 - first
            if width > 8:
                self._failed = GobError("gob: bad message length prefix")
                raise self._failed
            if avail < 1 + width:
                return None
            size, head = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big"), 1 + width
        if size == 0:
            self._failed = GobError("gob: empty message")
            raise self._failed
        if size > self.max_message_size:
            self._failed = GobLimitError(
                f"gob: message of {size} bytes exceeds the limit of {self.max_message_size}"
            )
            raise self._failed
        if avail < head + size:
            return None
        frame = bytes(buf[pos + head : pos + head + size])
        self._pos = pos + head + size
        self._consumed += head + size
        return frame

    def _define(self, tid: int, r: _Reader) -> None:
        if tid < FIRST_USER_TYPE_ID:
            raise GobError(f"gob: type id {tid} is reserved")
        if tid in self._types:
            raise GobError(f"gob: duplicate type id {tid}")
        if len(self._types) >= self.max_types:
            raise GobLimitError(f"gob: more than {self.max_types} types defined")
        wire = self._guard(lambda: self._dec(r, _WIRE_TYPE_ID, _WIRE_T, 0))
        if r.remaining:
            raise GobError("gob: extra data in type definition")
        self._types[tid] = _wire_from_def(wire)

    def _decode_message(self, tid: int, r: _Reader, target: GoType | None) -> GobValue:
        w = self._wire(tid)

        def run() -> Any:
            if w.kind != "struct" and r.uint() != 0:
                raise GobError("gob: corrupted data: non-zero delta for singleton")
            value = self._dec(r, tid, target, 0)
            if r.remaining:
                raise GobError("gob: extra data after value")
            return value

        return GobValue(tid, w.name, self._guard(run))

    @staticmethod
    def _guard(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RecursionError as exc:
            raise GobLimitError("gob: value nested too deeply") from exc

    def _wire(self, tid: int) -> WireType:
        w = self._types.get(tid) or _BUILTIN_WIRE.get(tid)
        if w is None:
            raise GobError(f"gob: type id {tid} not defined")
        return w

    def _dec(self, r: _Reader, tid: int, target: GoType | None, depth: int) -> Any:
        if depth > self.max_depth:
            raise GobLimitError("gob: value nested too deeply")
        w = self._wire(tid)
        if target is not None:
            target = _base(target)
        if target is None or isinstance(target, GoAnyType):
            return self._generic(r, w, depth)
        kind = w.kind
        if isinstance(target, GoIntType):
            _expect(kind == "int", w, target)
            v = r.sint()
            lim = 1 << (target.bits - 1)
            if not -lim <= v < lim:
                raise GobError(f"gob: value {v} out of range for {target.describe()}")
            return v
        if isinstance(target, GoUintType):
            _expect(kind == "uint", w, target)
            v = r.uint()
            if v >> target.bits:
                raise GobError(f"gob: value {v} out of range for {target.describe()}")
            return v
        if isinstance(target, GoBoolType):
            _expect(kind == "bool", w, target)
            return r.uint() != 0
        if isinstance(target, GoFloatType):
            _expect(kind == "float", w, target)
            f = _bits_float(r.uint())
            return _to_float32(f) if target.bits == 32 else f
        if isinstance(target, GoComplexType):
            _expect(kind == "complex", w, target)
            re, im = _bits_float(r.uint()), _bits_float(r.uint())
            if target.bits == 64:
                re, im = _to_float32(re), _to_float32(im)
            return complex(re, im)
        if isinstance(target, GoStringType):
            _expect(kind == "string", w, target)
            return r.take(r.uint()).decode("utf-8", "surrogateescape")
        if isinstance(target, GoBytesType):
            _expect(kind == "bytes", w, target)
            return r.take(r.uint())
        if isinstance(target, GoArray):
            _expect(kind == "array" and w.length == target.length, w, target)
            items = self._elements(r, w.elem, target.elem, depth, exact=target.length)
            if isinstance(target.elem, GoUintType) and target.elem.bits == 8:
                return bytes(items)
            return items
        if isinstance(target, GoSlice):
            _expect(kind == "slice", w, target)
            return self._elements(r, w.elem, target.elem, depth)
        if isinstance(target, GoMap):
            _expect(kind == "map", w, target)
            return self._map(r, w, target.key, target.elem, depth)
        if isinstance(target, GoStruct):
            _expect(kind == "struct", w, target)
            return self._struct(r, tid, w, target, depth)
        if isinstance(target, GoBinaryMarshaler):
            _expect(kind == _MARSHALER_WIRE_KIND[target.wire_kind], w, target)
            return target.from_bytes(r.take(r.uint()))
        if isinstance(target, GoInterface):
            _expect(kind == "interface", w, target)
            return self._interface(r, target, depth)
        raise GobTypeMismatchError(f"gob: cannot decode into {target.describe()}")

    def _generic(self, r: _Reader, w: WireType, depth: int) -> Any:
        kind = w.kind
        if kind == "bool":
            return r.uint() != 0
        if kind == "int":
            return r.sint()
        if kind == "uint":
            return r.uint()
        if kind == "float":
            return _bits_float(r.uint())
        if kind == "complex":
            return complex(_bits_float(r.uint()), _bits_float(r.uint()))
        if kind == "string":
            return r.take(r.uint()).decode("utf-8", "surrogateescape")
        if kind in ("bytes", "gob", "binary", "text"):
            return r.take(r.uint())
        if kind == "array":
            return self._elements(r, w.elem, None, depth, exact=w.length)
        if kind == "slice":
            return self._elements(r, w.elem, None, depth)
        if kind == "map":
            return self._map(r, w, None, None, depth)
        if kind == "struct":
            return self._struct(r, 0, w, None, depth)
        if kind == "interface":
            return self._interface(r, None, depth)
        raise GobError(f"gob: unknown wire kind {kind}")

    def _elements(
        self, r: _Reader, elem: int, target: GoType | None, depth: int, exact: int | None = None
    ) -> list[Any]:
        n = r.uint()
        if exact is not None and n != exact:
            raise GobError(f"gob: array length mismatch: {n} != {exact}")
        if n > r.remaining:
            raise GobError(f"gob: {n} elements cannot fit in {r.remaining} bytes")
        return [self._dec(r, elem, target, depth + 1) for _ in range(n)]

    def _map(
        self, r: _Reader, w: WireType, key: GoType | None, elem: GoType | None, depth: int
    ) -> dict[Any, Any]:
        n = r.uint()
        if 2 * n > r.remaining:
            raise GobError(f"gob: {n} map entries cannot fit in {r.remaining} bytes")
        out: dict[Any, Any] = {}
        for _ in range(n):
            k = self._dec(r, w.key, key, depth + 1)
            v = self._dec(r, w.elem, elem, depth + 1)
            try:
                out[k] = v
            except TypeError as exc:
                raise GobError("gob: map key cannot be used in a Python dict") from exc
        return out

    def _struct(
        self, r: _Reader, tid: int, w: WireType, target: GoStruct | None, depth: int
    ) -> Any:
        fields = w.fields
        if target is not None and tid and (tid, target) not in self._matched:
            if fields and target.fields and not any(target.field(n) for n, _ in fields):
                raise GobTypeMismatchError(
                    f"gob: type mismatch: no fields matched decoding {w.describe()} "
                    f"into {target.describe()}"
                )
            self._matched.add((tid, target))
        values: dict[str, Any] = {}
        fieldnum = -1
        while True:
            delta = r.uint()
            if delta == 0:
                break
            if delta >= len(fields) - fieldnum:
                raise GobError("gob: field number out of range")
            fieldnum += delta
            name, fid = fields[fieldnum]
            if target is None:
                values[name] = self._dec(r, fid, None, depth + 1)
                continue
            tf = target.field(name)
            if tf is None:
                self._dec(r, fid, None, depth + 1)
            else:
                values[name] = self._dec(r, fid, tf.type, depth + 1)
        if target is None:
            return values
        return _build_struct(target, values)

    def _interface(self, r: _Reader, target: GoInterface | None, depth: int) -> Any:
        n = r.uint()
        if n == 0:
            return None
        name = r.take(n).decode("utf-8", "surrogateescape")
        ctid = r.sint()
        if ctid <= 0:
            raise GobError("gob: inline type definitions in interface values are not supported")
        cw = self._wire(ctid)
        body = r.sub(r.uint())
        concrete = target.types.get(name) if target is not None else None
        if cw.kind != "struct" and body.uint() != 0:
            raise GobError("gob: corrupted data: non-zero delta for singleton")
        value = self._dec(body, ctid, concrete, depth + 1)
        if body.remaining:
            raise GobError("gob: extra data in interface value")
        return GoInterfaceValue(name, value, concrete)


_MARSHALER_WIRE_KIND = {
    "GobEncoderT": "gob",
    "BinaryMarshalerT": "binary",
    "TextMarshalerT": "text",
}
_DEF_KINDS = {"ArrayT": "array", "SliceT": "slice", "StructT": "struct", "MapT": "map"}
_DEF_KINDS.update(_MARSHALER_WIRE_KIND)


def _expect(ok: bool, w: WireType, target: GoType) -> None:
    if not ok:
        raise GobTypeMismatchError(
            f"gob: cannot decode wire type {w.describe()} ({w.kind}) into {target.describe()}"
        )


def _wire_from_def(wire: dict[str, Any]) -> WireType:
    present = [(k, v) for k, v in wire.items() if v is not None]
    if len(present) != 1:
        raise GobError("gob: type definition must set exactly one kind")
    key, body = present[0]
    kind = _DEF_KINDS[key]
    name: str = body["CommonType"]["Name"]
    if kind == "array":
        elem, length = body["Elem"], body["Len"]
        if elem <= 0 or length < 0:
            raise GobError("gob: bad array type definition")
        return WireType(kind, name, elem=elem, length=length)
    if kind == "slice":
        if body["Elem"] <= 0:
            raise GobError("gob: bad slice type definition")
        return WireType(kind, name, elem=body["Elem"])
    if kind == "map":
        if body["Key"] <= 0 or body["Elem"] <= 0:
            raise GobError("gob: bad map type definition")
        return WireType(kind, name, key=body["Key"], elem=body["Elem"])
    if kind == "struct":
        fields: list[tuple[str, int]] = []
        for f in body["Field"]:
            if f is None or f["Id"] <= 0:
                raise GobError("gob: bad struct field definition")
            fields.append((f["Name"], f["Id"]))
        return WireType(kind, name, fields=tuple(fields))
    return WireType(kind, name)


def _zero(t: GoType) -> Any:
    """The Python value standing for Go's zero value of ``t``."""
    if isinstance(t, GoPtr | GoInterface | GoAnyType):
        return None
    if isinstance(t, GoIntType | GoUintType):
        return 0
    if isinstance(t, GoBoolType):
        return False
    if isinstance(t, GoFloatType):
        return 0.0
    if isinstance(t, GoComplexType):
        return 0j
    if isinstance(t, GoStringType):
        return ""
    if isinstance(t, GoBytesType):
        return b""
    if isinstance(t, GoArray):
        if isinstance(t.elem, GoUintType) and t.elem.bits == 8:
            return bytes(t.length)
        return [_zero(t.elem) for _ in range(t.length)]
    if isinstance(t, GoSlice):
        return []
    if isinstance(t, GoMap):
        return {}
    if isinstance(t, GoStruct):
        return _build_struct(t, {})
    if isinstance(t, GoBinaryMarshaler):
        return t.zero_value()
    raise GobError(f"gob: no zero value for {t.describe()}")


def _build_struct(t: GoStruct, values: dict[str, Any]) -> Any:
    if t.py_type is None:
        return {f.name: values[f.name] if f.name in values else _zero(f.type) for f in t.fields}
    kwargs = {f.py_name: values[f.name] if f.name in values else _zero(f.type) for f in t.fields}
    try:
        return t.py_type(**kwargs)
    except GobError:
        raise
    except Exception as exc:
        raise GobError(f"gob: building {t.describe()}: {exc}") from exc


def gob_decode_prefix(
    data: bytes,
    target: GoType | None = None,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[Any, int]:
    """Decode the first value of a fresh gob stream; returns it and the bytes consumed."""
    dec = GobDecoder(max_message_size=max_message_size, max_depth=max_depth)
    dec.feed(bytes(data))
    item = dec.next_value(target)
    if item is None:
        raise GobError("gob: truncated stream")
    return item.value, dec.consumed


def gob_decode(
    data: bytes,
    target: GoType | None = None,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Decode a fresh gob stream holding exactly one value (definitions first)."""
    value, used = gob_decode_prefix(
        data, target, max_message_size=max_message_size, max_depth=max_depth
    )
    if used != len(data):
        raise GobError("gob: trailing data after the value")
    return value
