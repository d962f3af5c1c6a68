"""CXO nodes on loopback (TCP and dmsg): announce-then-fill, hostile peers, leak-free shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import struct
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.cxo.conn import (
    Conn,
    CXOError,
    FrameTooLargeError,
    ProtocolError,
    TruncatedFrameError,
)
from skywire.cxo.msg import (
    PROTOCOL_VERSION,
    Ack,
    Err,
    FrameReader,
    Message,
    Object,
    Ok,
    Packet,
    Ping,
    Pong,
    RootMsg,
    RqList,
    RqObject,
    Sub,
    Syn,
)
from skywire.cxo.node import (
    FillError,
    Node,
    NodeConfig,
    ObjectMismatchError,
    RootRejectedError,
    StaleRootError,
    SubscribeError,
)
from skywire.cxo.root import Root, new_root
from skywire.cxo.store import MemoryStore
from skywire.cxo.treestore import build_tree
from skywire.testnet.dmsgnet import LocalDmsgNetwork

CXO_PORT = 53


def tree_for(i: int, rng: random.Random, state: dict[str, Any]) -> dict[str, Any]:
    """Edit 1..3 leaves of a two-level tree (state is mutated and returned)."""
    for _ in range(rng.randint(1, 3)):
        d = f"dir{rng.randrange(4)}"
        state.setdefault(d, {})[f"k{rng.randrange(12)}"] = f"update {i} {rng.random()}".encode()
    return state


class Errors:
    """Collects ``on_error`` reports; ``await errors.next(T)`` waits for the next one of type T
    (reports of other types are kept for later calls)."""

    def __init__(self) -> None:
        self.seen: list[CXOError] = []
        self.changed = asyncio.Event()

    def __call__(self, conn: Conn | None, exc: CXOError) -> None:
        self.seen.append(exc)
        self.changed.set()

    async def next(self, kind: type[CXOError]) -> CXOError:
        async with asyncio.timeout(10):
            while True:
                for i, exc in enumerate(self.seen):
                    if isinstance(exc, kind):
                        del self.seen[i]
                        return exc
                self.changed.clear()
                await self.changed.wait()


async def object_count(node: Node) -> int:
    return (await node.store.object_stats())[0]


# --- two honest nodes ---------------------------------------------------------------------------


Link = Callable[[Node, Node], Awaitable[Conn]]


async def link_tcp(pub: Node, sub: Node) -> Conn:
    host, port = await pub.listen_tcp()
    return await sub.connect_tcp(host, port)


@contextlib.asynccontextmanager
async def dmsg_link(pub_sk: SecKey, sub_sk: SecKey) -> AsyncIterator[Link]:
    """Two dmsg clients (the nodes' keys); the publisher listens on :data:`CXO_PORT`."""
    async with LocalDmsgNetwork(servers=1) as net:
        a, b = await net.client(pub_sk), await net.client(sub_sk)

        async def link(pub: Node, sub: Node) -> Conn:
            await pub.listen_dmsg(a, CXO_PORT)
            return await sub.connect_dmsg(b, a.pk, CXO_PORT)

        yield link


@contextlib.asynccontextmanager
async def tcp_link() -> AsyncIterator[Link]:
    yield link_tcp


@pytest.mark.parametrize("transport", ["tcp", "dmsg"])
async def test_hundred_updates_transfer_only_new_objects(transport: str) -> None:
    feed = KeyPair.generate()
    rng = random.Random(7)
    state: dict[str, Any] = {f"dir{d}": {f"k{k}": b"init" for k in range(12)} for d in range(4)}
    pub_kp, sub_kp = KeyPair.generate(), KeyPair.generate()
    links = tcp_link() if transport == "tcp" else dmsg_link(pub_kp.sk, sub_kp.sk)
    async with (
        links as link,
        Node(MemoryStore(), pub_kp.sk, config=NodeConfig(verify_node_id=True)) as pub,
        Node(MemoryStore(), sub_kp.sk, config=NodeConfig(verify_node_id=True)) as sub,
    ):
        await pub.publish(feed.sk, state)
        conn = await link(pub, sub)
        if transport == "dmsg":
            assert conn.peer_id == pub.id == conn.remote_pk
        updates = sub.updates(feed.pk)
        await sub.subscribe(feed.pk, conn)
        first = await anext(updates)
        assert first.seq == 0 and first.is_full
        assert await sub.get_value(first) == state
        # the first fill fetched the whole tree: every object but the Root itself
        assert sub.stats.objects_requested == await object_count(sub) - 1
        for i in range(1, 101):
            tree = tree_for(i, rng, state)
            _, _, objects = build_tree(tree)
            new = [k for k in objects if not await sub.store.has(k)]
            requested, count = sub.stats.objects_requested, await object_count(sub)
            published = await pub.publish(feed.sk, tree)
            got = await anext(updates)
            assert (got.seq, got.hash, got.is_full) == (i, published.hash, True)
            assert await sub.get_value(got) == tree
            delta = sub.stats.objects_requested - requested
            assert delta == len(new) > 0
            # only the new objects and the Root object were added
            assert await object_count(sub) - count == delta + 1
        assert sub.stats.objects_received == sub.stats.objects_requested
        assert pub.stats.objects_served == sub.stats.objects_requested
        assert not sub.errors and not pub.errors
        meta = await sub.store.active_root(feed.pk)
        assert meta is not None and meta.seq == 100 and meta.full
        updates.close()


async def test_concurrent_requests_are_bounded() -> None:
    feed = KeyPair.generate()
    tree = {f"leaf{i:03}": f"value {i}" for i in range(300)}
    async with (
        Node(MemoryStore()) as pub,
        Node(MemoryStore(), config=NodeConfig(max_in_flight=4)) as sub,
    ):
        await pub.publish(feed.sk, tree)
        conn = await link_tcp(pub, sub)
        updates = sub.updates(feed.pk)
        await sub.subscribe(feed.pk, conn)
        root = await anext(updates)
        assert await sub.get_value(root) == {k: v.encode() for k, v in tree.items()}
        assert sub.stats.in_flight_peak == 4
        assert sub.stats.in_flight == 0


async def test_retention_keeps_exactly_the_last_roots_objects() -> None:
    feed = KeyPair.generate()
    rng = random.Random(3)
    state: dict[str, Any] = {}
    cfg = NodeConfig(keep_roots=1)
    async with Node(MemoryStore(), config=cfg) as pub, Node(MemoryStore(), config=cfg) as sub:
        await pub.publish(feed.sk, tree_for(0, rng, state))
        conn = await link_tcp(pub, sub)
        updates = sub.updates(feed.pk)
        await sub.subscribe(feed.pk, conn)
        await anext(updates)
        for i in range(1, 30):
            await pub.publish(feed.sk, tree_for(i, rng, state))
            await anext(updates)
        _, _, objects = build_tree(state)
        # the last tree's objects plus its Root object, nothing else
        for node in (pub, sub):
            assert await object_count(node) == len(objects) + 1
            assert all([await node.store.has(k) for k in objects])
            last = await node.last_root(feed.pk)
            assert last is not None and await node.get_value(last) == state


async def test_subscription_refused() -> None:
    feed, other = KeyPair.generate(), KeyPair.generate()

    def allow(conn: Conn, pk: PubKey) -> str | None:
        return None if pk == feed.pk else "not on the allowlist"

    async with Node(MemoryStore(), on_subscribe_remote=allow) as pub, Node(MemoryStore()) as sub:
        await pub.publish(other.sk, {"x": b"1"})
        conn = await link_tcp(pub, sub)
        with pytest.raises(SubscribeError, match="not on the allowlist"):
            await sub.subscribe(other.pk, conn)
        with pytest.raises(SubscribeError, match="do not share the feed"):
            await sub.subscribe(feed.pk, conn)
        assert conn.established
        assert await sub.store.active_root(other.pk) is None


async def test_updates_end_when_node_closes() -> None:
    feed = KeyPair.generate()
    node = Node(MemoryStore())
    async with node:
        updates = node.updates(feed.pk)
        await node.publish(feed.sk, {"a": b"b"})
        assert (await anext(updates)).seq == 0
        waiting = asyncio.ensure_future(anext(updates))
    with pytest.raises(StopAsyncIteration):
        await waiting
    assert node.live_tasks() == []


# --- a hand-driven peer -------------------------------------------------------------------------


class RawPeer:
    """One end of a CXO connection driven by the test with raw frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames = FrameReader()
        self.pending: list[bytes] = []
        self.seq = 0

    async def send(self, msg: Message, rseq: int = 0) -> int:
        self.seq += 1
        self.writer.write(Packet(self.seq, rseq, msg).frame())
        await self.writer.drain()
        return self.seq

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> Packet:
        async with asyncio.timeout(10):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError
                self.pending += self.frames.feed(data)
        return Packet.decode(self.pending.pop(0))

    async def expect_eof(self) -> None:
        with pytest.raises(EOFError):
            while True:
                await self.recv()

    async def accept_handshake(self, node_id: PubKey) -> None:
        syn = await self.recv()
        assert isinstance(syn.msg, Syn) and syn.msg.protocol == PROTOCOL_VERSION
        await self.send(Ack(node_id), syn.seq)

    async def accept_sub(self, feed: PubKey) -> None:
        sub = await self.recv()
        assert sub.msg == Sub(feed)
        await self.send(Ok(), sub.seq)

    async def push(self, feed: PubKey, root: Root, value: bytes | None = None) -> None:
        value = root.encode() if value is None else value
        await self.send(RootMsg(feed, root.nonce, root.seq, value, root.sig))

    async def serve(self, objects: dict[bytes, bytes], count: int | None = None) -> int:
        """Answer RqObject from ``objects`` (``count`` of them, or until EOF)."""
        served = 0
        while count is None or served < count:
            try:
                rq = await self.recv()
            except EOFError:
                break
            assert isinstance(rq.msg, RqObject)
            await self.send(Object(objects[rq.msg.key]), rq.seq)
            served += 1
        return served

    def close(self) -> None:
        self.writer.close()


class RawServer:
    """A TCP server handing out :class:`RawPeer` s for the node to dial."""

    def __init__(self) -> None:
        self.peers: asyncio.Queue[RawPeer] = asyncio.Queue()
        self.accepted: list[RawPeer] = []
        self.open = 0
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        # plain callbacks keep the server's handler tasks out of the picture
        def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.open += 1
            self.changed.set()
            peer = RawPeer(r, w)
            self.accepted.append(peer)
            self.peers.put_nowait(peer)

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        # The server owns the peers it accepted: since Python 3.12.1 wait_closed() also waits
        # for them, so a peer the test left open (the node already hung up) is closed here.
        for peer in self.accepted:
            peer.close()
        await self.server.wait_closed()

    async def peer(self) -> RawPeer:
        async with asyncio.timeout(10):
            return await self.peers.get()


async def dial_raw(node: Node, server: RawServer) -> tuple[Conn, RawPeer]:
    dialing = asyncio.ensure_future(node.connect_tcp("127.0.0.1", server.port))
    peer = await server.peer()
    await peer.accept_handshake(KeyPair.generate().pk)
    return await dialing, peer


async def subscribed_raw(node: Node, server: RawServer, feed: PubKey) -> tuple[Conn, RawPeer]:
    conn, peer = await dial_raw(node, server)
    subscribing = asyncio.ensure_future(node.subscribe(feed, conn))
    await peer.accept_sub(feed)
    await subscribing
    return conn, peer


async def assert_nothing_stored(node: Node, feed: PubKey) -> None:
    assert await node.store.object_stats() == (0, 0)
    assert await node.store.heads(feed) == []


async def prove_alive(peer: RawPeer) -> None:
    """A round trip after a refused message: the node read it and kept the connection."""
    seq = await peer.send(RqList())
    reply = await peer.recv()
    assert reply.rseq == seq and isinstance(reply.msg, Err)


def signed_tree(
    sk: SecKey, tree: dict[str, Any], *, nonce: int = 1, last: Root | None = None
) -> tuple[Root, dict[bytes, bytes]]:
    refs, reg, objects = build_tree(tree)
    return new_root(sk, nonce=nonce, refs=refs, reg=reg, last=last), objects


async def test_root_with_a_bad_signature_is_refused() -> None:
    feed, mallory = KeyPair.generate(), KeyPair.generate()
    errors = Errors()
    async with RawServer() as srv, Node(MemoryStore(), on_error=errors) as node:
        conn, peer = await subscribed_raw(node, srv, feed.pk)
        root, _ = signed_tree(feed.sk, {"a": b"1"})
        forged, _ = signed_tree(mallory.sk, {"a": b"1"})
        # a Root claiming the feed but signed by another key
        await peer.send(RootMsg(feed.pk, root.nonce, root.seq, root.encode(), forged.sig))
        # the Pub inside is ignored: the envelope's Feed is what the signature must match
        await peer.send(RootMsg(feed.pk, forged.nonce, forged.seq, forged.encode(), forged.sig))
        assert isinstance(await errors.next(RootRejectedError), RootRejectedError)
        assert isinstance(await errors.next(RootRejectedError), RootRejectedError)
        await prove_alive(peer)
        assert conn.established
        await assert_nothing_stored(node, feed.pk)
        peer.close()


async def test_object_with_a_wrong_hash_drops_the_connection() -> None:
    feed = KeyPair.generate()
    errors = Errors()
    async with RawServer() as srv, Node(MemoryStore(), on_error=errors) as node:
        conn, peer = await subscribed_raw(node, srv, feed.pk)
        root, objects = signed_tree(feed.sk, {"a": b"1", "b": {"c": b"2"}})
        await peer.push(feed.pk, root)
        rq = await peer.recv()
        assert isinstance(rq.msg, RqObject) and rq.msg.key == root.reg
        await peer.send(Object(objects[root.reg] + b"x"), rq.seq)
        await peer.expect_eof()
        assert isinstance(await conn.wait_closed(), ObjectMismatchError)
        assert isinstance(await errors.next(ObjectMismatchError), ObjectMismatchError)
        fill = await errors.next(FillError)
        assert "no connections to fill from" in str(fill)
        await assert_nothing_stored(node, feed.pk)


async def test_root_going_back_in_seq_is_ignored() -> None:
    feed = KeyPair.generate()
    errors = Errors()
    async with RawServer() as srv, Node(MemoryStore(), on_error=errors) as node:
        conn, peer = await subscribed_raw(node, srv, feed.pk)
        chain: list[tuple[Root, dict[bytes, bytes]]] = []
        last: Root | None = None
        for i in range(4):
            last, objects = signed_tree(feed.sk, {"v": str(i)}, last=last)
            chain.append((last, objects))
        updates = node.updates(feed.pk)
        top, objects = chain[3]
        await peer.push(feed.pk, top)
        await peer.serve(objects, count=len(objects))
        got = await anext(updates)
        assert got.seq == 3
        before = await node.store.object_stats()
        old, _ = chain[1]
        await peer.push(feed.pk, old)
        assert isinstance(await errors.next(StaleRootError), StaleRootError)
        await prove_alive(peer)
        assert conn.established
        assert await node.store.object_stats() == before
        assert [m.seq for m in await node.store.roots(feed.pk, top.nonce)] == [3]
        peer.close()


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        (struct.pack(">I", 100) + bytes(10), TruncatedFrameError, "after 10 of 100"),
        (bytes(2), TruncatedFrameError, "frame header"),
        (struct.pack(">I", 0), FrameTooLargeError, "frame length 0"),
        (struct.pack(">I", (64 << 20) + 1), FrameTooLargeError, "outside"),
        (Packet(9, 0, Ping()).frame(), ProtocolError, "invalid message type"),
        (Packet(9, 0, Pong()).frame(), ProtocolError, "invalid message type"),
        (Packet(9, 0, Syn(3, PubKey.NULL)).frame(), ProtocolError, "invalid message type"),
        (struct.pack(">I", 9) + bytes(8) + b"\x63", ProtocolError, "invalid message type"),
        (Packet(9, 0, Sub(KeyPair.generate().pk)).frame()[:-1], TruncatedFrameError, "of 42"),
    ],
    ids=[
        "truncated",
        "truncated-header",
        "zero",
        "over-64MiB",
        "ping",
        "pong",
        "syn",
        "unknown-type",
        "truncated-sub",
    ],
)
async def test_bad_frames_drop_the_connection(raw: bytes, error: type[CXOError], text: str) -> None:
    feed = KeyPair.generate()
    async with RawServer() as srv, Node(MemoryStore()) as node:
        conn, peer = await subscribed_raw(node, srv, feed.pk)
        await peer.send_raw(raw)
        if error is TruncatedFrameError:
            peer.writer.write_eof()
        reason = await conn.wait_closed()
        assert isinstance(reason, error), reason
        assert text in str(reason)
        assert (conn, reason) in node.errors
        await peer.expect_eof()
        await assert_nothing_stored(node, feed.pk)
        assert node.connections == []


async def test_handshake_with_a_wrong_protocol_is_answered_with_err() -> None:
    async with Node(MemoryStore()) as node:
        host, port = await node.listen_tcp()
        r, w = await asyncio.open_connection(host, port)
        peer = RawPeer(r, w)
        seq = await peer.send(Syn(2, KeyPair.generate().pk))
        reply = await peer.recv()
        assert reply.rseq == seq and isinstance(reply.msg, Err)
        assert "incompatible protocol version: 2, want 3" in reply.msg.err
        await peer.expect_eof()
        peer.close()


# --- leaks --------------------------------------------------------------------------------------


def fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
    return out


def sockets() -> int:
    return sum(1 for f in fds() if f.startswith("socket:"))


async def test_fifty_subscriber_cycles_leave_nothing_behind() -> None:
    feed = KeyPair.generate()
    async with Node(MemoryStore()) as pub:
        host, port = await pub.listen_tcp()
        await pub.publish(feed.sk, {f"k{i}": f"v{i}" for i in range(40)})
        refs: list[weakref.ref[Node]] = []

        async def cycle() -> None:
            sub = Node(MemoryStore())
            refs.append(weakref.ref(sub))
            async with sub:
                conn = await sub.connect_tcp(host, port)
                updates = sub.updates(feed.pk)
                await sub.subscribe(feed.pk, conn)
                root = await anext(updates)
                assert len(await sub.get_value(root)) == 40
            assert sub.live_tasks() == []
            # the publisher's side of the connection ends when it reads EOF
            await pub.wait_connections(0)

        await cycle()  # warm-up
        gc.collect()
        tasks, n_fds, n_socks = len(asyncio.all_tasks()), len(fds()), sockets()
        for _ in range(50):
            await cycle()
        gc.collect()
        assert len(asyncio.all_tasks()) == tasks
        assert len(fds()) == n_fds
        assert sockets() == n_socks
        assert [r for r in refs if r() is not None] == []
        assert pub.stats.objects_served == 51 * (await object_count(pub) - 1)


async def test_closing_in_the_middle_of_a_fill_leaves_nothing_behind() -> None:
    feed = KeyPair.generate()
    root, objects = signed_tree(feed.sk, {f"k{i}": f"v{i}" for i in range(100)})
    async with RawServer() as srv:
        refs: list[weakref.ref[Node]] = []

        async def cycle() -> None:
            sub = Node(MemoryStore(), config=NodeConfig(max_in_flight=8))
            refs.append(weakref.ref(sub))
            async with sub:
                _, peer = await subscribed_raw(sub, srv, feed.pk)
                await peer.push(feed.pk, root)
                # answer a few requests, then stall with requests outstanding
                await peer.serve(objects, count=3)
                assert isinstance((await peer.recv()).msg, RqObject)
                assert sub.stats.in_flight > 0
            assert sub.live_tasks() == []
            await peer.expect_eof()
            peer.close()
            with contextlib.suppress(ConnectionError):
                await peer.writer.wait_closed()

        await cycle()
        gc.collect()
        tasks, n_fds, n_socks = len(asyncio.all_tasks()), len(fds()), sockets()
        for _ in range(50):
            await cycle()
        gc.collect()
        assert len(asyncio.all_tasks()) == tasks
        assert len(fds()) == n_fds
        assert sockets() == n_socks
        assert [r for r in refs if r() is not None] == []


async def test_dmsg_subscriber_cycles_leave_no_tasks() -> None:
    feed = KeyPair.generate()
    async with LocalDmsgNetwork(servers=1) as net, Node(MemoryStore()) as pub:
        a, b = await net.client(), await net.client()
        await pub.listen_dmsg(a, CXO_PORT)
        await pub.publish(feed.sk, {"a": b"1"})
        refs: list[weakref.ref[Node]] = []

        async def cycle() -> None:
            sub = Node(MemoryStore())
            refs.append(weakref.ref(sub))
            async with sub:
                conn = await sub.connect_dmsg(b, a.pk, CXO_PORT)
                updates = sub.updates(feed.pk)
                await sub.subscribe(feed.pk, conn)
                await anext(updates)
            await pub.wait_connections(0)

        await cycle()
        gc.collect()
        tasks = len(asyncio.all_tasks())
        for _ in range(10):
            await cycle()
        gc.collect()
        assert len(asyncio.all_tasks()) == tasks
        assert [r for r in refs if r() is not None] == []
