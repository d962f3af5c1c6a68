"""Feeds, heads and subscribers of a CXO node, as plain synchronous state: a :class:`Feed` is the
connections subscribed to it and its heads; a :class:`Head` is one (feed, nonce): the Root being
filled, one pending newer Root, which connection holds which seq, and the loop that hands each
new Root to its :class:`HeadOwner` to fill; :class:`RootUpdates` streams filled Roots to a
watcher. The node creates and owns the tasks; nothing here knows the node.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from skywire.cipher import PubKey
from skywire.cxo.conn import Conn, CXOError
from skywire.cxo.root import Root
from skywire.cxo.store import CXOStore

__all__ = ["Feed", "Head", "HeadOwner", "RootUpdates", "StaleRootError"]


class StaleRootError(CXOError):
    """A Root at or below a seq the node already has or is filling; it is ignored."""


class HeadOwner(Protocol):
    """What a head needs of its node: the store, where to report a refused Root, and the fill."""

    @property
    def store(self) -> CXOStore: ...

    def report(self, conn: Conn | None, exc: CXOError) -> None: ...

    async def fill(self, head: Head, root: Root, value: bytes) -> None: ...


class Feed:
    """One shared feed: the connections subscribed to it, and its heads by nonce."""

    __slots__ = ("conns", "heads")

    def __init__(self) -> None:
        self.conns: set[Conn] = set()
        self.heads: dict[int, Head] = {}


class Head:
    """One (feed, nonce): the Root being filled, one pending newer Root, and which connection
    is known to hold which seq."""

    def __init__(self, owner: HeadOwner, feed: PubKey, nonce: int) -> None:
        self.owner = owner
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
                self.owner.report(conn, StaleRootError(f"seq {root.seq} below the one filling"))
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
            last = await self.owner.store.last_root(self.feed, self.nonce)
            if last is not None and last.seq >= root.seq:
                continue
            self.filling = root
            try:
                await self.owner.fill(self, root, value)
            finally:
                self.filling = None


class RootUpdates:
    """``async for root in node.updates(feed)``: filled Roots of a feed, in order of filling.

    Registered when created (so create it before subscribing to miss nothing); it ends when the
    node closes or on :meth:`close`.
    """

    def __init__(self, watchers: set[RootUpdates], feed: PubKey) -> None:
        self._watchers: set[RootUpdates] | None = watchers
        self.feed = feed
        self._queue: asyncio.Queue[Root | None] = asyncio.Queue()
        watchers.add(self)

    def __aiter__(self) -> RootUpdates:
        return self

    async def __anext__(self) -> Root:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return item

    def push(self, root: Root | None) -> None:
        self._queue.put_nowait(root)

    def close(self) -> None:
        if self._watchers is not None:
            self._watchers.discard(self)
            self._watchers = None
        self.push(None)

    async def aclose(self) -> None:
        self.close()
