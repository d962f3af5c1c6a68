"""The Skycoin binary encoder (``skycoin/src/cipher/encoder``) as a small declarative codec.

The encoding is not self-describing; both sides share a schema:

* fixed-width integers and floats are little-endian; a bool is one byte, 0 or 1 (anything else is
  refused on decoding);
* ``string`` and ``[]byte``: a u32 little-endian byte length, then the bytes;
* other slices: a u32 little-endian *element count*, then the elements;
* fixed arrays (``PubKey`` 33, ``SHA256`` 32, ``Sig`` 65, ``[4]uint16`` …): the elements, no prefix;
* structs: the fields in declaration order; fields tagged ``enc:"-"`` and unexported fields are not
  encoded; a final ``omitempty`` field is left out entirely when it is empty.

A schema is a frozen dataclass (declared with :func:`schema`) whose fields carry a
:class:`Codec` through :func:`field` (:func:`skip` for fields that are never encoded)::

    @skyenc.schema
    class Inner:
        A: int = skyenc.field(skyenc.U16)
        Name: str = skyenc.field(skyenc.STRING)

    data = skyenc.encode(Inner(1, "a"))
    value = skyenc.decode(Inner, data, exact=True)

:func:`decode` with ``exact=False`` is the reference's ``DeserializeRaw`` (trailing bytes are
ignored; :func:`decode_prefix` also says how many bytes were used); ``exact=True`` is
``DeserializeRawExact``. Every malformed input raises :class:`SkyEncError` with the reference's
message; lengths and counts are checked against the remaining bytes before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast, dataclass_transform, overload

from skywire.cipher import PubKey, Sig
from skywire.wire.errors import WireError

__all__ = [
    "BOOL",
    "BYTES",
    "ERR_BUFFER_UNDERFLOW",
    "ERR_INVALID_BOOL",
    "ERR_REMAINING_BYTES",
    "F32",
    "F64",
    "I8",
    "I16",
    "I32",
    "I64",
    "PUBKEY",
    "SHA256",
    "SIG",
    "STRING",
    "U8",
    "U16",
    "U32",
    "U64",
    "Array",
    "Codec",
    "FixedBytes",
    "Reader",
    "SkyEncError",
    "Slice",
    "StructCodec",
    "as_codec",
    "decode",
    "decode_prefix",
    "encode",
    "field",
    "schema",
    "skip",
    "struct_codec",
]

T = TypeVar("T")

ERR_BUFFER_UNDERFLOW = "Not enough buffer data to deserialize"
ERR_INVALID_BOOL = "Invalid value for bool type"
ERR_REMAINING_BYTES = "Bytes remain in buffer after deserializing object"

_META_KEY = "skyenc"


class SkyEncError(WireError):
    """Bytes that do not decode under the schema, or a value the schema cannot encode."""


class Reader:
    """A cursor over immutable bytes; every read checks the remaining length first."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise SkyEncError(ERR_BUFFER_UNDERFLOW)
        start = self.pos
        self.pos = start + n
        return self.data[start : self.pos]

    def length(self) -> int:
        """A u32 little-endian length or count prefix."""
        value: int = _U32.unpack(self.take(4))[0]
        return value


_U32 = struct.Struct("<I")


class Codec(Generic[T]):
    """Encodes values of one type into a bytearray and reads them back from a :class:`Reader`."""

    #: the fewest bytes one value can take (used to bound counts before allocating)
    min_size: int = 0

    def write(self, value: T, out: bytearray) -> None:
        raise NotImplementedError

    def read(self, r: Reader) -> T:
        raise NotImplementedError

    def is_empty(self, value: T) -> bool:
        """Whether ``value`` counts as empty for ``omitempty`` (only sized kinds support it)."""
        raise TypeError(f"{self!r} does not support omitempty")

    def encode(self, value: T) -> bytes:
        out = bytearray()
        self.write(value, out)
        return bytes(out)


class _Int(Codec[int]):
    def __init__(self, fmt: str, name: str) -> None:
        self._st = struct.Struct("<" + fmt)
        self.min_size = self._st.size
        self._name = name
        bits = self._st.size * 8
        if fmt.islower():
            self._lo, self._hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        else:
            self._lo, self._hi = 0, (1 << bits) - 1

    def write(self, value: int, out: bytearray) -> None:
        if type(value) is bool or not isinstance(value, int):
            raise SkyEncError(f"{self._name}: not an integer: {value!r}")
        if not self._lo <= value <= self._hi:
            raise SkyEncError(f"{self._name}: {value} out of range")
        out += self._st.pack(value)

    def read(self, r: Reader) -> int:
        value: int = self._st.unpack(r.take(self.min_size))[0]
        return value

    def __repr__(self) -> str:
        return self._name


