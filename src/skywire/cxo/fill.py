"""Receiving and filling CXO Roots: a Root pushed by a peer is checked and offered to its head
(:class:`~skywire.cxo.feeds.Head`, created and evicted here); a head's fill walks the new Root's
DAG with reference counts, fetching what is missing from the connections that hold it (bounded
by the node's in-flight semaphore), then commits the Root (index, watchers, announce to
subscribers) or, on failure, gives back every count it took. Publishing is the same walk over a
local tree; releasing old Roots and serving objects share the counts and the table of keys being
fetched. :class:`Filler` holds all this for one node and is its heads' ``HeadOwner``; the node
owns every task (``spawn_head``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable

from skywire.cipher import PubKey, SecKey
from skywire.cxo.config import NodeConfig, NodeStats
from skywire.cxo.conn import (
    Conn,
    ConnClosedError,
    CXOError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
)
from skywire.cxo.dag import REGISTRY_ITEM, Item, children_of, root_children
from skywire.cxo.feeds import Feed, Head, RootUpdates, StaleRootError
from skywire.cxo.msg import Err, Object, RootMsg, RqObject
from skywire.cxo.objects import ZERO_HASH, Registry
from skywire.cxo.root import Root, RootVerifyError, new_root, verify_received
from skywire.cxo.store import CXOStore, RootMeta, StoreError
from skywire.cxo.treestore import ValueTree, build_tree
from skywire.wire.skyenc import SkyEncError

__all__ = [
    "FillError",
    "Filler",
    "ObjectMismatchError",
    "ObjectTooLargeError",
    "RootRejectedError",
]

# the node's logger: these messages come from the node
log = logging.getLogger("skywire.cxo.node")


class RootRejectedError(CXOError):
    """A Root whose signature does not verify against the envelope's feed, or that does not
    match its envelope; it is refused (the connection stays, as upstream)."""


class ObjectMismatchError(ProtocolError):
    """An Object reply whose SHA-256 is not the key asked for; the connection is dropped."""


class ObjectTooLargeError(ProtocolError):
    """An Object reply over the node's object size limit; the connection is dropped."""


class FillError(CXOError):
    """A fill failed (no source left, bad objects, timeout); its counts were given back."""


_Fetch = Callable[[bytes], Awaitable[bytes]]

Report = Callable[[Conn | None, CXOError], None]
SpawnHead = Callable[[Head], asyncio.Task[None]]


class Filler:
    """Receiving, filling and publishing for one node: ``store``, ``config`` and ``stats`` are the
    node's; ``feeds`` and ``watchers`` are the node's tables (shared, not copied); ``report`` is
    where refused Roots and failed fills go; ``spawn_head`` starts a head's loop in the node's
    task tree."""

    def __init__(
        self,
        store: CXOStore,
        config: NodeConfig,
        stats: NodeStats,
        feeds: dict[PubKey, Feed],
        watchers: collections.defaultdict[PubKey, set[RootUpdates]],
        *,
        report: Report,
        spawn_head: SpawnHead,
    ) -> None:
        self.store = store
        self.config = config
        self.stats = stats
        self._feeds = feeds
        self._watchers = watchers
        self._report = report
        self._spawn_head = spawn_head
        self._busy: dict[bytes, asyncio.Event] = {}
        self._sem = asyncio.Semaphore(config.max_in_flight)
        self._pub_locks: collections.defaultdict[PubKey, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._pub_nonces: dict[PubKey, int] = {}

    def report(self, conn: Conn | None, exc: CXOError) -> None:
        self._report(conn, exc)

    # -- receiving ----------------------------------------------------------------------------

    async def received_root(self, conn: Conn, m: RootMsg) -> None:
        """A Root pushed on ``conn``: checked, then offered to its head (created if new)."""
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

    def _head(self, feed: PubKey, f: Feed, nonce: int) -> Head:
        head = f.heads.get(nonce)
        if head is not None:
            return head
        if len(f.heads) >= self.config.max_heads:
            idle = [h for h in f.heads.values() if h.filling is None] or list(f.heads.values())
            victim = idle[0]
            del f.heads[victim.nonce]
            if victim.task is not None:
                victim.task.cancel()
        head = f.heads[nonce] = Head(self, feed, nonce)
        head.task = self._spawn_head(head)
        return head

    # -- publishing ---------------------------------------------------------------------------

    async def publish(
        self,
        feed_sk: SecKey,
        tree: ValueTree,
        *,
        nonce: int | None = None,
        descriptor: bytes = b"",
    ) -> Root:
        """Store ``tree`` as the next Root of the feed of ``feed_sk`` (already shared) and
        announce it (see :meth:`skywire.cxo.node.Node.publish`)."""
        feed = feed_sk.pubkey()
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

    # -- filling ------------------------------------------------------------------------------

    async def fill(self, head: Head, root: Root, value: bytes) -> None:
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

    async def _fetch(self, head: Head, seq: int, key: bytes) -> bytes:
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
            w.push(full)
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

    async def serve_object(self, conn: Conn, seq: int, key: bytes) -> None:
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


def _fill_error(exc: BaseException) -> FillError:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, FillError):
        return exc
    if not isinstance(exc, CXOError | SkyEncError | StoreError):
        log.error("cxo fill failed unexpectedly", exc_info=exc)
    return FillError(f"{type(exc).__name__}: {exc}")
