"""The receiving half of gob: an incremental, sans-I/O decoder.

:class:`GobDecoder` is fed bytes, learns type ids from the definitions it reads and hands out
:class:`GobValue` messages, decoding into a descriptor (struct fields matched by name, missing
ones given their Go zero value) or into plain Python data. :func:`gob_decode` and
:func:`gob_decode_prefix` are the one-shot forms.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from skywire.wire.errors import GobError
from skywire.wire.gob.types import (
    BUILTIN_WIRE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_TYPES,
    FIRST_USER_TYPE_ID,
    WIRE_T,
    WIRE_TYPE_ID,
    GoAnyType,
    GoArray,
    GoBinaryMarshaler,
    GobLimitError,
    GoBoolType,
    GobTypeMismatchError,
    GoBytesType,
    GoComplexType,
    GoFloatType,
    GoInterface,
    GoInterfaceValue,
    GoIntType,
    GoMap,
    GoPtr,
    GoSlice,
    GoStringType,
    GoStruct,
    GoType,
    GoUintType,
    WireType,
    base_type,
    to_float32,
)


def _bits_float(u: int) -> float:
    value: float = struct.unpack("<d", u.to_bytes(8, "big"))[0]
    return value


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
        wire = self._guard(lambda: self._dec(r, WIRE_TYPE_ID, WIRE_T, 0))
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
        w = self._types.get(tid) or BUILTIN_WIRE.get(tid)
        if w is None:
            raise GobError(f"gob: type id {tid} not defined")
        return w

    def _dec(self, r: _Reader, tid: int, target: GoType | None, depth: int) -> Any:
        if depth > self.max_depth:
            raise GobLimitError("gob: value nested too deeply")
        w = self._wire(tid)
        if target is not None:
            target = base_type(target)
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
            return to_float32(f) if target.bits == 32 else f
        if isinstance(target, GoComplexType):
            _expect(kind == "complex", w, target)
            re, im = _bits_float(r.uint()), _bits_float(r.uint())
            if target.bits == 64:
                re, im = to_float32(re), to_float32(im)
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
