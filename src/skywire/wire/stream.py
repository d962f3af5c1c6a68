"""The async byte-stream shape every layer speaks, and its TCP adapter.

A Noise connection, a yamux stream, a dmsg stream, a transport and a route group all expose the
same four coroutines, so layers stack without knowing what is underneath:

* ``read(max_bytes)`` returns at least one byte, or ``b""`` once the peer has finished sending;
* ``readexactly(n)`` returns exactly ``n`` bytes or raises :class:`asyncio.IncompleteReadError`;
* ``write(data)`` returns once ``data`` is accepted (flow control may make it wait);
* ``close()`` closes both directions and releases the resources; calling it twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from skywire.cipher import PubKey

T = TypeVar("T")


@runtime_checkable
class ByteStream(Protocol):
    """An ordered, reliable, bidirectional byte stream."""

    async def read(self, max_bytes: int = 65536) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class TcpStream:
    """:class:`ByteStream` over an asyncio ``StreamReader``/``StreamWriter`` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._closed = False

    @classmethod
    async def connect(cls, host: str, port: int, *, limit: int = 1 << 20) -> TcpStream:
        reader, writer = await asyncio.open_connection(host, port, limit=limit)
        return cls(reader, writer)

    @property
    def peername(self) -> tuple[str, int] | None:
        peer = self.writer.get_extra_info("peername")
        return (str(peer[0]), int(peer[1])) if peer else None

    @property
    def sockname(self) -> tuple[str, int] | None:
        sock = self.writer.get_extra_info("sockname")
        return (str(sock[0]), int(sock[1])) if sock else None

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.reader.read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("write on a closed stream")
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@runtime_checkable
class Listener(Protocol):
    """Hands out incoming :class:`ByteStream` s (a dmsg port, a transport listener...)."""

    async def accept(self) -> ByteStream:
        """The next incoming stream; raises ``ConnectionError`` once the listener is closed."""
        ...

    async def close(self) -> None: ...


class Dialer(Protocol):
    """Opens a :class:`ByteStream` to ``(pk, port)``."""

    async def __call__(self, pk: PubKey, port: int) -> ByteStream: ...


class AcceptQueue(Generic[T]):
    """A bounded queue of incoming items that its owner can close.

    ``get()`` waits for the next item and raises ``closed_error()`` once the queue is closed
    and empty; :meth:`close` wakes every waiter and hands back what was still queued.
    """

    def __init__(self, maxsize: int, closed_error: Callable[[], Exception]) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self._closed = asyncio.Event()
        self._closed_error = closed_error

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def full(self) -> bool:
        return self._queue.full()

    def put_nowait(self, item: T) -> None:
        """Queue ``item``; raises ``asyncio.QueueFull`` when full."""
        self._queue.put_nowait(item)

    async def get(self) -> T:
        if not self._queue.empty():
            # Without a wait: a burst of offers in one loop iteration is drained as fast.
            return self._queue.get_nowait()
        if self._closed.is_set():
            raise self._closed_error()
        get = asyncio.ensure_future(self._queue.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (get, closed):
                if not t.done():
                    t.cancel()
            await asyncio.gather(get, closed, return_exceptions=True)
        if get.done() and not get.cancelled():
            return get.result()
        raise self._closed_error()

    def close(self) -> list[T]:
        """Close; returns the items nobody took (the caller closes them)."""
        self._closed.set()
        left = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        return left
