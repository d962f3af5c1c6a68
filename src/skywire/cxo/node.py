"""The CXO node: feeds shared with peers, announce-then-fill, and a leak-free actor tree.

Ownership is the task tree (cxo.md §7, §9.1)::

    Node (root task, one TaskGroup)
    ├── feeds actor (TaskGroup)
    │   └── one task per head (feed, nonce): the fill loop; a fill runs its walker tasks in
    │       its own TaskGroup, bounded by the node's in-flight semaphore
    ├── one task per listener (TCP server or a dmsg port's accept loop)
    └── one task per connection (TaskGroup: reader, writer, one task per RqObject served)

:meth:`Node.close` (or leaving ``async with``) cancels the root task, waits for the whole tree
and only then closes the store. Feeds bookkeeping is plain synchronous state; heads are woken
through events; sending is a non-blocking queue append. No task ever blocks on a bounded put
towards a task that might be gone, so there is no close-time deadlock (cxo.md §7.3).

Objects are reference counted in the store: a Root counts once for its own object, and every
object counts once per parent (Root or object) referring to it. A fill walks the DAG of a new
Root; an object already counted (rc > 0) stands for its whole subtree and is not descended
into. A failed fill gives back every count it took and sweeps what became unreferenced.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import hashlib
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.cxo.conn import (
    Conn,
    ConnClosedError,
    CXOError,
    IdleTimeoutError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
)
from skywire.cxo.msg import (
    MAX_FRAME,
    Ack,
    Err,
    List,
    Message,
    Object,
    Ok,
    Packet,
    Ping,
    Pong,
    RootMsg,
    RqList,
    RqObject,
    RqPeers,
    RqPreview,
    Sub,
    Syn,
    Unsub,
)
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
from skywire.cxo.root import Root, RootVerifyError, new_root, verify_received
from skywire.cxo.store import CXOStore, RootMeta, StoreError
from skywire.cxo.treestore import ValueTree, build_tree, read_tree
from skywire.wire import skyenc
from skywire.wire.skyenc import SkyEncError
from skywire.wire.stream import ByteStream, Listener, TcpStream

__all__ = [
    "CXO_PORTS",
    "Conn",
    "FillError",
    "IdleTimeoutError",
    "Item",
    "ItemKind",
    "Node",
    "NodeConfig",
    "NodeStats",
    "ObjectMismatchError",
    "ObjectTooLargeError",
    "RootRejectedError",
    "RootUpdates",
    "StaleRootError",
    "SubscribeError",
    "children_of",
    "root_children",
]

log = logging.getLogger(__name__)

#: dmsg ports of the feeds Skywire runs (skyenv); one CXO connection = one stream on the port
CXO_PORTS = {
    "telemetry": 50,
    "metrics": 51,
    "uptime": 52,
    "services": 53,
    "clients_by_server": 54,
    "all_transports": 55,
    "tp_list": 69,
    "sd_registration": 72,
}

_MAX_REFS_DEPTH = 32


class RootRejectedError(CXOError):
    """A Root whose signature does not verify against the envelope's feed, or that does not
    match its envelope; it is refused (the connection stays, as upstream)."""


class StaleRootError(CXOError):
    """A Root at or below a seq the node already has or is filling; it is ignored."""


class ObjectMismatchError(ProtocolError):
    """An Object reply whose SHA-256 is not the key asked for; the connection is dropped."""


class ObjectTooLargeError(ProtocolError):
    """An Object reply over the node's object size limit; the connection is dropped."""


class FillError(CXOError):
    """A fill failed (no source left, bad objects, timeout); its counts were given back."""


