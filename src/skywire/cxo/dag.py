"""Walking the DAG of a CXO Root, pure: what each object is (:class:`Item`: the registry, an
object of a schema, or the top / a lower node of a Refs) and which objects it refers to
(:func:`root_children` for a Root's branches, :func:`children_of` for one object's bytes). No
I/O and no store: the node's fill and release drive these over fetched or stored bytes.
"""

from __future__ import annotations

import dataclasses
import enum

from skywire.cxo.objects import (
    MAX_DEGREE,
    MIN_DEGREE,
    ZERO_HASH,
    ObjectError,
    ReferenceType,
    RefsNode,
    RefsTop,
    Registry,
    Schema,
    references,
)
from skywire.cxo.root import Root
from skywire.wire import skyenc

__all__ = ["REGISTRY_ITEM", "Item", "ItemKind", "children_of", "root_children"]

_MAX_REFS_DEPTH = 32


class ItemKind(enum.Enum):
    REGISTRY = "registry"
    OBJECT = "object"
    REFS_TOP = "refs_top"
    REFS_NODE = "refs_node"


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """What an object is, so that its references can be found: a registry, an object of a
    schema, or the top / a lower node (at ``depth``) of a Refs of objects of a schema."""

    kind: ItemKind
    schema: Schema | None = None
    depth: int = 0


REGISTRY_ITEM = Item(ItemKind.REGISTRY)


def root_children(root: Root, registry: Registry) -> list[tuple[bytes, Item]]:
    """The objects the branches of ``root`` refer to (the registry is handled first, apart)."""
    out: list[tuple[bytes, Item]] = []
    for dyn in root.refs:
        if not dyn.is_valid():
            raise ObjectError("invalid Dynamic in Root")
        if dyn.hash != ZERO_HASH:
            out.append((dyn.hash, Item(ItemKind.OBJECT, registry.by_ref(dyn.schema))))
    return out


def children_of(item: Item, data: bytes, registry: Registry) -> list[tuple[bytes, Item]]:
    """The references inside one object, each with what it refers to."""
    if item.kind is ItemKind.REGISTRY:
        return []
    schema = item.schema
    assert schema is not None
    if item.kind is ItemKind.OBJECT:
        out: list[tuple[bytes, Item]] = []
        for ref in references(schema, data, registry):
            assert ref.schema is not None
            kind = ItemKind.REFS_TOP if ref.type == ReferenceType.REFS else ItemKind.OBJECT
            out.append((ref.hash, Item(kind, ref.schema)))
        return out
    if item.kind is ItemKind.REFS_TOP:
        top = skyenc.decode(RefsTop, data)
        if not MIN_DEGREE <= top.degree <= MAX_DEGREE:
            raise ObjectError(f"Refs degree {top.degree} outside {MIN_DEGREE}..{MAX_DEGREE}")
        if top.depth > _MAX_REFS_DEPTH:
            raise ObjectError(f"Refs depth {top.depth} too large")
        if len(top.elements) > top.degree:
            raise ObjectError("Refs node with too many elements")
        return _refs_elements(schema, top.elements, top.depth)
    node = skyenc.decode(RefsNode, data)
    if len(node.elements) > MAX_DEGREE:
        raise ObjectError("Refs node with too many elements")
    return _refs_elements(schema, node.elements, item.depth)


def _refs_elements(schema: Schema, elements: list[bytes], depth: int) -> list[tuple[bytes, Item]]:
    if depth == 0:
        return [(h, Item(ItemKind.OBJECT, schema)) for h in elements if h != ZERO_HASH]
    return [(h, Item(ItemKind.REFS_NODE, schema, depth - 1)) for h in elements]
