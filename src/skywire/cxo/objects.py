"""CXO objects: references (Ref, Refs, Dynamic), schemas and the registry.

An object is a value encoded with :mod:`skywire.wire.skyenc`; its key is SHA-256 of those bytes.

* :class:`Ref` is one 32-byte hash (zero = nil); :class:`Dynamic` is (object hash, schema hash).
* :class:`Refs` is a list of element hashes kept as a Merkle tree of a fixed degree (default 16).
  A field of type Refs holds only the hash of its *top object*
  ``Depth u32 | Degree u32 | Length u32 | Elements []SHA256`` where Depth is the tree height − 1:
  with at most ``degree`` elements the top holds the element hashes itself. Below the top every
  node is ``Length u32 | Elements []SHA256`` (child node hashes, or element hashes in the lowest
  nodes). An empty Refs has the zero hash and stores nothing. Editing rebuilds only the nodes on
  the touched paths, with the reference's shapes: appending fills free space at the tail and
  otherwise rebuilds the tree packed to the smallest depth; deleting removes the element from its
  node and drops nodes that become empty, without re-packing.
* :class:`Schema` / :class:`Field` describe Go types as the reference registry does; a schema's
  hash covers each field's full raw struct tag, the Go names of unregistered types, and a field
  Kind that is always 0. :class:`Registry` is one object holding ``(name, schema bytes)`` sorted
  by name.
* :func:`references` lists the references inside one object, and :func:`reachable` walks a Root's
  whole DAG through a getter: the objects a subscriber has to fetch.

Decoding objects ignores trailing bytes, as the reference does; the hash always covers the bytes
as received.

This module holds the schemas, the registry and the walk over objects; the object key, Ref,
Dynamic and the Refs tree live in :mod:`skywire.cxo.refs` and are re-exported from here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from skywire.cxo.refs import (
    DEFAULT_DEGREE,
    MAX_DEGREE,
    MAX_REFS_DEPTH,
    MIN_DEGREE,
    ZERO_HASH,
    Dynamic,
    ObjectError,
    Ref,
    Refs,
    RefsNode,
    RefsTop,
    object_key,
)
from skywire.wire import skyenc
from skywire.wire.skyenc import Reader, SkyEncError

__all__ = [
    "DEFAULT_DEGREE",
    "MAX_DEGREE",
    "MIN_DEGREE",
    "ZERO_HASH",
    "Dynamic",
    "Field",
    "Kind",
    "ObjectError",
    "Ref",
    "Reference",
    "ReferenceType",
    "Refs",
    "RefsNode",
    "RefsTop",
    "Registry",
    "Schema",
    "object_key",
    "reachable",
    "references",
]

# Schemas nest one level per byte-consuming wrapper; anything deeper is hostile.
_MAX_SCHEMA_NESTING = 64

_BYTES_LIST = skyenc.Slice(skyenc.BYTES)


# --- schemas and the registry -------------------------------------------------------------------


class Kind(enum.IntEnum):
    """Go ``reflect.Kind`` numbers, as the schema encoding carries them."""

    INVALID = 0
    BOOL = 1
    INT8 = 3
    INT16 = 4
    INT32 = 5
    INT64 = 6
    UINT8 = 8
    UINT16 = 9
    UINT32 = 10
    UINT64 = 11
    FLOAT32 = 13
    FLOAT64 = 14
    ARRAY = 17
    INTERFACE = 20
    PTR = 22
    SLICE = 23
    STRING = 24
    STRUCT = 25


class ReferenceType(enum.IntEnum):
    NONE = 0
    REF = 1
    REFS = 2
    DYNAMIC = 3


_BASIC_NAMES = {
    Kind.BOOL: "bool",
    Kind.INT8: "int8",
    Kind.INT16: "int16",
    Kind.INT32: "int32",
    Kind.INT64: "int64",
    Kind.UINT8: "uint8",
    Kind.UINT16: "uint16",
    Kind.UINT32: "uint32",
    Kind.UINT64: "uint64",
    Kind.FLOAT32: "float32",
    Kind.FLOAT64: "float64",
    Kind.STRING: "string",
}
_FIXED_SIZES = {
    Kind.BOOL: 1,
    Kind.INT8: 1,
    Kind.UINT8: 1,
    Kind.INT16: 2,
    Kind.UINT16: 2,
    Kind.INT32: 4,
    Kind.UINT32: 4,
    Kind.FLOAT32: 4,
    Kind.INT64: 8,
    Kind.UINT64: 8,
    Kind.FLOAT64: 8,
}


@skyenc.schema
class _EncodedSchema:
    ReferenceType: int = skyenc.field(skyenc.U32)
    Kind: int = skyenc.field(skyenc.U32)
    Name: bytes = skyenc.field(skyenc.BYTES)
    Len: int = skyenc.field(skyenc.U32)
    Fields: list[bytes] = skyenc.field(_BYTES_LIST)
    Elem: bytes = skyenc.field(skyenc.BYTES)


@skyenc.schema
class _EncodedField:
    Name: bytes = skyenc.field(skyenc.BYTES)
    Tag: bytes = skyenc.field(skyenc.BYTES)
    Kind: int = skyenc.field(skyenc.U32)
    Schema: bytes = skyenc.field(skyenc.BYTES)


@skyenc.schema
class _RegistryEntity:
    Name: str = skyenc.field(skyenc.STRING)
    Schema: bytes = skyenc.field(skyenc.BYTES)


_REGISTRY_CODEC = skyenc.Slice(skyenc.as_codec(_RegistryEntity))


@dataclass(frozen=True)
class Field:
    """A struct field: its Go name, its complete raw struct tag, and its schema."""

    name: str
    schema: Schema
    tag: str = ""

    @classmethod
    def ref(cls, name: str, target: str) -> Field:
        """A ``Ref`` field with the usual tag ``skyobject:"schema=<target>"``."""
        return cls(name, Schema.ref(target), f'skyobject:"schema={target}"')

    @classmethod
    def refs(cls, name: str, target: str) -> Field:
        """A ``Refs`` field with the usual tag ``skyobject:"schema=<target>"``."""
        return cls(name, Schema.refs(target), f'skyobject:"schema={target}"')

    def encode(self) -> bytes:
        return skyenc.encode(
            _EncodedField(self.name.encode(), self.tag.encode(), 0, self.schema.encode())
        )


@dataclass(frozen=True)
class Schema:
    """A Go type as the registry describes it.

    Use the constructors: :meth:`basic`, :meth:`slice`, :meth:`array`, :meth:`struct`,
    :meth:`ref`, :meth:`refs`, :meth:`dynamic`. ``name`` is the registered name of a registered
    struct, the Go type name of an unregistered named type (``"PubKey"``, ``"uint8"``) and empty
    for unnamed composite types (``[]byte``).
    """

    kind: Kind
    name: str = ""
    reference_type: ReferenceType = ReferenceType.NONE
    length: int = 0
    fields: tuple[Field, ...] = ()
    elem: Schema | None = None

    @classmethod
    def basic(cls, kind: Kind, name: str | None = None) -> Schema:
        if kind not in _BASIC_NAMES:
            raise ValueError(f"{kind!r} is not a basic kind")
        return cls(kind, _BASIC_NAMES[kind] if name is None else name)

    @classmethod
    def slice(cls, elem: Schema, name: str = "") -> Schema:
        return cls(Kind.SLICE, name, elem=elem)

    @classmethod
    def array(cls, elem: Schema, length: int, name: str = "") -> Schema:
        return cls(Kind.ARRAY, name, length=length, elem=elem)

    @classmethod
    def struct(cls, name: str, fields: Sequence[Field]) -> Schema:
        return cls(Kind.STRUCT, name, fields=tuple(fields))

    @classmethod
    def ref(cls, target: str) -> Schema:
        return cls(Kind.PTR, reference_type=ReferenceType.REF, elem=_stub(Kind.STRUCT, target))

    @classmethod
    def refs(cls, target: str) -> Schema:
        return cls(Kind.PTR, reference_type=ReferenceType.REFS, elem=_stub(Kind.STRUCT, target))

    @classmethod
    def dynamic(cls) -> Schema:
        return cls(Kind.INTERFACE, reference_type=ReferenceType.DYNAMIC)

    @property
    def is_registered(self) -> bool:
        return self.kind == Kind.STRUCT and self.name != "" and not self.reference_type

    @property
    def is_reference(self) -> bool:
        return self.reference_type != ReferenceType.NONE

    def encode(self) -> bytes:
        rt = self.reference_type
        elem = b""
        fields: list[bytes] = []
        name = b"" if rt else self.name.encode()
        if rt in (ReferenceType.REF, ReferenceType.REFS):
            assert self.elem is not None
            elem = _stub(self.elem.kind, self.elem.name).encode()
        elif self.kind in (Kind.SLICE, Kind.ARRAY):
            assert self.elem is not None
            e = self.elem
            elem = _stub(e.kind, e.name).encode() if e.is_registered else e.encode()
        elif self.kind == Kind.STRUCT:
            fields = [f.encode() for f in self.fields]
        length = self.length if self.kind == Kind.ARRAY else 0
        return skyenc.encode(_EncodedSchema(int(rt), int(self.kind), name, length, fields, elem))

    @cached_property
    def ref_hash(self) -> bytes:
        """``SchemaRef``: SHA-256 of the encoded schema."""
        return object_key(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Schema:
        """Parse an encoded schema (trailing bytes ignored)."""
        return _decode_schema(data, 0)

    def field_tag_schema(self) -> str | None:
        """For a Ref or Refs: the target schema name."""
        return self.elem.name if self.elem is not None and self.is_reference else None


def _stub(kind: Kind, name: str) -> Schema:
    """A schema reduced to its kind and name (how references and slices name a struct)."""
    return Schema(kind, name)


def _decode_schema(data: bytes, level: int) -> Schema:
    if level > _MAX_SCHEMA_NESTING:
        raise ObjectError("schema nested too deeply")
    x = skyenc.decode(_EncodedSchema, data)
    try:
        kind = Kind(x.Kind)
        rt = ReferenceType(x.ReferenceType)
    except ValueError as exc:
        raise ObjectError(
            f"schema with unknown kind {x.Kind} or reference {x.ReferenceType}"
        ) from exc
    name = x.Name.decode("utf-8", "surrogateescape")
    if rt in (ReferenceType.REF, ReferenceType.REFS):
        if kind != Kind.PTR or not x.Elem:
            raise ObjectError("Ref/Refs schema without a target")
        return Schema(kind, reference_type=rt, elem=_decode_schema(x.Elem, level + 1))
    if rt == ReferenceType.DYNAMIC:
        if kind != Kind.INTERFACE:
            raise ObjectError("Dynamic schema of a wrong kind")
        return Schema.dynamic()
    if kind in (Kind.SLICE, Kind.ARRAY):
        if not x.Elem:
            raise ObjectError("slice or array schema without an element")
        elem = _decode_schema(x.Elem, level + 1)
        return Schema(kind, name, length=x.Len if kind == Kind.ARRAY else 0, elem=elem)
    if kind == Kind.STRUCT:
        fields = []
        for raw in x.Fields:
            f = skyenc.decode(_EncodedField, raw)
            fields.append(
                Field(
                    f.Name.decode("utf-8", "surrogateescape"),
                    _decode_schema(f.Schema, level + 1),
                    f.Tag.decode("utf-8", "surrogateescape"),
                )
            )
        return Schema(kind, name, fields=tuple(fields))
    if kind in _BASIC_NAMES:
        return Schema(kind, name)
    raise ObjectError(f"schema of unsupported kind {kind!r}")


class Registry:
    """Named struct schemas; the registry object is ``[]{Name string; Schema []byte}`` by name."""

    def __init__(self, schemas: Iterable[tuple[str, Schema]] = ()) -> None:
        self._by_name: dict[str, Schema] = {}
        for name, schema in schemas:
            if not name:
                raise ValueError("empty registry name")
            if name in self._by_name:
                raise ValueError(f"name registered twice: {name}")
            if schema.kind != Kind.STRUCT:
                raise ValueError(f"only structs can be registered, not {schema.kind!r}")
            self._by_name[name] = schema
        self._by_ref = {s.ref_hash: s for s in self._by_name.values()}
        self._encoded: bytes | None = None

    @classmethod
    def of(cls, *schemas: Schema) -> Registry:
        """A registry of struct schemas under their own names."""
        return cls((s.name, s) for s in schemas)

    def encode(self) -> bytes:
        if self._encoded is None:
            entities = [
                _RegistryEntity(name, self._by_name[name].encode())
                for name in sorted(
                    self._by_name, key=lambda n: n.encode("utf-8", "surrogateescape")
                )
            ]
            self._encoded = _REGISTRY_CODEC.encode(entities)
        return self._encoded

    @property
    def ref(self) -> bytes:
        """``RegistryRef``: SHA-256 of the registry object."""
        return object_key(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Registry:
        """Parse a registry object (trailing bytes ignored)."""
        entities = skyenc.decode(_REGISTRY_CODEC, data)
        try:
            return cls((e.Name, Schema.decode(e.Schema)) for e in entities)
        except ValueError as exc:
            raise ObjectError(f"invalid registry: {exc}") from exc

    def by_name(self, name: str) -> Schema:
        try:
            return self._by_name[name]
        except KeyError:
            raise ObjectError(f"missing schema {name!r}") from None

    def by_ref(self, ref: bytes) -> Schema:
        try:
            return self._by_ref[ref]
        except KeyError:
            raise ObjectError(f"missing schema {ref.hex()}") from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


# --- walking objects ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """One reference found inside an object."""

    type: ReferenceType
    hash: bytes
    #: the schema of the object(s) referred to (``None`` for a Dynamic whose schema is only a ref)
    schema: Schema | None = None
    #: for a Dynamic: the schema reference it carries
    schema_ref: bytes = ZERO_HASH


def references(schema: Schema, data: bytes, registry: Registry) -> list[Reference]:
    """Every non-nil reference inside one object of ``schema``, in field order."""
    out: list[Reference] = []
    _scan(schema, Reader(bytes(data)), registry, out, 0)
    return out


def _resolve(schema: Schema, registry: Registry) -> Schema:
    if schema.kind == Kind.STRUCT and schema.name and not schema.fields:
        return registry.by_name(schema.name)
    return schema


def _scan(schema: Schema, r: Reader, registry: Registry, out: list[Reference], level: int) -> None:
    if level > _MAX_SCHEMA_NESTING:
        raise ObjectError("object nested too deeply")
    rt = schema.reference_type
    if rt in (ReferenceType.REF, ReferenceType.REFS):
        h = r.take(32)
        if h != ZERO_HASH:
            assert schema.elem is not None
            out.append(Reference(rt, h, registry.by_name(schema.elem.name)))
        return
    if rt == ReferenceType.DYNAMIC:
        h, s = r.take(32), r.take(32)
        if h != ZERO_HASH:
            if s == ZERO_HASH:
                raise ObjectError("Dynamic with an object but no schema")
            out.append(Reference(rt, h, registry.by_ref(s), s))
        return
    kind = schema.kind
    size = _FIXED_SIZES.get(kind)
    if size is not None:
        r.take(size)
    elif kind == Kind.STRING:
        r.take(r.length())
    elif kind in (Kind.SLICE, Kind.ARRAY):
        assert schema.elem is not None
        elem = _resolve(schema.elem, registry)
        count = r.length() if kind == Kind.SLICE else schema.length
        elem_size = _FIXED_SIZES.get(elem.kind) if not elem.is_reference else None
        if elem_size is not None:
            r.take(count * elem_size)
            return
        if count > r.remaining:
            raise SkyEncError(skyenc.ERR_BUFFER_UNDERFLOW)
        for _ in range(count):
            _scan(elem, r, registry, out, level + 1)
    elif kind == Kind.STRUCT:
        for f in _resolve(schema, registry).fields:
            _scan(f.schema, r, registry, out, level + 1)
    else:
        raise ObjectError(f"cannot walk kind {kind!r}")


def reachable(
    refs: Sequence[Dynamic], registry_ref: bytes, get: Callable[[bytes], bytes]
) -> list[bytes]:
    """Every object key a node needs for a Root: the registry, then the DAG under ``refs``.

    ``get(key)`` returns an object's bytes (and raises for a missing one); each object is checked
    against its key. Keys are listed once, depth-first, in the order they are found.
    """
    seen: dict[bytes, None] = {}

    def fetch(key: bytes) -> bytes:
        data = get(key)
        if object_key(data) != key:
            raise ObjectError(f"object {key.hex()} does not match its hash")
        seen.setdefault(key)
        return data

    registry = Registry.decode(fetch(registry_ref)) if registry_ref != ZERO_HASH else Registry()

    def visit(schema: Schema, key: bytes) -> None:
        data = fetch(key)
        for ref in references(schema, data, registry):
            assert ref.schema is not None
            if ref.type == ReferenceType.REFS:
                visit_refs(ref.schema, ref.hash)
            else:
                visit(ref.schema, ref.hash)

    def visit_refs(schema: Schema, key: bytes) -> None:
        data = fetch(key)
        top = skyenc.decode(RefsTop, data)
        if top.depth > MAX_REFS_DEPTH:
            raise ObjectError(f"Refs depth {top.depth} too large")
        visit_refs_elements(schema, top.elements, top.depth)

    def visit_refs_elements(schema: Schema, elements: list[bytes], depth: int) -> None:
        for h in elements:
            if depth == 0:
                if h != ZERO_HASH:
                    visit(schema, h)
            else:
                node = skyenc.decode(RefsNode, fetch(h))
                visit_refs_elements(schema, node.elements, depth - 1)

    for dyn in refs:
        if not dyn.is_valid():
            raise ObjectError("invalid Dynamic in Root")
        if dyn.hash != ZERO_HASH:
            visit(registry.by_ref(dyn.schema), dyn.hash)
    return list(seen)
