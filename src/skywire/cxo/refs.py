"""References between CXO objects: the object key, Ref, Dynamic and the Refs Merkle tree.

An object's key is SHA-256 of its bytes (:func:`object_key`); :class:`Ref` holds one key (zero =
nil), :class:`Dynamic` an (object, schema) pair, and :class:`Refs` a list of keys kept as a Merkle
tree of a fixed degree (its top object :class:`RefsTop`, the nodes below :class:`RefsNode`), with
the editing and hashing that rebuild only touched paths. :class:`ObjectError` is the error of a
malformed object, here and in :mod:`skywire.cxo.objects`, which re-exports every name of this
module (see its docstring for the encodings).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence

from skywire.wire import skyenc
from skywire.wire.skyenc import SkyEncError

__all__ = [
    "DEFAULT_DEGREE",
    "MAX_DEGREE",
    "MAX_REFS_DEPTH",
    "MIN_DEGREE",
    "ZERO_HASH",
    "Dynamic",
    "ObjectError",
    "Ref",
    "Refs",
    "RefsNode",
    "RefsTop",
    "object_key",
]

ZERO_HASH = bytes(32)
DEFAULT_DEGREE = 16
MIN_DEGREE = 2
MAX_DEGREE = 1024
# A Refs is never deeper than this: degree 2 and depth 32 already address 2**33 elements.
MAX_REFS_DEPTH = 32

_U32 = struct.Struct("<I")
_HASHES = skyenc.Slice(skyenc.SHA256)


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
        if top.depth > MAX_REFS_DEPTH:
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
