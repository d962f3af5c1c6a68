"""New messages handed to whoever listens: each web page's event stream, or a test.

``async with chat.subscribe() as sub: message = await sub.get()`` (or ``async for``). Every
subscription has its own bounded queue; one that falls ``maxsize`` messages behind is ended
rather than let to grow (its page reconnects and reloads the conversations), and closing the
chat ends them all. Upstream has one unbuffered channel shared by every page, and a message no
page is waiting for at that instant is dropped (``skychat.go`` ``handleConn``, ``sseHandler``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from skywire.apps.skychat.errors import SkychatClosedError, SubscriptionEndedError
from skywire.apps.skychat.history import ChatMessage

__all__ = ["Subscription", "Updates"]


class Subscription:
    """One listener's queue of new messages (see the module docstring)."""

    def __init__(self, hub: Updates, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[ChatMessage | None] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self.ended = False
        self.overflowed = False

    def offer(self, message: ChatMessage) -> None:
        """Queue ``message``; a listener ``maxsize`` behind is ended instead."""
        if self.ended:
            return
        if self._queue.qsize() >= self._maxsize:
            self.overflowed = True
            self.end()
            return
        self._queue.put_nowait(message)

    def end(self) -> None:
        """No more messages: what is queued is dropped, a waiting ``get`` raises."""
        if self.ended:
            return
        self.ended = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
        self._hub.discard(self)

    async def get(self) -> ChatMessage:
        """The next new message; :class:`SubscriptionEndedError` once ended."""
        message = await self._queue.get()
        if message is None:
            self._queue.put_nowait(None)  # every later get() ends too
            why = "it fell behind" if self.overflowed else "the chat closed"
            raise SubscriptionEndedError(f"subscription ended: {why}")
        return message

    def __aiter__(self) -> AsyncIterator[ChatMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChatMessage]:
        while True:
            try:
                yield await self.get()
            except SubscriptionEndedError:
                return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end()


class Updates:
    """The subscriptions of one chat."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self, maxsize: int = 256) -> Subscription:
        if self.closed:
            raise SkychatClosedError("skychat is closed")
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        sub = Subscription(self, maxsize)
        self._subs.add(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, message: ChatMessage) -> None:
        for sub in list(self._subs):
            sub.offer(message)

    def close(self) -> None:
        self.closed = True
        for sub in list(self._subs):
            sub.end()
