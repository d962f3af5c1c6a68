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

The parts live apart and are re-exported here: the pure DAG walk in :mod:`skywire.cxo.dag`,
feeds, heads and watchers in :mod:`skywire.cxo.feeds`, the reference-counted fill in
:mod:`skywire.cxo.fill`, limits and counters in :mod:`skywire.cxo.config`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.cxo.config import CXO_PORTS, NodeConfig, NodeStats
from skywire.cxo.conn import (
    Conn,
    ConnClosedError,
    CXOError,
    IdleTimeoutError,
    ProtocolError,
    RemoteError,
)
from skywire.cxo.dag import Item, ItemKind, children_of, root_children
from skywire.cxo.feeds import Feed, Head, RootUpdates, StaleRootError
from skywire.cxo.fill import (
    Filler,
    FillError,
    ObjectMismatchError,
    ObjectTooLargeError,
    RootRejectedError,
)
from skywire.cxo.msg import (
    Ack,
    Err,
    List,
    Message,
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
from skywire.cxo.root import Root
from skywire.cxo.store import CXOStore
from skywire.cxo.treestore import ValueTree, read_tree
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


class SubscribeError(RemoteError):
    """The peer refused a subscription."""


class DmsgLike(Protocol):
    """What the node needs of a dmsg client (kept structural: cxo sits below dmsg)."""

    async def listen(self, port: int) -> Any: ...

    async def dial(self, pk: PubKey, port: int) -> Any: ...


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
        self._feeds: dict[PubKey, Feed] = {}
        self._conns: set[Conn] = set()
        self._watchers: collections.defaultdict[PubKey, set[RootUpdates]] = collections.defaultdict(
            set
        )
        self._filler = Filler(
            store,
            self.config,
            self.stats,
            self._feeds,
            self._watchers,
            report=self._report,
            spawn_head=self._spawn_head,
        )
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

    def _spawn_head(self, head: Head) -> asyncio.Task[None]:
        if self._heads_tg is None:
            raise ConnClosedError("node is not running")
        task = self._heads_tg.create_task(self._guarded(head.run()), name="cxo-head")
        self._tasks.add(task)
        return task

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
        self._feeds.setdefault(feed, Feed())

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
        return RootUpdates(self._watchers[feed], feed)

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
        await self.share(feed_sk.pubkey())
        return await self._filler.publish(feed_sk, tree, nonce=nonce, descriptor=descriptor)

    # -- receiving ----------------------------------------------------------------------------

    async def _dispatch(self, conn: Conn, packet: Packet) -> None:
        msg: Message = packet.msg
        if isinstance(msg, Ping | Pong | Syn | Ack):
            raise ProtocolError(f"invalid message type: {type(msg).__name__}")
        if isinstance(msg, RootMsg):
            await self._filler.received_root(conn, msg)
        elif isinstance(msg, RqObject):
            conn.spawn(self._filler.serve_object(conn, packet.seq, msg.key))
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


def _current() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None
    return task


def _remote_pk(stream: ByteStream) -> PubKey | None:
    addr = getattr(stream, "remote_addr", None)
    pk = getattr(addr, "pk", None)
    return pk if isinstance(pk, PubKey) else None
