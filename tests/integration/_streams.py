"""Stand-ins for dmsg's ``listen(port)`` / ``dial(pk, port)``: in-memory pipes and loopback TCP.

Both networks have the same shape, so a test can be parametrised over them:

* ``await net.listen(pk, port)`` returns a :class:`~skywire.wire.stream.Listener`;
* ``net.dialer(pk)`` returns a :class:`~skywire.wire.stream.Dialer` for a client whose key is
  ``pk``; dialling an address nobody listens on raises ``ConnectionRefusedError``;
* every stream end handed out has ``local_addr`` / ``remote_addr`` (:class:`Addr`, like a dmsg
  stream) and ``closed``; ``net.dialed`` / ``net.accepted`` list the client / server ends, and
  ``net.streams`` all of them, so tests can count dials and check that nothing was left open.

:class:`MemoryNetwork` joins the two ends with bounded in-memory buffers (writes wait while the
peer's buffer is full, so flow control is exercised). :class:`TcpNetwork` uses real loopback
TCP: the dialler first sends its address (33-byte key, 2-byte port) so the accepting side knows
who called, as a dmsg stream would.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections import deque
from typing import Protocol

from skywire.cipher import PubKey
from skywire.dmsg.addr import EPHEMERAL_PORT_START, Addr
from skywire.wire.stream import ByteStream, Dialer, Listener, TcpStream

DEFAULT_PIPE_LIMIT = 256 * 1024


class TrackedStream(Protocol):
    """What the stand-ins hand out: a ByteStream with addresses and a ``closed`` flag."""

    local_addr: Addr
    remote_addr: Addr

    @property
    def closed(self) -> bool: ...

    async def read(self, max_bytes: int = 65536) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class StreamNetwork(Protocol):
    dialed: list[TrackedStream]
    accepted: list[TrackedStream]

    @property
    def streams(self) -> list[TrackedStream]: ...

    async def listen(self, pk: PubKey, port: int) -> Listener: ...

    def dialer(self, local_pk: PubKey) -> Dialer: ...


# ----------------------------------------------------------------------------------------------
# In-memory pipes
# ----------------------------------------------------------------------------------------------


class PipeStream:
    """One end of an in-memory duplex pipe.

    ``close()`` closes both directions: the peer reads what is buffered, then ``b""``; its
    writes then raise ``ConnectionResetError``.
    """

    def __init__(self, local_addr: Addr, remote_addr: Addr, limit: int) -> None:
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self._limit = limit
        self._buf = bytearray()  # bytes the peer wrote, not read yet
        self._eof = False  # the peer closed
        self._closed = False
        self._readable = asyncio.Event()
        self._space = asyncio.Event()  # room in _buf for the peer's writes
        self._space.set()
        self._peer: PipeStream | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self, max_bytes: int = 65536) -> bytes:
        while not self._buf:
            if self._eof or self._closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        self._space.set()
        return data

    async def readexactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(out), n)
            out += chunk
        return bytes(out)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            peer = self._peer
            if self._closed or peer is None:
                raise ConnectionResetError("write on a closed stream")
            if peer._closed:
                raise ConnectionResetError("stream closed by the peer")
            room = peer._limit - len(peer._buf)
            if room <= 0:
                peer._space.clear()
                await peer._space.wait()
                continue
            n = min(room, len(view))
            peer._buf += view[:n]
            view = view[n:]
            peer._readable.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buf.clear()
        self._readable.set()
        self._space.set()  # wakes the peer's blocked writes, which then fail
        peer = self._peer
        if peer is not None:
            peer._eof = True
            peer._readable.set()
            peer._space.set()  # wakes our own blocked writes, which then fail


def pipe(a: Addr, b: Addr, limit: int = DEFAULT_PIPE_LIMIT) -> tuple[PipeStream, PipeStream]:
    """Two connected ends: the first is at ``a`` (talking to ``b``), the second at ``b``."""
    end_a, end_b = PipeStream(a, b, limit), PipeStream(b, a, limit)
    end_a._peer, end_b._peer = end_b, end_a
    return end_a, end_b


class _AcceptQueue:
    """Incoming streams of one listener; ``accept`` raises ConnectionError once closed."""

    def __init__(self) -> None:
        self._pending: deque[ByteStream] = deque()
        self._ready = asyncio.Event()
        self.closed = False

    def push(self, stream: ByteStream) -> None:
        self._pending.append(stream)
        self._ready.set()

    async def pop(self) -> ByteStream:
        while not self._pending:
            if self.closed:
                raise ConnectionError("listener closed")
            self._ready.clear()
            await self._ready.wait()
        return self._pending.popleft()

    async def close(self) -> None:
        self.closed = True
        self._ready.set()
        while self._pending:
            await self._pending.popleft().close()


class MemoryListener:
    def __init__(self, net: MemoryNetwork, addr: Addr) -> None:
        self.addr = addr
        self._net = net
        self._queue = _AcceptQueue()

    async def accept(self) -> ByteStream:
        return await self._queue.pop()

    async def close(self) -> None:
        if self._net._listeners.get(self.addr) is self:
            del self._net._listeners[self.addr]
        await self._queue.close()


class MemoryNetwork:
    """Listeners and dialers joined by :func:`pipe` s."""

    def __init__(self, limit: int = DEFAULT_PIPE_LIMIT) -> None:
        self._limit = limit
        self._listeners: dict[Addr, MemoryListener] = {}
        self._ports = itertools.count(EPHEMERAL_PORT_START + 1)
        self.dialed: list[TrackedStream] = []
        self.accepted: list[TrackedStream] = []

    @property
    def streams(self) -> list[TrackedStream]:
        return [*self.dialed, *self.accepted]

    async def listen(self, pk: PubKey, port: int) -> MemoryListener:
        addr = Addr(pk, port)
        if addr in self._listeners:
            raise OSError(f"{addr} is already listened on")
        listener = self._listeners[addr] = MemoryListener(self, addr)
        return listener

    def dialer(self, local_pk: PubKey) -> Dialer:
        async def dial(pk: PubKey, port: int) -> ByteStream:
            listener = self._listeners.get(Addr(pk, port))
            if listener is None:
                raise ConnectionRefusedError(f"nobody listens on {Addr(pk, port)}")
            client, server = pipe(Addr(local_pk, next(self._ports)), Addr(pk, port), self._limit)
            self.dialed.append(client)
            self.accepted.append(server)
            listener._queue.push(server)
            return client

        return dial


# ----------------------------------------------------------------------------------------------
# Loopback TCP
# ----------------------------------------------------------------------------------------------

_PREAMBLE = struct.Struct(">33sH")


class TcpEnd:
    """A :class:`TcpStream` with dmsg-like addresses and a ``closed`` flag."""

    def __init__(self, inner: TcpStream, local_addr: Addr, remote_addr: Addr) -> None:
        self.inner = inner
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        return await self.inner.readexactly(n)

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def close(self) -> None:
        self._closed = True
        await self.inner.close()


class TcpListener:
    def __init__(self, net: TcpNetwork, addr: Addr) -> None:
        self.addr = addr
        self._net = net
        self._queue = _AcceptQueue()
        self._server: asyncio.Server | None = None
        self.tcp_port = 0

    async def start(self) -> None:
        # A plain callback, not a coroutine: asyncio then starts no task per connection.
        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = TcpStream(reader, writer)
            if self._queue.closed:
                writer.close()
                return
            self._queue.push(stream)

        self._server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        self.tcp_port = self._server.sockets[0].getsockname()[1]

    async def accept(self) -> ByteStream:
        while True:
            raw = await self._queue.pop()
            assert isinstance(raw, TcpStream)
            try:
                raw_pk, port = _PREAMBLE.unpack(await raw.readexactly(_PREAMBLE.size))
            except (asyncio.IncompleteReadError, ConnectionError):
                await raw.close()
                continue
            except BaseException:
                await raw.close()
                raise
            end = TcpEnd(raw, self.addr, Addr(PubKey(raw_pk), port))
            self._net.accepted.append(end)
            return end

    async def close(self) -> None:
        if self._net._listeners.get(self.addr) is self:
            del self._net._listeners[self.addr]
        if self._server is not None:
            # close() stops listening at once; wait_closed() would also wait (3.12.1+) for the
            # connections already handed to accept()'s callers, who close them on their own.
            self._server.close()
        await self._queue.close()


class TcpNetwork:
    """Listeners on 127.0.0.1 ephemeral TCP ports, found by dmsg address."""

    def __init__(self) -> None:
        self._listeners: dict[Addr, TcpListener] = {}
        self._ports = itertools.count(EPHEMERAL_PORT_START + 1)
        self.dialed: list[TrackedStream] = []
        self.accepted: list[TrackedStream] = []

    @property
    def streams(self) -> list[TrackedStream]:
        return [*self.dialed, *self.accepted]

    async def listen(self, pk: PubKey, port: int) -> TcpListener:
        addr = Addr(pk, port)
        if addr in self._listeners:
            raise OSError(f"{addr} is already listened on")
        listener = TcpListener(self, addr)
        await listener.start()
        self._listeners[addr] = listener
        return listener

    def dialer(self, local_pk: PubKey) -> Dialer:
        async def dial(pk: PubKey, port: int) -> ByteStream:
            listener = self._listeners.get(Addr(pk, port))
            if listener is None:
                raise ConnectionRefusedError(f"nobody listens on {Addr(pk, port)}")
            local = Addr(local_pk, next(self._ports))
            raw = await TcpStream.connect("127.0.0.1", listener.tcp_port)
            end = TcpEnd(raw, local, Addr(pk, port))
            self.dialed.append(end)
            await raw.write(_PREAMBLE.pack(local_pk.raw, local.port))
            return end

        return dial