class _Float(Codec[float]):
    def __init__(self, fmt: str, name: str) -> None:
        self._st = struct.Struct("<" + fmt)
        self.min_size = self._st.size
        self._name = name

    def write(self, value: float, out: bytearray) -> None:
        if not isinstance(value, int | float) or type(value) is bool:
            raise SkyEncError(f"{self._name}: not a number: {value!r}")
        try:
            out += self._st.pack(value)
        except OverflowError as exc:
            raise SkyEncError(f"{self._name}: {value} out of range") from exc

    def read(self, r: Reader) -> float:
        value: float = self._st.unpack(r.take(self.min_size))[0]
        return value

    def __repr__(self) -> str:
        return self._name


class _Bool(Codec[bool]):
    min_size = 1

    def write(self, value: bool, out: bytearray) -> None:
        if not isinstance(value, bool):
            raise SkyEncError(f"bool: not a bool: {value!r}")
        out.append(1 if value else 0)

    def read(self, r: Reader) -> bool:
        b = r.take(1)[0]
        if b > 1:
            raise SkyEncError(ERR_INVALID_BOOL)
        return b == 1

    def __repr__(self) -> str:
        return "bool"


class _Bytes(Codec[bytes]):
    """``[]byte``: u32 length, then the bytes."""

    min_size = 4

    def write(self, value: bytes, out: bytearray) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SkyEncError(f"[]byte: not bytes: {type(value).__name__}")
        if len(value) > 0xFFFFFFFF:
            raise SkyEncError("[]byte: too long")
        out += _U32.pack(len(value))
        out += value

    def read(self, r: Reader) -> bytes:
        return bytes(r.take(r.length()))

    def is_empty(self, value: bytes) -> bool:
        return len(value) == 0

    def __repr__(self) -> str:
        return "[]byte"


class _String(Codec[str]):
    """``string``: u32 length, then the bytes. Go strings are byte strings, so bytes that are not
    UTF-8 survive a round trip through ``surrogateescape``."""

    min_size = 4

    def write(self, value: str, out: bytearray) -> None:
        if not isinstance(value, str):
            raise SkyEncError(f"string: not a str: {type(value).__name__}")
        raw = value.encode("utf-8", "surrogateescape")
        if len(raw) > 0xFFFFFFFF:
            raise SkyEncError("string: too long")
        out += _U32.pack(len(raw))
        out += raw

    def read(self, r: Reader) -> str:
        return r.take(r.length()).decode("utf-8", "surrogateescape")

    def is_empty(self, value: str) -> bool:
        return len(value) == 0

    def __repr__(self) -> str:
        return "string"


class FixedBytes(Codec[bytes]):
    """A Go ``[N]byte`` array held as ``bytes`` (e.g. ``cipher.SHA256``): exactly N raw bytes."""

    def __init__(self, n: int, name: str = "") -> None:
        self.n = self.min_size = n
        self._name = name or f"[{n}]byte"

    def write(self, value: bytes, out: bytearray) -> None:
        if not isinstance(value, bytes | bytearray) or len(value) != self.n:
            raise SkyEncError(f"{self._name}: need exactly {self.n} bytes")
        out += value

    def read(self, r: Reader) -> bytes:
        return bytes(r.take(self.n))

    def __repr__(self) -> str:
        return self._name


class _PubKey(Codec[PubKey]):
    """``cipher.PubKey`` ([33]byte). Decoding does not check that the bytes are a curve point."""

    min_size = 33

    def write(self, value: PubKey, out: bytearray) -> None:
        if not isinstance(value, PubKey):
            raise SkyEncError(f"PubKey: not a PubKey: {type(value).__name__}")
        out += value.raw

    def read(self, r: Reader) -> PubKey:
        return PubKey(r.take(33))

    def __repr__(self) -> str:
        return "PubKey"