class SubscribeError(RemoteError):
    """The peer refused a subscription."""


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Limits and timers (cxo.md §6)."""

    response_timeout: float = 59.0
    idle_timeout: float | None = 90.0
    #: RqObject requests in flight at once, over all fills of the node
    max_in_flight: int = 32
    max_heads: int = 10
    max_frame: int = MAX_FRAME
    max_object_size: int = 16 << 20
    max_filling_time: float = 600.0
    #: answer RqList
    public: bool = False
    #: keep only the last N Roots of each head (None: keep all)
    keep_roots: int | None = None
    #: require the handshake NodeID to equal the stream's authenticated key (dmsg)
    verify_node_id: bool = False


@dataclasses.dataclass
class NodeStats:
    """Counters (monotonic, except the in-flight gauge)."""

    objects_requested: int = 0
    objects_received: int = 0
    bytes_received: int = 0
    objects_served: int = 0
    roots_filled: int = 0
    roots_published: int = 0
    fills_failed: int = 0
    in_flight: int = 0
    in_flight_peak: int = 0


# --- walking the DAG (pure) ----------------------------------------------------------------------


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


# --- feeds, heads, subscribers ------------------------------------------------------------------


class _Feed:
    __slots__ = ("conns", "heads")

    def __init__(self) -> None:
        self.conns: set[Conn] = set()
        self.heads: dict[int, _Head] = {}


class _Head:
    """One (feed, nonce): the Root being filled, one pending newer Root, and which connection
    is known to hold which seq."""

    def __init__(self, node: Node, feed: PubKey, nonce: int) -> None:
        self.node = node
        self.feed = feed
        self.nonce = nonce
        self.known: dict[Conn, int] = {}
        self.filling: Root | None = None
        self.next: tuple[Root, bytes] | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._rr = 0

    def offer(self, conn: Conn, root: Root, value: bytes) -> None:
        self.known[conn] = max(self.known.get(conn, -1), root.seq)
        if self.filling is not None and root.seq <= self.filling.seq:
            if root.seq < self.filling.seq:
                self.node._report(conn, StaleRootError(f"seq {root.seq} below the one filling"))
            return  # the same seq: conn is one more source
        if self.next is not None and root.seq <= self.next[0].seq:
            return
        self.next = (root, value)
        self.wake.set()

    def pick(self, seq: int) -> Conn | None:
        sources = [c for c, s in self.known.items() if s >= seq and c.established]
        if not sources:
            return None
        self._rr += 1
        return sources[self._rr % len(sources)]

    def forget(self, conn: Conn, seq: int | None = None) -> None:
        if seq is None:
            self.known.pop(conn, None)
        elif self.known.get(conn, -1) >= seq:
            self.known[conn] = seq - 1

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.next is None:
                continue
            (root, value), self.next = self.next, None
            last = await self.node.store.last_root(self.feed, self.nonce)
            if last is not None and last.seq >= root.seq:
                continue
            self.filling = root
            try:
                await self.node._fill(self, root, value)
            finally:
                self.filling = None


class RootUpdates:
    """``async for root in node.updates(feed)``: filled Roots of a feed, in order of filling.

    Registered when created (so create it before subscribing to miss nothing); it ends when the
    node closes or on :meth:`close`.
    """

    def __init__(self, node: Node, feed: PubKey) -> None:
        self._node: Node | None = node
        self.feed = feed
        self._queue: asyncio.Queue[Root | None] = asyncio.Queue()
        node._watchers[feed].add(self)

    def __aiter__(self) -> RootUpdates:
        return self

    async def __anext__(self) -> Root:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return item

    def _push(self, root: Root | None) -> None:
        self._queue.put_nowait(root)

    def close(self) -> None:
        if self._node is not None:
            self._node._watchers[self.feed].discard(self)
            self._node = None
        self._push(None)

    async def aclose(self) -> None:
        self.close()


class DmsgLike(Protocol):
    """What the node needs of a dmsg client (kept structural: cxo sits below dmsg)."""

    async def listen(self, port: int) -> Any: ...

    async def dial(self, pk: PubKey, port: int) -> Any: ...


_Fetch = Callable[[bytes], Awaitable[bytes]]
OnError = Callable[[Conn | None, CXOError], None]
OnSubscribeRemote = Callable[[Conn, PubKey], str | None]


# --- the node -----------------------------------------------------------------------------------


class Node:
    """A CXO node over a :class:`~skywire.cxo.store.CXOStore` (closed with the node).

    ``sk`` is the node's identity (its NodeID); without one a fresh key is used.
    ``on_error(conn, exc)`` sees every refused Root or object and every connection that ended
    with an error; ``on_subscribe_remote(conn, feed)`` may return a reason to refuse a
    peer's subscription (an allowlist).
    """

    def __init__(
        self,
        store: CXOStore,
        sk: SecKey | None = None,
        *,
        config: NodeConfig | None = None,
        on_error: OnError | None = None,
        on_subscribe_remote: OnSubscribeRemote | None = None,
    ) -> None:
        self.store = store
        self.sk = sk if sk is not None else KeyPair.generate().sk
        self.id = self.sk.pubkey()
        self.config = config or NodeConfig()
        self.stats = NodeStats()
        self.on_error = on_error
        self.on_subscribe_remote = on_subscribe_remote
        #: the last errors reported (see ``on_error``)
        self.errors: collections.deque[tuple[Conn | None, CXOError]] = collections.deque(maxlen=64)
        self._feeds: dict[PubKey, _Feed] = {}
        self._conns: set[Conn] = set()
        self._watchers: collections.defaultdict[PubKey, set[RootUpdates]] = collections.defaultdict(
            set
        )
        self._busy: dict[bytes, asyncio.Event] = {}
        self._sem = asyncio.Semaphore(self.config.max_in_flight)
        self._pub_locks: collections.defaultdict[PubKey, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._pub_nonces: dict[PubKey, int] = {}
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._main: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._heads_tg: asyncio.TaskGroup | None = None
        self._started = asyncio.Event()
        self._heads_ready = asyncio.Event()
        self._conns_changed = asyncio.Event()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._main is not None:
            return
        if self._closed:
            raise ConnClosedError("node closed")
        # The root task: owned by this node, cancelled and awaited by close().
        self._main = asyncio.create_task(self._run(), name=f"cxo-node-{self.id.hex()[:8]}")
        self._tasks.add(self._main)
        await self._started.wait()

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._feeds_actor(), name="cxo-feeds")
                await self._heads_ready.wait()
                self._started.set()
                await asyncio.Future()  # until close() cancels us
        finally:
            self._tg = None

    async def _feeds_actor(self) -> None:
        self._tasks.add(_current())
        try:
            async with asyncio.TaskGroup() as tg:
                self._heads_tg = tg
                self._heads_ready.set()
                await asyncio.Future()
        finally:
            self._heads_tg = None

    async def close(self) -> None:
        """Cancel and wait for every task of the node, then close the store."""
        if self._closed:
            return
        self._closed = True
        main, self._main = self._main, None
        try:
            if main is not None:
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await main
        finally:
            for watchers in self._watchers.values():
                for w in list(watchers):
                    w.close()
            self._watchers.clear()
            self._feeds.clear()
            self._conns.clear()
            await self.store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def live_tasks(self) -> list[asyncio.Task[Any]]:
        """The node's tasks that are not finished (empty after :meth:`close`)."""
        return [t for t in self._tasks if not t.done()]

    @property
    def connections(self) -> list[Conn]:
        return [c for c in self._conns if c.established]

    async def wait_connections(self, n: int) -> None:
        """Wait until the node has exactly ``n`` connections (running or handshaking)."""
        while len(self._conns) != n:
            self._conns_changed.clear()
            await self._conns_changed.wait()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> None:
        if self._tg is None or self._closed:
            coro.close()
            raise ConnClosedError("node is not running")
        task = self._tg.create_task(self._guarded(coro), name=name)
        self._tasks.add(task)

    async def _guarded(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except Exception:
            log.exception("cxo node task failed")

    def _report(self, conn: Conn | None, exc: CXOError) -> None:
        log.debug("cxo %s: %s: %s", conn, type(exc).__name__, exc)
        self.errors.append((conn, exc))
        if self.on_error is not None:
            try:
                self.on_error(conn, exc)
            except Exception:
                log.exception("on_error hook failed")

    # -- transports ---------------------------------------------------------------------------

    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Accept CXO connections on TCP; returns the bound address."""

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._tg is None or self._closed:
                writer.close()
                return
            self._start_conn(TcpStream(reader, writer), incoming=True)

        server = await asyncio.start_server(accepted, host, port, limit=1 << 20)
        addr = server.sockets[0].getsockname()
        self._spawn(self._hold_server(server), name="cxo-tcp-listener")
        return str(addr[0]), int(addr[1])

    async def _hold_server(self, server: asyncio.Server) -> None:
        try:
            await asyncio.Future()
        finally:
            server.close()

    async def connect_tcp(self, host: str, port: int) -> Conn:
        stream = await TcpStream.connect(host, port)
        return await self._connect(stream, None)

    async def listen_dmsg(self, client: DmsgLike, port: int) -> Listener:
        """Accept CXO connections on a dmsg port (one stream = one connection)."""
        listener: Listener = await client.listen(port)
        self._spawn(self._accept_loop(listener), name=f"cxo-dmsg-listener-{port}")
        return listener

    async def listen_streams(self, listener: Listener) -> None:
        """Accept CXO connections from any stream listener (closed with the node)."""
        self._spawn(self._accept_loop(listener), name="cxo-listener")

    async def _accept_loop(self, listener: Listener) -> None:
        try:
            while True:
                try:
                    stream = await listener.accept()
                except (ConnectionError, OSError) as exc:
                    log.debug("cxo listener ended: %r", exc)
                    return
                self._start_conn(stream, incoming=True, remote_pk=_remote_pk(stream))
        finally:
            await listener.close()

    async def connect_dmsg(self, client: DmsgLike, pk: PubKey, port: int) -> Conn:
        """Dial ``pk:port`` over dmsg and handshake."""
        stream: ByteStream = await client.dial(pk, port)
        return await self._connect(stream, pk)

    async def connect_stream(self, stream: ByteStream, remote_pk: PubKey | None = None) -> Conn:
        """Run the dialer's side of a CXO connection over an already open stream."""
        return await self._connect(stream, remote_pk)

    async def _connect(self, stream: ByteStream, remote_pk: PubKey | None) -> Conn:
        try:
            conn = self._start_conn(stream, incoming=False, remote_pk=remote_pk)
        except BaseException:
            await stream.close()
            raise
        await conn.wait_ready()
        return conn

    def _start_conn(
        self, stream: ByteStream, *, incoming: bool, remote_pk: PubKey | None = None
    ) -> Conn:
        cfg = self.config
        conn = Conn(
            stream,
            node_id=self.id,
            incoming=incoming,
            dispatch=self._dispatch,
            remote_pk=remote_pk,
            max_frame=cfg.max_frame,
            response_timeout=cfg.response_timeout,
            idle_timeout=cfg.idle_timeout,
            verify_node_id=cfg.verify_node_id,
        )
        self._conns.add(conn)
        self._conns_changed.set()
        try:
            self._spawn(self._run_conn(conn), name="cxo-conn")
        except BaseException:
            self._conns.discard(conn)
            raise
        return conn

    async def _run_conn(self, conn: Conn) -> None:
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)
            self._conns_changed.set()
            for feed in self._feeds.values():
                feed.conns.discard(conn)
                for head in feed.heads.values():
                    head.forget(conn)
            err = conn.error
            if err is not None and not isinstance(err, ConnClosedError):
                self._report(conn, err)

    # -- feeds --------------------------------------------------------------------------------

    async def share(self, feed: PubKey) -> None:
        """Keep and serve ``feed`` (peers may subscribe to it)."""
        if feed == PubKey.NULL:
            raise ValueError("blank feed")
        await self.store.add_feed(feed)
        self._feeds.setdefault(feed, _Feed())

    async def dont_share(self, feed: PubKey) -> None:
        """Stop sharing ``feed``: unsubscribe from peers and cancel its heads (data kept)."""
        f = self._feeds.pop(feed, None)
        if f is None:
            return
        for conn in f.conns:
            with contextlib.suppress(ConnClosedError):
                conn.send(Unsub(feed))
        for head in f.heads.values():
            if head.task is not None:
                head.task.cancel()

    def feeds(self) -> list[PubKey]:
        return sorted(self._feeds, key=lambda pk: pk.raw)

    async def subscribe(self, feed: PubKey, conn: Conn | None = None) -> None:
        """Share ``feed`` and subscribe to it on ``conn`` (default: every connection).

        Raises :class:`SubscribeError` when a peer refuses.
        """
        await self.share(feed)
        f = self._feeds[feed]
        targets = [conn] if conn is not None else self.connections
        for c in targets:
            if c in f.conns:
                continue
            f.conns.add(c)  # before Sub: the Root push follows the Ok at once
            try:
                await c.request(Sub(feed))
            except RemoteError as exc:
                f.conns.discard(c)
                raise SubscribeError(str(exc)) from None
            except BaseException:
                f.conns.discard(c)
                raise

    async def unsubscribe(self, feed: PubKey, conn: Conn | None = None) -> None:
        """Send Unsub (one-way) and stop filling ``feed`` from ``conn`` (default: all)."""
        f = self._feeds.get(feed)
        if f is None:
            return
        for c in [conn] if conn is not None else list(f.conns):
            f.conns.discard(c)
            for head in f.heads.values():
                head.forget(c)
            with contextlib.suppress(ConnClosedError):
                c.send(Unsub(feed))

    def updates(self, feed: PubKey) -> RootUpdates:
        """Filled Roots of ``feed`` from now on (received or published)."""
        return RootUpdates(self, feed)

    async def last_root(self, feed: PubKey) -> Root | None:
        """The newest full Root of ``feed``."""
        meta = await self.store.active_root(feed)
        if meta is None or not meta.full:
            return None
        data = await self.store.get(meta.hash)
        return None if data is None else Root.decode(data, meta.sig).with_full()

    async def get_value(self, root: Root) -> dict[str, object]:
        """The value tree of a (filled) treestore Root."""
        return await read_tree(root.refs, self.store.get)

    # -- publishing ---------------------------------------------------------------------------

    async def publish(
        self,
        feed_sk: SecKey,
        tree: ValueTree,
        *,
        nonce: int | None = None,
        descriptor: bytes = b"",
    ) -> Root:
        """Store ``tree`` as the next Root of the feed of ``feed_sk`` and announce it.

        Only objects that are new get stored (content addressing keeps unchanged subtrees).
        ``nonce`` picks the head (default: one random head per feed for this node).
        """
        feed = feed_sk.pubkey()
        await self.share(feed)
        async with self._pub_locks[feed]:
            if nonce is None:
                nonce = self._pub_nonces.setdefault(feed, secrets.randbits(63))
            last_meta = await self.store.last_root(feed, nonce)
            last: Root | None = None
            if last_meta is not None:
                data = await self.store.get(last_meta.hash)
                if data is None:
                    raise StoreError("the last Root's object is missing")
                last = Root.decode(data, last_meta.sig)
            refs, reg, objects = build_tree(tree)
            root = new_root(
                feed_sk, nonce=nonce, refs=refs, reg=reg, descriptor=descriptor, last=last
            )
            value = root.encode()

            async def local(key: bytes) -> bytes:
                try:
                    return objects[key]
                except KeyError:
                    raise FillError(f"object {key.hex()} missing from the tree") from None

            incs: list[bytes] = []
            try:
                await self._walk(root, value, local, incs)
                await self._commit(feed, root, value, exclude=())
            except BaseException:
                await self._rollback(incs)
                raise
            self.stats.roots_published += 1
            return root.with_full()

    # -- receiving and filling ----------------------------------------------------------------

    async def _dispatch(self, conn: Conn, packet: Packet) -> None:
        msg: Message = packet.msg
        if isinstance(msg, Ping | Pong | Syn | Ack):
            raise ProtocolError(f"invalid message type: {type(msg).__name__}")
        if isinstance(msg, RootMsg):
            await self._received_root(conn, msg)
        elif isinstance(msg, RqObject):
            conn.spawn(self._serve_object(conn, packet.seq, msg.key))
        elif isinstance(msg, Sub):
            await self._remote_sub(conn, packet.seq, msg.feed)
        elif isinstance(msg, Unsub):
            if msg.feed == PubKey.NULL:
                raise ProtocolError("invalid request Unsub blank feed")
            f = self._feeds.get(msg.feed)
            if f is not None:
                f.conns.discard(conn)
        elif isinstance(msg, RqList):
            if self.config.public:
                conn.reply(packet.seq, List(self.feeds()))
            else:
                conn.reply(packet.seq, Err("not public"))
        elif isinstance(msg, RqPreview):
            root = await self.last_root(msg.feed) if msg.feed in self._feeds else None
            if root is None:
                conn.reply(packet.seq, Err("no such feed"))
            else:
                data = await self.store.get(root.hash)
                assert data is not None
                conn.reply(packet.seq, RootMsg(msg.feed, root.nonce, root.seq, data, root.sig))
        elif isinstance(msg, RqPeers):
            conn.reply(packet.seq, Err("peer exchange is not supported"))
        # Ok, Err, Object, List, Peers nobody asked for are ignored

    async def _remote_sub(self, conn: Conn, seq: int, feed: PubKey) -> None:
        if feed == PubKey.NULL:
            conn.reply(seq, Err("invalid request Sub blank feed"))
            return
        f = self._feeds.get(feed)
        if f is not None and conn in f.conns:
            conn.reply(seq, Ok())
            return
        if self.on_subscribe_remote is not None:
            reason = self.on_subscribe_remote(conn, feed)
            if reason is not None:
                conn.reply(seq, Err(reason))
                return
        if f is None:
            conn.reply(seq, Err("do not share the feed"))
            return
        f.conns.add(conn)
        conn.reply(seq, Ok())
        root = await self.last_root(feed)
        if root is not None and not conn.closed:
            data = await self.store.get(root.hash)
            if data is not None:
                conn.reply(0, RootMsg(feed, root.nonce, root.seq, data, root.sig))

    async def _received_root(self, conn: Conn, m: RootMsg) -> None:
        f = self._feeds.get(m.feed)
        if f is None or conn not in f.conns:
            return  # not subscribed to this feed on this connection
        last = await self.store.last_root(m.feed, m.nonce)
        if last is not None and last.seq >= m.seq:
            self._report(conn, StaleRootError(f"have seq {last.seq}, got {m.seq}"))
            return
        try:
            root = verify_received(m.feed, m.value, m.sig)
        except (RootVerifyError, SkyEncError) as exc:
            self._report(conn, RootRejectedError(str(exc)))
            return
        if (root.pub, root.nonce, root.seq) != (m.feed, m.nonce, m.seq):
            self._report(conn, RootRejectedError("the Root does not match its envelope"))
            return
        self._head(m.feed, f, m.nonce).offer(conn, root, m.value)

    def _head(self, feed: PubKey, f: _Feed, nonce: int) -> _Head:
        head = f.heads.get(nonce)
        if head is not None:
            return head
        if len(f.heads) >= self.config.max_heads:
            idle = [h for h in f.heads.values() if h.filling is None] or list(f.heads.values())
            victim = idle[0]
            del f.heads[victim.nonce]
            if victim.task is not None:
                victim.task.cancel()
        head = f.heads[nonce] = _Head(self, feed, nonce)
        if self._heads_tg is None:
            raise ConnClosedError("node is not running")
        head.task = self._heads_tg.create_task(self._guarded(head.run()), name="cxo-head")
        self._tasks.add(head.task)
        return head

    async def _fill(self, head: _Head, root: Root, value: bytes) -> None:
        incs: list[bytes] = []

        async def fetch(key: bytes) -> bytes:
            return await self._fetch(head, root.seq, key)

        try:
            try:
                async with asyncio.timeout(self.config.max_filling_time):
                    await self._walk(root, value, fetch, incs)
                # never announce a Root back to a connection that sent it
                sources = {c for c, s in head.known.items() if s >= root.seq}
                await self._commit(head.feed, root, value, exclude=sources)
            except TimeoutError:
                raise FillError("filling timeout") from None
            except (CXOError, SkyEncError, StoreError) as exc:
                raise _fill_error(exc) from exc
            except ExceptionGroup as eg:
                raise _fill_error(eg.exceptions[0]) from eg
        except FillError as exc:
            self.stats.fills_failed += 1
            await self._rollback(incs)
            await self.store.sweep()
            self._report(None, exc)
        except BaseException:
            await self._rollback(incs)
            raise

    async def _fetch(self, head: _Head, seq: int, key: bytes) -> bytes:
        stats = self.stats
        while True:
            async with self._sem:
                conn = head.pick(seq)
                if conn is None:
                    raise FillError("no connections to fill from")
                stats.in_flight += 1
                stats.in_flight_peak = max(stats.in_flight_peak, stats.in_flight)
                stats.objects_requested += 1
                try:
                    reply = await conn.request(RqObject(key))
                except (RemoteError, RequestTimeoutError):
                    head.forget(conn, seq)
                    continue
                except ConnClosedError:
                    head.forget(conn)
                    continue
                finally:
                    stats.in_flight -= 1
            if not isinstance(reply, Object):
                conn.close(ProtocolError(f"wrong reply to RqObject: {type(reply).__name__}"))
                continue
            if len(reply.value) > self.config.max_object_size:
                conn.close(ObjectTooLargeError(f"object of {len(reply.value)} bytes"))
                continue
            if hashlib.sha256(reply.value).digest() != key:
                conn.close(ObjectMismatchError(f"object does not match its key {key.hex()}"))
                continue
            stats.objects_received += 1
            stats.bytes_received += len(reply.value)
            return reply.value

    async def _acquire(self, key: bytes, fetch: _Fetch, incs: list[bytes]) -> bytes | None:
        """Count one more reference to ``key``, fetching it if absent; its bytes when its
        children still have to be counted (it was absent or unreferenced), else ``None``."""
        while (ev := self._busy.get(key)) is not None:
            await ev.wait()
        ev = self._busy[key] = asyncio.Event()
        try:
            rc = await self.store.rc(key)
            if rc is not None:
                await self.store.inc(key, 1)
                incs.append(key)
                return None if rc > 0 else await self.store.get(key)
            data = await fetch(key)
            await self.store.put(key, data, 1)
            incs.append(key)
            return data
        finally:
            del self._busy[key]
            ev.set()

    async def _walk(self, root: Root, value: bytes, fetch: _Fetch, incs: list[bytes]) -> None:
        async def own(key: bytes) -> bytes:
            return value

        if await self._acquire(root.hash, own, incs) is None:
            return  # this Root object is already held: its DAG is complete
        registry = Registry()
        if root.reg != ZERO_HASH:
            await self._acquire(root.reg, fetch, incs)
            data = await self.store.get(root.reg)
            if data is None:
                raise FillError("registry missing")
            registry = Registry.decode(data)
        async with asyncio.TaskGroup() as tg:

            async def visit(key: bytes, item: Item) -> None:
                data = await self._acquire(key, fetch, incs)
                if data is None:
                    return
                for k, it in children_of(item, data, registry):
                    tg.create_task(visit(k, it))

            for k, it in root_children(root, registry):
                tg.create_task(visit(k, it))

    async def _rollback(self, incs: list[bytes]) -> None:
        if not incs:
            return
        try:
            await self.store.inc_many(incs, -1)
        except StoreError:
            log.exception("cxo: giving back reference counts failed")
        incs.clear()

    async def _commit(
        self, feed: PubKey, root: Root, value: bytes, exclude: Iterable[Conn]
    ) -> None:
        meta = RootMeta(feed, root.nonce, root.seq, root.hash, root.prev, root.sig, root.time, True)
        removed = await self.store.add_root(meta)
        f = self._feeds.get(feed)
        if removed and f is not None:
            head = f.heads.pop(removed[0].nonce, None)
            if head is not None and head.task is not None:
                head.task.cancel()
        if self.config.keep_roots is not None:
            removed += await self.store.keep_last(feed, root.nonce, self.config.keep_roots)
        for old in removed:
            await self._release(old)
        if removed:
            await self.store.sweep()
        self.stats.roots_filled += 1
        full = root.with_full()
        for w in list(self._watchers.get(feed, ())):
            w._push(full)
        if f is not None:
            skip = set(exclude)
            msg = RootMsg(feed, root.nonce, root.seq, value, root.sig)
            for conn in f.conns:
                if conn not in skip and conn.established:
                    conn.reply(0, msg)

    async def _release(self, meta: RootMeta) -> None:
        """Give back the counts a Root took; objects left unreferenced are swept later."""
        data = await self.store.get(meta.hash)
        if data is None:
            return
        root = Root.decode(data)
        registry = Registry()
        if root.reg != ZERO_HASH:
            reg_data = await self.store.get(root.reg)
            if reg_data is not None:
                registry = Registry.decode(reg_data)
        stack: list[tuple[bytes, Item | None]] = [(meta.hash, None)]
        while stack:
            key, item = stack.pop()
            rc = await self.store.rc(key)
            if not rc:
                continue
            if await self.store.inc(key, -1) > 0:
                continue
            if item is None:
                if root.reg != ZERO_HASH:
                    stack.append((root.reg, REGISTRY_ITEM))
                stack.extend(root_children(root, registry))
            else:
                obj = await self.store.get(key)
                if obj is not None:
                    stack.extend(children_of(item, obj, registry))

    async def _serve_object(self, conn: Conn, seq: int, key: bytes) -> None:
        value = await self.store.get(key)
        if value is None and (ev := self._busy.get(key)) is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.response_timeout):
                    await ev.wait()
            value = await self.store.get(key)
        if value is None:
            conn.reply(seq, Err(""))
        else:
            self.stats.objects_served += 1
            conn.reply(seq, Object(value))

    # -- iteration helpers ----------------------------------------------------------------------

    async def wait_root(self, feed: PubKey, seq: int, nonce: int | None = None) -> Root:
        """Wait until a Root of ``feed`` with at least ``seq`` is full here."""
        updates = self.updates(feed)
        try:
            last = await self.last_root(feed) if feed in self._feeds else None
            if last is not None and last.seq >= seq and (nonce is None or last.nonce == nonce):
                return last
            async for root in updates:
                if root.seq >= seq and (nonce is None or root.nonce == nonce):
                    return root
            raise ConnClosedError("node closed")
        finally:
            updates.close()


def _fill_error(exc: BaseException) -> FillError:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, FillError):
        return exc
    if not isinstance(exc, CXOError | SkyEncError | StoreError):
        log.error("cxo fill failed unexpectedly", exc_info=exc)
    return FillError(f"{type(exc).__name__}: {exc}")


def _current() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None
    return task


def _remote_pk(stream: ByteStream) -> PubKey | None:
    addr = getattr(stream, "remote_addr", None)
    pk = getattr(addr, "pk", None)
    return pk if isinstance(pk, PubKey) else None
