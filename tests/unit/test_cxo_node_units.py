"""Pure parts of the CXO node: the treestore value tree, the DAG walk, one Conn over a pipe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from skywire.cipher import KeyPair
from skywire.cxo.conn import (
    Conn,
    HandshakeError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
)
from skywire.cxo.msg import Ack, Err, Object, Packet, RqObject, Syn
from skywire.cxo.node import Item, ItemKind, children_of, root_children
from skywire.cxo.objects import ObjectError, Refs, RefsTop, reachable
from skywire.cxo.root import Root
from skywire.cxo.treestore import REGISTRY, TREE_NODE, build_tree, read_tree
from skywire.wire import skyenc
from tests.conftest import load_vectors


def _feed_vector() -> dict[str, Any]:
    for case in load_vectors("cxo")["cases"]:
        if case["kind"] == "treestore_feed_example":
            item: dict[str, Any] = case["items"][0]
            return item
    raise KeyError("treestore_feed_example")


FEED = _feed_vector()


def test_build_tree_matches_the_go_treestore_feed() -> None:
    refs, reg, objects = build_tree({"a": b"v1", "d": {"b": "v2"}})
    want = {bytes.fromhex(o["hash"]): bytes.fromhex(o["bytes"]) for o in FEED["objects"]}
    assert objects == want
    root = Root.decode(bytes.fromhex(FEED["root_encoded"]))
    assert (refs, reg) == (root.refs, root.reg)


async def test_read_tree_round_trip() -> None:
    tree: dict[str, Any] = {
        "empty-dir": {},
        "empty-leaf": b"",
        "text": "é",
        "big": {f"k{i:04}": bytes([i % 256]) * (i % 7) for i in range(300)},
        "deep": {"x": {"y": {"z": b"1"}}},
    }
    refs, _, objects = build_tree(tree)

    async def get(key: bytes) -> bytes | None:
        return objects.get(key)

    got = await read_tree(refs, get)
    assert got == {**tree, "text": "é".encode()}
    assert await read_tree([], get) == {}


async def test_read_tree_refuses_missing_and_wrong_objects() -> None:
    refs, _, objects = build_tree({"a": b"1", "b": {"c": b"2"}})
    key = next(k for k, v in objects.items() if b"c" in v and len(v) < 60)

    async def missing(k: bytes) -> bytes | None:
        return None if k == key else objects[k]

    async def wrong(k: bytes) -> bytes | None:
        return objects[k] + b"!" if k == key else objects[k]

    with pytest.raises(ObjectError, match="missing"):
        await read_tree(refs, missing)
    with pytest.raises(ObjectError, match="does not match"):
        await read_tree(refs, wrong)


def test_editing_one_leaf_creates_objects_only_on_its_path() -> None:
    tree = {f"k{i:03}": f"v{i}" for i in range(300)}
    _, _, before = build_tree(tree)
    tree["k123"] = "changed"
    _, _, after = build_tree(tree)
    new = set(after) - set(before)
    # the entry, its lowest Refs node, the middle node, the Refs top (300 > 16²: depth 2),
    # and the TreeNode
    assert len(new) == 5


def _walk(root: Root, objects: dict[bytes, bytes]) -> list[bytes]:
    registry = REGISTRY
    seen: list[bytes] = [root.reg]
    stack = root_children(root, registry)
    while stack:
        key, item = stack.pop(0)
        if key in seen:
            continue
        seen.append(key)
        stack.extend(children_of(item, objects[key], registry))
    return seen


def test_children_of_reaches_what_reachable_does() -> None:
    tree = {"a": b"1", "d": {f"x{i}": str(i) for i in range(40)}, "e": {}}
    refs, reg, objects = build_tree(tree)
    root = Root(refs=refs, reg=reg, pub=KeyPair.generate().pk)
    assert set(_walk(root, objects)) == set(reachable(refs, reg, objects.__getitem__))
    assert set(_walk(root, objects)) == set(objects)


def test_children_of_refuses_malformed_refs() -> None:
    bad_degree = skyenc.encode(RefsTop(0, 1, 1, [bytes(range(32))]))
    with pytest.raises(ObjectError, match="degree"):
        children_of(Item(ItemKind.REFS_TOP, TREE_NODE), bad_degree, REGISTRY)
    deep = skyenc.encode(RefsTop(99, 16, 1, [bytes(range(32))]))
    with pytest.raises(ObjectError, match="depth"):
        children_of(Item(ItemKind.REFS_TOP, TREE_NODE), deep, REGISTRY)
    refs = Refs.from_hashes([bytes([i]) * 32 for i in range(17)])
    top = dict(refs.objects())[refs.hash]
    kids = children_of(Item(ItemKind.REFS_TOP, TREE_NODE), top, REGISTRY)
    assert [it.kind for _, it in kids] == [ItemKind.REFS_NODE] * 2
    with pytest.raises(skyenc.SkyEncError):
        children_of(Item(ItemKind.REFS_TOP, TREE_NODE), top[:-3], REGISTRY)


# --- one Conn over an in-memory pipe --------------------------------------------------------------


class PipeEnd:
    """A ByteStream end joined to another by two StreamReaders."""

    def __init__(self, inbox: asyncio.StreamReader, outbox: asyncio.StreamReader) -> None:
        self.inbox, self.outbox = inbox, outbox

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.inbox.read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        return await self.inbox.readexactly(n)

    async def write(self, data: bytes) -> None:
        self.outbox.feed_data(data)

    async def close(self) -> None:
        if not self.outbox.at_eof():
            self.outbox.feed_eof()


def pipe() -> tuple[PipeEnd, PipeEnd]:
    a, b = asyncio.StreamReader(), asyncio.StreamReader()
    return PipeEnd(a, b), PipeEnd(b, a)


async def no_dispatch(conn: Conn, packet: Packet) -> None:
    raise ProtocolError(f"unexpected {type(packet.msg).__name__}")


async def _read(end: PipeEnd) -> Packet:
    n = int.from_bytes(await end.readexactly(4), "big")
    return Packet.decode(await end.readexactly(n))


async def test_conn_handshake_and_request_correlation() -> None:
    near, far = pipe()
    me, peer = KeyPair.generate(), KeyPair.generate()
    conn = Conn(near, node_id=me.pk, incoming=False, dispatch=no_dispatch, response_timeout=5)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(conn.run())
        syn = await _read(far)
        assert syn.msg == Syn(3, me.pk) and syn.seq == 1 and syn.rseq == 0
        await far.write(Packet(1, syn.seq, Ack(peer.pk)).frame())
        await conn.wait_ready()
        assert conn.peer_id == peer.pk
        first = asyncio.ensure_future(conn.request(RqObject(bytes(32))))
        second = asyncio.ensure_future(conn.request(RqObject(bytes([1]) * 32)))
        rq1, rq2 = await _read(far), await _read(far)
        # answered out of order; an unsolicited late reply is dropped silently
        await far.write(Packet(2, 999, Object(b"late")).frame())
        await far.write(Packet(3, rq2.seq, Err("nope")).frame())
        await far.write(Packet(4, rq1.seq, Object(b"one")).frame())
        assert await first == Object(b"one")
        with pytest.raises(RemoteError, match="nope"):
            await second
        with pytest.raises(RequestTimeoutError):
            await conn.request(RqObject(bytes(32)), timeout=0)
        assert conn.established
        conn.close()
    assert conn.closed
    assert isinstance((await _read(far)).msg, RqObject)  # the one that timed out
    assert await far.read() == b""  # the stream was closed with the connection


async def test_conn_acceptor_refuses_a_wrong_first_message() -> None:
    near, far = pipe()
    conn = Conn(near, node_id=KeyPair.generate().pk, incoming=True, dispatch=no_dispatch)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(conn.run())
        await far.write(Packet(1, 0, Object(b"x")).frame())
    assert isinstance(conn.error, HandshakeError)
    with pytest.raises(HandshakeError, match="invalid message type"):
        await conn.wait_ready()