class _Sig(Codec[Sig]):
    """``cipher.Sig`` ([65]byte)."""

    min_size = 65

    def write(self, value: Sig, out: bytearray) -> None:
        if not isinstance(value, Sig):
            raise SkyEncError(f"Sig: not a Sig: {type(value).__name__}")
        out += value.raw

    def read(self, r: Reader) -> Sig:
        return Sig(r.take(65))

    def __repr__(self) -> str:
        return "Sig"


class Array(Codec[tuple[T, ...]]):
    """A Go fixed array ``[n]elem`` of a non-byte element: the n elements, no prefix."""

    def __init__(self, elem: Codec[T], n: int) -> None:
        self.elem = elem
        self.n = n
        self.min_size = elem.min_size * n

    def write(self, value: tuple[T, ...], out: bytearray) -> None:
        if len(value) != self.n:
            raise SkyEncError(f"{self!r}: need exactly {self.n} elements, got {len(value)}")
        for v in value:
            self.elem.write(v, out)

    def read(self, r: Reader) -> tuple[T, ...]:
        if self.elem.min_size * self.n > r.remaining:
            raise SkyEncError(ERR_BUFFER_UNDERFLOW)
        return tuple(self.elem.read(r) for _ in range(self.n))

    def __repr__(self) -> str:
        return f"[{self.n}]{self.elem!r}"


class Slice(Codec[list[T]]):
    """A Go slice ``[]elem`` of a non-byte element: u32 element count, then the elements."""

    min_size = 4

    def __init__(self, elem: Codec[T]) -> None:
        self.elem = elem

    def write(self, value: list[T], out: bytearray) -> None:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise SkyEncError(f"{self!r}: not a sequence: {type(value).__name__}")
        out += _U32.pack(len(value))
        for v in value:
            self.elem.write(v, out)

    def read(self, r: Reader) -> list[T]:
        count = r.length()
        # Bound the count by what the remaining bytes can hold before allocating anything (an
        # element that may take no bytes still counts as one, which bounds hostile counts).
        if count * max(self.elem.min_size, 1) > r.remaining:
            raise SkyEncError(ERR_BUFFER_UNDERFLOW)
        return [self.elem.read(r) for _ in range(count)]

    def is_empty(self, value: list[T]) -> bool:
        return len(value) == 0

    def __repr__(self) -> str:
        return f"[]{self.elem!r}"


U8: Codec[int] = _Int("B", "uint8")
U16: Codec[int] = _Int("H", "uint16")
U32: Codec[int] = _Int("I", "uint32")
U64: Codec[int] = _Int("Q", "uint64")
I8: Codec[int] = _Int("b", "int8")
I16: Codec[int] = _Int("h", "int16")
I32: Codec[int] = _Int("i", "int32")
I64: Codec[int] = _Int("q", "int64")
F32: Codec[float] = _Float("f", "float32")
F64: Codec[float] = _Float("d", "float64")
BOOL: Codec[bool] = _Bool()
BYTES: Codec[bytes] = _Bytes()
STRING: Codec[str] = _String()
PUBKEY: Codec[PubKey] = _PubKey()
SIG: Codec[Sig] = _Sig()
SHA256: Codec[bytes] = FixedBytes(32, "SHA256")


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldSpec:
    codec: Codec[Any] | type | None  # None = skipped (enc:"-" or unexported)
    omitempty: bool = False


