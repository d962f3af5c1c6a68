"""The treestore value tree: a nested ``name → bytes | subtree`` map as CXO objects.

Skywire publishes its feeds (services, all-transports, clients-by-server …) as one tree per Root
with two registered schemas::

    cxo.treestore.TreeNode  { Children Refs<TreeEntry> }
    cxo.treestore.TreeEntry { Name string; Sub Ref<TreeNode>; Leaf []byte }

A Root's only branch is ``Dynamic(TreeNode top, TreeNode schema)`` and ``Reg`` is the registry
holding the two schemas. Entries are sorted by name; an entry with a non-nil ``Sub`` is a
subtree (possibly empty), any other entry is a leaf (possibly empty bytes). Strings given as
leaves are stored UTF-8 encoded and read back as bytes.

Building is content-addressed all the way down: an unchanged subtree or leaf keeps its key, so
publishing an edited tree creates new objects only on the changed paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Union

from skywire.cxo.objects import (
    ZERO_HASH,
    Dynamic,
    Field,
    Kind,
    ObjectError,
    Ref,
    Refs,
    RefsNode,
    RefsTop,
    Registry,
    Schema,
    object_key,
)
from skywire.wire import skyenc

__all__ = [
    "REGISTRY",
    "TREE_ENTRY",
    "TREE_NODE",
    "TreeEntry",
    "TreeNode",
    "Value",
    "ValueTree",
    "build_tree",
    "read_tree",
]

TREE_ENTRY = Schema.struct(
    "cxo.treestore.TreeEntry",
    [
        Field("Name", Schema.basic(Kind.STRING)),
        Field.ref("Sub", "cxo.treestore.TreeNode"),
        Field("Leaf", Schema.slice(Schema.basic(Kind.UINT8))),
    ],
)
TREE_NODE = Schema.struct(
    "cxo.treestore.TreeNode", [Field.refs("Children", "cxo.treestore.TreeEntry")]
)
REGISTRY = Registry.of(TREE_NODE, TREE_ENTRY)

# Nesting bound for reading a tree received from a peer.
_MAX_DEPTH = 64

Value = Union[bytes, str, "ValueTree"]
ValueTree = Mapping[str, Value]


@skyenc.schema
class TreeNode:
    """A directory: the hash of the top object of a Refs of TreeEntry."""

    children: bytes = skyenc.field(skyenc.SHA256, default=ZERO_HASH)


@skyenc.schema
class TreeEntry:
    name: str = skyenc.field(skyenc.STRING)
    sub: Ref = skyenc.field(Ref)
    leaf: bytes = skyenc.field(skyenc.BYTES)


def build_tree(tree: ValueTree) -> tuple[list[Dynamic], bytes, dict[bytes, bytes]]:
    """The Root branches, the registry key and every object (key → bytes) of ``tree``.

    The registry object is included in the objects.
    """
    objects: dict[bytes, bytes] = {REGISTRY.ref: REGISTRY.encode()}
    top = _build_node(tree, objects, 0)
    return [Dynamic(top, TREE_NODE.ref_hash)], REGISTRY.ref, objects


def _put(objects: dict[bytes, bytes], data: bytes) -> bytes:
    key = object_key(data)
    objects[key] = data
    return key


def _build_node(tree: ValueTree, objects: dict[bytes, bytes], depth: int) -> bytes:
    if depth > _MAX_DEPTH:
        raise ValueError("value tree nested too deeply")
    entries: list[bytes] = []
    for name in sorted(tree, key=lambda n: n.encode()):
        if not isinstance(name, str):
            raise TypeError(f"tree names are str, not {type(name).__name__}")
        value = tree[name]
        if isinstance(value, Mapping):
            sub = _build_node(value, objects, depth + 1)
            entry = TreeEntry(name, Ref(sub), b"")
        elif isinstance(value, str | bytes | bytearray | memoryview):
            leaf = value.encode() if isinstance(value, str) else bytes(value)
            entry = TreeEntry(name, Ref(), leaf)
        else:
            raise TypeError(f"leaf {name!r} is {type(value).__name__}, not bytes, str or a map")
        entries.append(_put(objects, skyenc.encode(entry)))
    refs = Refs.from_hashes(entries)
    objects.update(refs.flush())
    return _put(objects, skyenc.encode(TreeNode(refs.hash)))


Getter = Callable[[bytes], Awaitable[bytes | None]]


async def read_tree(branches: list[Dynamic], get: Getter) -> dict[str, object]:
    """Read the value tree of a Root back from the store (``get(key)`` → bytes or ``None``).

    Raises :class:`ObjectError` when an object is missing, does not match its key, or is not a
    treestore tree.
    """
    if not branches:
        return {}
    if len(branches) != 1 or branches[0].schema != TREE_NODE.ref_hash:
        raise ObjectError("the Root is not a treestore tree")
    return await _read_node(branches[0].hash, get, 0)


async def _fetch(key: bytes, get: Getter) -> bytes:
    data = await get(key)
    if data is None:
        raise ObjectError(f"object {key.hex()} is missing")
    if object_key(data) != key:
        raise ObjectError(f"object {key.hex()} does not match its hash")
    return data


async def _read_node(key: bytes, get: Getter, depth: int) -> dict[str, object]:
    if depth > _MAX_DEPTH:
        raise ObjectError("tree nested too deeply")
    node = skyenc.decode(TreeNode, await _fetch(key, get))
    out: dict[str, object] = {}
    if node.children == ZERO_HASH:
        return out
    # Refs.load is synchronous: fetch the Refs objects level by level first.
    store: dict[bytes, bytes] = {}
    top_data = await _fetch(node.children, get)
    store[node.children] = top_data
    top = skyenc.decode(RefsTop, top_data)
    level, height = list(top.elements), top.depth
    while height > 0:
        nxt: list[bytes] = []
        for k in level:
            data = await _fetch(k, get)
            store[k] = data
            nxt.extend(skyenc.decode(RefsNode, data).elements)
        level, height = nxt, height - 1
    refs = Refs.load(node.children, store.__getitem__)
    for h in refs:
        entry = skyenc.decode(TreeEntry, await _fetch(h, get))
        if not entry.sub.is_nil():
            out[entry.name] = await _read_node(entry.sub.hash, get, depth + 1)
        else:
            out[entry.name] = entry.leaf
    return out
