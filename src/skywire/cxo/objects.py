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
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

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

ZERO_HASH = bytes(32)
DEFAULT_DEGREE = 16
MIN_DEGREE = 2
MAX_DEGREE = 1024
# A Refs is never deeper than this: degree 2 and depth 32 already address 2**33 elements.
_MAX_REFS_DEPTH = 32
# Schemas nest one level per byte-consuming wrapper; anything deeper is hostile.
_MAX_SCHEMA_NESTING = 64

_U32 = struct.Struct("<I")
_HASHES = skyenc.Slice(skyenc.SHA256)
_BYTES_LIST = skyenc.Slice(skyenc.BYTES)


class ObjectError(SkyEncError):
    """An object, Refs node, schema or registry that is malformed or inconsistent."""


def object_key(data: bytes) -> bytes:
    """The key of an object: SHA-256 of its bytes."""
    return hashlib.sha256(data).digest()


# --- references ---------------------------------------------------------------------------------


@skyenc.schema
class Ref:
    """A reference to one object of a schema fixed by the field's tag; zero hash = nil."""

    hash: bytes = skyenc.field(skyenc.SHA256, default=ZERO_HASH)

    def is_nil(self) -> bool:
        return self.hash == ZERO_HASH


@skyenc.schema
class Dynamic:
    """An (object, schema) reference, like an interface value."""

    hash: bytes = skyenc.field(skyenc.SHA256, default=ZERO_HASH)
    schema: bytes = skyenc.field(skyenc.SHA256, default=ZERO_HASH)

    def is_nil(self) -> bool:
        return self.hash == ZERO_HASH and self.schema == ZERO_HASH

    def is_valid(self) -> bool:
        """Both parts zero, both set, or only the schema set."""
        return self.hash == ZERO_HASH or self.schema != ZERO_HASH


# --- Refs ---------------------------------------------------------------------------------------


@skyenc.schema
class RefsTop:
    """The top object of a Refs."""

    depth: int = skyenc.field(skyenc.U32)
    degree: int = skyenc.field(skyenc.U32)
    length: int = skyenc.field(skyenc.U32)
    elements: list[bytes] = skyenc.field(_HASHES)


@skyenc.schema
class RefsNode:
    """A node below the top of a Refs."""

    length: int = skyenc.field(skyenc.U32)
    elements: list[bytes] = skyenc.field(_HASHES)


class _Node:
    """One node in memory: element hashes (lowest level) or child nodes, plus a cached hash."""

    __slots__ = ("children", "hash", "hashes", "length")

    def __init__(self) -> None:
        self.length = 0
        self.hashes: list[bytes] = []
        self.children: list[_Node] = []
        self.hash: bytes | None = None  # None: changed since it was last hashed


def _depth_to_fit(degree: int, n: int) -> int:
    """The smallest Depth (height − 1) of a tree of ``degree`` that holds ``n`` elements."""
    if n <= degree:
        return 0
    height = 1
    cap = degree
    while cap < n:
        height += 1
        cap *= degree
    return height - 1


def _check_degree(degree: int) -> None:
    if not MIN_DEGREE <= degree <= MAX_DEGREE:
        raise ValueError(f"Refs degree {degree} outside {MIN_DEGREE}..{MAX_DEGREE}")


