"""CXO objects against the Go vectors: Refs trees, schemas and registries, a treestore feed."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cxo.objects import (
    ZERO_HASH,
    Dynamic,
    Field,
    Kind,
    ObjectError,
    Ref,
    ReferenceType,
    Refs,
    RefsNode,
    RefsTop,
    Registry,
    Schema,
    object_key,
    reachable,
    references,
)
from skywire.cxo.root import Root
from skywire.wire import skyenc
from skywire.wire.skyenc import SkyEncError
from tests.conftest import load_vectors

CXO = load_vectors("cxo")


def _items(kind: str) -> list[dict[str, Any]]:
    for case in CXO["cases"]:
        if case["kind"] == kind:
            items: list[dict[str, Any]] = case["items"]
            return items
    raise KeyError(kind)


def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def element(i: int) -> bytes:
    return sha(f"refs-element-{i}")


# --- Refs ---------------------------------------------------------------------------------------

REFS = _items("refs")


@pytest.mark.parametrize("item", REFS, ids=[f"deg{i['degree']}-n{i['n']}" for i in REFS])
def test_refs_vectors(item: dict[str, Any]) -> None:
    hashes = [element(i) for i in range(item["n"])]
    refs = Refs.from_hashes(hashes, item["degree"])
    assert refs.hash.hex() == item["refs_hash"]
    assert len(refs) == item["n"]
    assert list(refs) == hashes
    objects = refs.objects()
    assert len(objects) == item["object_count"]
    want = [(bytes.fromhex(o["hash"]), bytes.fromhex(o["bytes"])) for o in item["objects"]]
    assert objects == want
    if item["n"]:
        assert refs.depth == item["go_depth"] - 1
        assert refs.depth == item["objects"][0]["depth_field"]
    # appending one at a time gives the same tree
    one_by_one = Refs(item["degree"])
    for h in hashes:
        one_by_one.append(h)
    assert one_by_one.hash == refs.hash
    # the objects flushed are exactly what a peer must fetch
    flushed = dict(Refs.from_hashes(hashes, item["degree"]).flush())
    assert flushed == dict(want)
    # and the tree loads back from them
    store = dict(want)
    loaded = Refs.load(refs.hash, store.__getitem__)
    assert list(loaded) == hashes
    assert loaded.hash == refs.hash
    assert loaded.objects() == want


def test_refs_field_holds_only_the_hash() -> None:
    item = next(i for i in REFS if i["n"] == 17 and i["degree"] == 16)
    refs = Refs.from_hashes([element(i) for i in range(17)])
    assert skyenc.encode(Ref(refs.hash)).hex() == item["refs_field_encoding"]


def test_refs_node_layouts_decode() -> None:
    item = next(i for i in REFS if i["n"] == 300 and i["degree"] == 16)
    top = skyenc.decode(RefsTop, bytes.fromhex(item["objects"][0]["bytes"]))
    assert (top.depth, top.degree, top.length, len(top.elements)) == (2, 16, 300, 2)
    node = skyenc.decode(RefsNode, bytes.fromhex(item["objects"][1]["bytes"]))
    assert (node.length, len(node.elements)) == (256, 16)


def test_refs_indexing_and_set_touch_only_one_path() -> None:
    hashes = [element(i) for i in range(300)]
    refs = Refs.from_hashes(hashes)
    refs.flush()
    assert refs[0] == hashes[0] and refs[299] == hashes[299] and refs[-1] == hashes[-1]
    with pytest.raises(IndexError):
        refs[300]
    refs.set(123, sha("new"))
    changed = refs.flush()
    assert len(changed) == refs.depth + 1  # top, one branch, one lowest node
    hashes[123] = sha("new")
    assert refs.hash == Refs.from_hashes(hashes).hash
    assert refs.index(sha("new")) == 123


def test_refs_delete_keeps_depth_and_drops_empty_nodes() -> None:
    refs = Refs.from_hashes([element(i) for i in range(17)])
    assert refs.depth == 1
    refs.delete(16)  # the second lowest node becomes empty and goes away
    assert refs.depth == 1 and len(refs) == 16
    top = skyenc.decode(RefsTop, dict(refs.objects())[refs.hash])
    assert (top.depth, top.length, len(top.elements)) == (1, 16, 1)
    # an append goes into the tail's free space (a new lowest node), no rebuild
    refs.append(element(16))
    assert refs.hash == Refs.from_hashes([element(i) for i in range(17)]).hash
    for _ in range(17):
        refs.delete(0)
    assert refs.hash == ZERO_HASH and refs.depth == 0 and refs.objects() == []


def test_refs_append_rebuilds_when_tail_is_full() -> None:
    refs = Refs.from_hashes([element(i) for i in range(256)])
    refs.delete(0)  # free space in the first node is not on the tail
    assert refs.depth == 1
    refs.append(element(998), element(999))  # the tail (last node of a full top) has no room
    model = [element(i) for i in range(1, 256)] + [element(998), element(999)]
    # the tree was rebuilt packed, one level deeper, exactly like a fresh one
    assert refs.depth == 2
    assert refs.hash == Refs.from_hashes(model).hash


def test_refs_append_into_tail_space_keeps_gaps() -> None:
    refs = Refs.from_hashes([element(i) for i in range(40)])
    refs.delete(0)  # the first lowest node now holds 15
    refs.append(element(999))  # goes into the last node (8 → 9), the gap stays
    model = [element(i) for i in range(1, 40)] + [element(999)]
    assert list(refs) == model
    assert refs.hash != Refs.from_hashes(model).hash  # not re-packed, as upstream
    top = skyenc.decode(RefsTop, dict(refs.objects())[refs.hash])
    lowest = [skyenc.decode(RefsNode, dict(refs.objects())[h]).length for h in top.elements]
    assert lowest == [15, 16, 9]


def test_refs_degree_bounds_and_bad_hashes() -> None:
    for bad in (1, 1025):
        with pytest.raises(ValueError):
            Refs(bad)
    with pytest.raises(ValueError):
        Refs().append(b"short")


def test_refs_load_checks_hashes_and_lengths() -> None:
    refs = Refs.from_hashes([element(i) for i in range(20)])
    store = dict(refs.objects())
    # a node whose bytes do not match its key
    node_key = refs.objects()[1][0]
    bad = dict(store)
    bad[node_key] = store[node_key] + b"x"
    with pytest.raises(ObjectError):
        Refs.load(refs.hash, bad.__getitem__)
    # a top whose length disagrees with its children
    top = skyenc.decode(RefsTop, store[refs.hash])
    lying = skyenc.encode(RefsTop(top.depth, top.degree, 21, top.elements))
    store[object_key(lying)] = lying
    with pytest.raises(ObjectError):
        Refs.load(object_key(lying), store.__getitem__)


hash_st = st.binary(min_size=32, max_size=32)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(hash_st, min_size=1, max_size=5)),
        st.tuples(st.just("set"), st.integers(0, 10_000), hash_st),
        st.tuples(st.just("delete"), st.integers(0, 10_000)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([2, 3, 16]), st.lists(hash_st, max_size=40), ops_st)
def test_refs_edits_match_a_list_and_reload(
    degree: int, start: list[bytes], ops: list[Any]
) -> None:
    refs = Refs.from_hashes(start, degree)
    model = list(start)
    store = dict(refs.flush())
    for op in ops:
        if op[0] == "append":
            refs.append(*op[1])
            model.extend(op[1])
        elif model and op[0] == "set":
            i = op[1] % len(model)
            refs.set(i, op[2])
            model[i] = op[2]
        elif model and op[0] == "delete":
            i = op[1] % len(model)
            refs.delete(i)
            del model[i]
        store.update(refs.flush())
        assert list(refs) == model
    # everything the tree needs was flushed, and reloading gives the same tree and hash
    loaded = Refs.load(refs.hash, store.__getitem__)
    assert list(loaded) == model and loaded.hash == refs.hash
    assert all(store[k] == v for k, v in refs.objects())


# --- schemas and registries -------------------------------------------------------------------

STRING = Schema.basic(Kind.STRING)
TREE_ENTRY = Schema.struct(
    "cxo.treestore.TreeEntry",
    [
        Field("Name", STRING),
        Field.ref("Sub", "cxo.treestore.TreeNode"),
        Field("Leaf", Schema.slice(Schema.basic(Kind.UINT8))),
    ],
)
TREE_NODE = Schema.struct(
    "cxo.treestore.TreeNode", [Field.refs("Children", "cxo.treestore.TreeEntry")]
)
USER = Schema.struct(
    "test.User",
    [
        Field("Name", STRING),
        Field("Age", Schema.basic(Kind.UINT32)),
        Field("Key", Schema.array(Schema.basic(Kind.UINT8), 33, "PubKey")),
    ],
)
GROUP = Schema.struct(
    "test.Group",
    [
        Field("Name", STRING),
        Field.refs("Members", "test.User"),
        Field.ref("Curator", "test.User"),
        Field("Any", Schema.dynamic()),
        Field("Tags", Schema.slice(STRING)),
        Field("Owners", Schema.slice(USER)),
    ],
)
REGISTRIES = {
    "treestore": Registry.of(TREE_NODE, TREE_ENTRY),
    "test_user_group": Registry.of(GROUP, USER),
    "empty_registry": Registry(),
}
REGISTRY_ITEMS = {i["name"]: i for i in _items("registry")}


@pytest.mark.parametrize("name", sorted(REGISTRY_ITEMS))
def test_registry_vectors(name: str) -> None:
    item = REGISTRY_ITEMS[name]
    reg = REGISTRIES[name]
    assert reg.encode().hex() == item["registry_encoding"]
    assert reg.ref.hex() == item["registry_ref"]
    for s in item["schemas"]:
        schema = reg.by_name(s["name"])
        assert schema.encode().hex() == s["encoding"]
        assert schema.ref_hash.hex() == s["schema_ref"]
        assert reg.by_ref(bytes.fromhex(s["schema_ref"])) is schema
        for f, want in zip(schema.fields, s["fields"], strict=True):
            assert f.name == want["name"] and f.tag == want["tag"]
            assert f.encode().hex() == want["field_encoding"]
            assert f.schema.encode().hex() == want["schema_encoding"]
            assert int(f.schema.kind) == want["kind_number"]
            assert int(f.schema.reference_type) == want["reference_type"]
    # decoding the registry object gives back the same bytes and hashes
    decoded = Registry.decode(bytes.fromhex(item["registry_encoding"]))
    assert decoded.encode() == reg.encode()
    assert decoded.names() == reg.names()


def test_registry_rejects_bad_input() -> None:
    with pytest.raises(SkyEncError):
        Registry.decode(b"\x01\x00\x00\x00\x05")
    with pytest.raises(ValueError):
        Registry.of(STRING)
    with pytest.raises(ObjectError):
        REGISTRIES["treestore"].by_name("nope")


@given(st.binary(max_size=300))
def test_random_registry_bytes_raise_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(SkyEncError):
        Registry.decode(data)


# --- a treestore feed ---------------------------------------------------------------------------


@skyenc.schema
class TreeNode:
    children: bytes = skyenc.field(skyenc.SHA256)  # a Refs field: the top object's hash


@skyenc.schema
class TreeEntry:
    name: str = skyenc.field(skyenc.STRING)
    sub: Ref = skyenc.field(Ref)
    leaf: bytes = skyenc.field(skyenc.BYTES)


FEED = _items("treestore_feed_example")[0]


def test_treestore_feed_objects_and_what_a_peer_fetches() -> None:
    reg = REGISTRIES["treestore"]
    store: dict[bytes, bytes] = {reg.ref: reg.encode()}

    def put(data: bytes) -> bytes:
        store[object_key(data)] = data
        return object_key(data)

    def node(entries: list[bytes]) -> bytes:
        refs = Refs.from_hashes(entries)
        store.update(refs.flush())
        return put(skyenc.encode(TreeNode(refs.hash)))

    b = put(skyenc.encode(TreeEntry("b", Ref(), b"v2")))
    sub = node([b])
    a = put(skyenc.encode(TreeEntry("a", Ref(), b"v1")))
    d = put(skyenc.encode(TreeEntry("d", Ref(sub), b"")))
    top = node([a, d])

    want = {bytes.fromhex(o["hash"]): bytes.fromhex(o["bytes"]) for o in FEED["objects"]}
    assert store == want

    root = Root.decode(bytes.fromhex(FEED["root_encoded"]))
    assert root.hash.hex() == FEED["root_hash"]
    assert root.refs == [Dynamic(top, TREE_NODE.ref_hash)]
    assert root.reg == reg.ref
    needed = reachable(root.refs, root.reg, store.__getitem__)
    assert needed == [bytes.fromhex(o["hash"]) for o in FEED["objects"]]

    refs_found = references(TREE_ENTRY, store[d], reg)
    assert [(r.type, r.hash) for r in refs_found] == [(ReferenceType.REF, sub)]


def test_reachable_refuses_a_wrong_object() -> None:
    reg = REGISTRIES["treestore"]
    root = Root.decode(bytes.fromhex(FEED["root_encoded"]))
    store = {bytes.fromhex(o["hash"]): bytes.fromhex(o["bytes"]) for o in FEED["objects"]}
    key = bytes.fromhex(FEED["objects"][3]["hash"])
    store[key] = store[key] + b"!"
    with pytest.raises(ObjectError):
        reachable(root.refs, reg.ref, store.__getitem__)


def test_dynamic_validity() -> None:
    assert Dynamic().is_valid() and Dynamic().is_nil()
    assert Dynamic(ZERO_HASH, sha("s")).is_valid()
    assert not Dynamic(sha("o"), ZERO_HASH).is_valid()
