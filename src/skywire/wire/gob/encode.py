"""The sending half of gob: type-id allocation and the encoder.

:class:`GobTypeRegistry` gives type ids as Go's process-wide table does; :class:`GobEncoder`
remembers which definitions one stream has carried and turns Python values into gob messages,
with the primitive writers (gob uints, ints, floats) it is built on. :func:`gob_encode` is the
one-shot form.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from skywire.wire.errors import GobError
from skywire.wire.gob.types import (
    DEFAULT_MAX_DEPTH,
    FIRST_USER_TYPE_ID,
    WIRE_T,
    GoAnyType,
    GoArray,
    GoBinaryMarshaler,
    GobLimitError,
    GoBoolType,
    GoBytesType,
    GoComplexType,
    GoField,
    GoFloatType,
    GoInterface,
    GoInterfaceValue,
    GoIntType,
    GoMap,
    GoSlice,
    GoStringType,
    GoStruct,
    GoType,
    GoUintType,
    base_type,
    builtin_id,
    to_float32,
)

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
        b = base_type(t)
        builtin = builtin_id(b)
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
        b = base_type(t)
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
        b = base_type(t)
        if builtin_id(b) is not None:
            return
        tid = self.registry.type_id(b)
        if tid in self.sent or tid in self.new_sent:
            return
        msg = bytearray()
        _put_int(msg, -tid)
        self.struct(msg, WIRE_T, self.registry.wire_type(b), 0)
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
        b = base_type(t)
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
        t = base_type(t)
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
            _put_uint(buf, _float_bits(to_float32(f) if t.bits == 32 else f))
        elif isinstance(t, GoComplexType):
            if not (_is_real(v) or isinstance(v, complex)):
                raise GobError(f"gob: {t.describe()} needs a complex, got {type(v).__name__}")
            c = complex(v)
            re, im = (c.real, c.imag) if t.bits == 128 else (to_float32(c.real), to_float32(c.imag))
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
        cb = base_type(concrete)
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
    t = base_type(t)
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