class Refs:
    """A list of element hashes stored as a Merkle tree of fixed degree.

    :attr:`hash` is what a Refs field holds. :meth:`flush` hands out the objects (hash, bytes)
    created since the last flush, i.e. only those on changed paths; :meth:`objects` lists every
    object of the tree in depth-first pre-order.
    """

    def __init__(self, degree: int = DEFAULT_DEGREE) -> None:
        _check_degree(degree)
        self.degree = degree
        self.depth = 0  # height - 1
        self._top = _Node()
        self._hash: bytes | None = ZERO_HASH
        self._pending: dict[bytes, bytes] = {}

    # construction ---------------------------------------------------------------------------

    @classmethod
    def from_hashes(cls, hashes: Iterable[bytes], degree: int = DEFAULT_DEGREE) -> Refs:
        refs = cls(degree)
        refs._rebuild([_check_hash(h) for h in hashes])
        return refs

    @classmethod
    def load(cls, top_hash: bytes, get: Callable[[bytes], bytes]) -> Refs:
        """Load a whole Refs from objects; ``get(key)`` returns an object's bytes.

        Every node is checked against its key, its degree and the lengths of its children.
        """
        _check_hash(top_hash)
        if top_hash == ZERO_HASH:
            return cls()
        data = get(top_hash)
        if object_key(data) != top_hash:
            raise ObjectError("Refs top object does not match its hash")
        top = skyenc.decode(RefsTop, data)
        if not MIN_DEGREE <= top.degree <= MAX_DEGREE:
            raise ObjectError(f"Refs degree {top.degree} outside {MIN_DEGREE}..{MAX_DEGREE}")
        if top.depth > _MAX_REFS_DEPTH:
            raise ObjectError(f"Refs depth {top.depth} too large")
        refs = cls(top.degree)
        refs.depth = top.depth
        refs._top = refs._load_node(top.length, top.elements, top.depth, get)
        refs._top.hash = None
        refs._hash = top_hash
        if refs._top.length == 0:
            raise ObjectError("stored Refs is empty")
        return refs

    def _load_node(
        self, length: int, elements: list[bytes], depth: int, get: Callable[[bytes], bytes]
    ) -> _Node:
        if not elements or len(elements) > self.degree:
            raise ObjectError("Refs node with no or too many elements")
        node = _Node()
        node.length = length
        if depth == 0:
            if length != len(elements):
                raise ObjectError("Refs node length does not match its elements")
            node.hashes = list(elements)
            return node
        total = 0
        for key in elements:
            data = get(key)
            if object_key(data) != key:
                raise ObjectError("Refs node does not match its hash")
            sub = skyenc.decode(RefsNode, data)
            child = self._load_node(sub.length, sub.elements, depth - 1, get)
            child.hash = key
            total += child.length
            node.children.append(child)
        if total != length:
            raise ObjectError("Refs node length does not match its children")
        return node

    def _rebuild(self, hashes: list[bytes]) -> None:
        """Replace the tree with a packed one holding ``hashes`` (the reference's rebuild)."""
        self.depth = _depth_to_fit(self.degree, len(hashes))
        self._top = self._build(hashes, self.depth)
        self._top.hash = None
        self._hash = None if hashes else ZERO_HASH
        if not hashes:
            self.depth = 0

    def _build(self, hashes: list[bytes], depth: int) -> _Node:
        node = _Node()
        node.length = len(hashes)
        if depth == 0:
            node.hashes = hashes
            return node
        step = self.degree**depth
        node.children = [
            self._build(hashes[i : i + step], depth - 1) for i in range(0, len(hashes), step)
        ]
        return node

    # reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._top.length

    def __iter__(self) -> Iterator[bytes]:
        yield from self._iter(self._top, self.depth)

    def _iter(self, node: _Node, depth: int) -> Iterator[bytes]:
        if depth == 0:
            yield from node.hashes
        else:
            for child in node.children:
                yield from self._iter(child, depth - 1)

    def __getitem__(self, i: int) -> bytes:
        node, j, _ = self._locate(i)
        return node.hashes[j]

    def _locate(self, i: int) -> tuple[_Node, int, list[_Node]]:
        """The lowest node holding element ``i``, its index there, and the path from the top."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("Refs index out of range")
        node, path = self._top, [self._top]
        for _ in range(self.depth):
            for child in node.children:
                if i < child.length:
                    node = child
                    break
                i -= child.length
            path.append(node)
        return node, i, path

    def index(self, h: bytes) -> int:
        for i, x in enumerate(self):
            if x == h:
                return i
        raise ValueError("hash not in Refs")

    # editing --------------------------------------------------------------------------------

    def set(self, i: int, h: bytes) -> None:
        """Replace element ``i``; only the nodes on its path get new hashes."""
        _check_hash(h)
        node, j, path = self._locate(i)
        if node.hashes[j] == h:
            return
        node.hashes[j] = h
        self._dirty(path)

    def append(self, *hashes: bytes) -> None:
        """Append element hashes: into free space at the tail if it fits, else by a rebuild."""
        new = [_check_hash(h) for h in hashes]
        if not new:
            return
        if self._free_on_tail(self._top, self.depth) < len(new):
            self._rebuild([*self, *new])
            return
        for h in new:
            self._append_one(self._top, self.depth, h)
        self._hash = None

    def _free_on_tail(self, node: _Node, depth: int) -> int:
        if depth == 0:
            return self.degree - len(node.hashes)
        free: int = pow(self.degree, depth) * (self.degree - len(node.children))
        if node.children:
            free += self._free_on_tail(node.children[-1], depth - 1)
        return free

    def _append_one(self, node: _Node, depth: int, h: bytes) -> None:
        node.length += 1
        node.hash = None
        if depth == 0:
            node.hashes.append(h)
            return
        if not node.children or self._free_on_tail(node.children[-1], depth - 1) == 0:
            node.children.append(_Node())
        self._append_one(node.children[-1], depth - 1, h)

    def delete(self, i: int) -> None:
        """Remove element ``i``; emptied nodes are dropped and the depth is kept."""
        node, j, path = self._locate(i)
        del node.hashes[j]
        for n in path:
            n.length -= 1
        for parent, child in zip(reversed(path[:-1]), reversed(path[1:]), strict=True):
            if child.length == 0:
                parent.children.remove(child)
        self._dirty(path)
        if self._top.length == 0:
            self._rebuild([])

    def clear(self) -> None:
        self._rebuild([])

    def _dirty(self, path: list[_Node]) -> None:
        for n in path:
            n.hash = None
        self._hash = None

    # hashing --------------------------------------------------------------------------------

    @property
    def hash(self) -> bytes:
        """The hash a Refs field holds (zero when empty); hashes only changed nodes."""
        if self._hash is None:
            if self._top.length == 0:
                self._hash = ZERO_HASH
            else:
                for child in self._top.children:
                    self._hash_node(child, self.depth - 1)
                data = self._encode_top()
                self._hash = object_key(data)
                self._pending[self._hash] = data
        return self._hash

    def _hash_node(self, node: _Node, depth: int) -> bytes:
        if node.hash is None:
            if depth == 0:
                elements = node.hashes
            else:
                elements = [self._hash_node(c, depth - 1) for c in node.children]
            data = _encode_node(node.length, elements)
            node.hash = object_key(data)
            self._pending[node.hash] = data
        return node.hash

    def _encode_top(self) -> bytes:
        top = self._top
        elements = top.hashes if self.depth == 0 else [c.hash or b"" for c in top.children]
        out = bytearray(_U32.pack(self.depth) + _U32.pack(self.degree))
        out += _encode_node(top.length, elements)
        return bytes(out)

    def flush(self) -> list[tuple[bytes, bytes]]:
        """The objects (key, bytes) created since the last flush, to be stored."""
        self.hash  # noqa: B018 - computes pending objects
        pending, self._pending = self._pending, {}
        return list(pending.items())

    def objects(self) -> list[tuple[bytes, bytes]]:
        """Every object of the tree, depth-first pre-order, the top first."""
        if self.hash == ZERO_HASH:
            return []
        out = [(self.hash, self._encode_top())]
        for child in self._top.children:
            self._collect(child, self.depth - 1, out)
        return out

    def _collect(self, node: _Node, depth: int, out: list[tuple[bytes, bytes]]) -> None:
        if depth == 0:
            out.append((self._hash_node(node, 0), _encode_node(node.length, node.hashes)))
            return
        elements = [self._hash_node(c, depth - 1) for c in node.children]
        out.append((self._hash_node(node, depth), _encode_node(node.length, elements)))
        for child in node.children:
            self._collect(child, depth - 1, out)

    def __repr__(self) -> str:
        return f"Refs(len={len(self)}, degree={self.degree}, hash={self.hash.hex()})"


def _encode_node(length: int, elements: Sequence[bytes]) -> bytes:
    return _U32.pack(length) + _U32.pack(len(elements)) + b"".join(elements)


def _check_hash(h: bytes) -> bytes:
    if not isinstance(h, bytes) or len(h) != 32:
        raise ValueError("an element hash is 32 bytes")
    return h


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
        if top.depth > _MAX_REFS_DEPTH:
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
