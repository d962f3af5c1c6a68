"""Gob type descriptors and the wire types gob itself is built on.

The :class:`GoType` descriptors (scalars, arrays, slices, maps, pointers, structs, binary
marshalers and interfaces) that map Python values to Go types, the limits and errors shared by
the encoder and the decoder, and the builtin and bootstrap :class:`WireType` table (ids 1..8 and
16..24) with the ``wireType`` descriptor used to send and read type definitions. Pure data: no
encoding or decoding happens here.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from skywire.wire.errors import GobError

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
BUILTIN_WIRE: dict[int, WireType] = {
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
WIRE_T = GoStruct(
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
WIRE_TYPE_ID = 16


def base_type(t: GoType) -> GoType:
    while isinstance(t, GoPtr):
        t = t.elem
    return t


def builtin_id(t: GoType) -> int | None:
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
# Float32 rounding (shared by the encoder and the decoder)
# --------------------------------------------------------------------------------------------


def to_float32(f: float) -> float:
    if math.isfinite(f) and abs(f) > _MAX_FLOAT32:
        raise GobError(f"gob: value {f!r} overflows float32")
    value: float = struct.unpack("<f", struct.pack("<f", f))[0]
    return value