def field(
    codec: Codec[Any] | type,
    *,
    omitempty: bool = False,
    default: Any = dataclasses.MISSING,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field encoded with ``codec`` (a :class:`Codec`, or a schema dataclass)."""
    meta = {_META_KEY: _FieldSpec(codec, omitempty)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def skip(
    *, default: Any = dataclasses.MISSING, default_factory: Callable[[], Any] | Any = None
) -> Any:
    """A dataclass field that is never encoded (Go ``enc:"-"`` or an unexported field).

    It must have a default, which is what decoding fills in.
    """
    meta = {_META_KEY: _FieldSpec(None)}
    if default is not dataclasses.MISSING:
        return dataclasses.field(default=default, metadata=meta)
    if default_factory is None:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(default_factory=default_factory, metadata=meta)


@overload
def schema(cls: type[T], /) -> type[T]: ...


@overload
def schema(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, skip))
def schema(
    cls: type[T] | None = None, /, *, kw_only: bool = False
) -> type[T] | Callable[[type[T]], type[T]]:
    """Class decorator: a frozen, slotted dataclass whose fields are declared with :func:`field`
    and :func:`skip`; ``@schema(kw_only=True)`` when a skipped field precedes encoded ones."""

    def wrap(c: type[T]) -> type[T]:
        return dataclasses.dataclass(frozen=True, slots=True, kw_only=kw_only)(c)

    return wrap if cls is None else wrap(cls)


class StructCodec(Codec[T]):
    """The codec of one schema dataclass: its encoded fields in declaration order."""

    def __init__(self, cls: type[T]) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        self.cls = cls
        self._spec: list[tuple[str, _FieldSpec]] = []
        for f in dataclasses.fields(cls):
            spec = f.metadata.get(_META_KEY)
            if not isinstance(spec, _FieldSpec):
                raise TypeError(f"{cls.__name__}.{f.name}: declare it with skyenc.field or skip")
            self._spec.append((f.name, spec))
        encoded = [(n, s) for n, s in self._spec if s.codec is not None]
        for i, (name, spec) in enumerate(encoded):
            if spec.omitempty and i != len(encoded) - 1:
                raise TypeError(f"{cls.__name__}.{name}: omitempty only allowed on the last field")
        self._fields: list[tuple[str, Codec[Any], bool]] | None = None

    def _resolved(self) -> list[tuple[str, Codec[Any], bool]]:
        # Resolved lazily so that a schema may name a dataclass defined further down the module.
        if self._fields is None:
            fields = []
            for name, spec in self._spec:
                if spec.codec is None:
                    continue
                codec = as_codec(spec.codec)
                if spec.omitempty and type(codec).is_empty is Codec.is_empty:
                    raise TypeError(f"{self.cls.__name__}.{name}: {codec!r} cannot be omitempty")
                fields.append((name, codec, spec.omitempty))
            self._fields = fields
            self.min_size = sum(c.min_size for _, c, o in fields if not o)
        return self._fields

    @property
    def fields(self) -> list[tuple[str, Codec[Any], bool]]:
        """``(name, codec, omitempty)`` of every encoded field, in order."""
        return list(self._resolved())

    def write(self, value: T, out: bytearray) -> None:
        if not isinstance(value, self.cls):
            raise SkyEncError(f"{self.cls.__name__}: got {type(value).__name__}")
        for name, codec, omitempty in self._resolved():
            v = getattr(value, name)
            if omitempty and codec.is_empty(v):
                continue
            codec.write(v, out)

    def read(self, r: Reader) -> T:
        kwargs: dict[str, Any] = {}
        for name, codec, omitempty in self._resolved():
            if omitempty and r.remaining == 0:
                continue  # the dataclass default (empty) stands
            kwargs[name] = codec.read(r)
        return self.cls(**kwargs)

    def __repr__(self) -> str:
        return self.cls.__name__


_STRUCT_CODECS: dict[type, StructCodec[Any]] = {}


def struct_codec(cls: type[T]) -> StructCodec[T]:
    """The (cached) :class:`StructCodec` of a schema dataclass."""
    codec = _STRUCT_CODECS.get(cls)
    if codec is None:
        codec = _STRUCT_CODECS[cls] = StructCodec(cls)
    return cast(StructCodec[T], codec)


def as_codec(schema: Codec[T] | type[T]) -> Codec[T]:
    """A codec given either a codec or a schema dataclass."""
    if isinstance(schema, Codec):
        return schema
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        codec = struct_codec(schema)
        codec._resolved()
        return cast(Codec[T], codec)
    raise TypeError(f"not a codec or schema dataclass: {schema!r}")


def encode(value: Any, schema: Codec[Any] | type | None = None) -> bytes:
    """Encode ``value`` (a schema dataclass instance, or any value with an explicit ``schema``)."""
    if schema is None:
        schema = type(value)
    codec = as_codec(schema)
    out = bytearray()
    codec.write(value, out)
    return bytes(out)


def decode_prefix(schema: Codec[T] | type[T], data: bytes) -> tuple[T, int]:
    """Decode one value from the start of ``data``: ``(value, bytes used)``; the rest is ignored."""
    codec = as_codec(schema)
    r = Reader(bytes(data))
    value = codec.read(r)
    return value, r.pos


def decode(schema: Codec[T] | type[T], data: bytes, *, exact: bool = False) -> T:
    """Decode one value; with ``exact`` trailing bytes are an error, otherwise they are ignored."""
    value, used = decode_prefix(schema, data)
    if exact and used != len(data):
        raise SkyEncError(ERR_REMAINING_BYTES)
    return value
