"""The link between a hypervisor and the visors it manages, over dmsg port 46.

**A managed visor dials its hypervisor** (:class:`HypervisorClient`), as upstream's
``ServeRPCClient`` does, and keeps that one dmsg stream open: while it is open the visor is
listed; when it drops the visor redials with a growing delay. Over the stream runs a yamux
session (:mod:`skywire.wire.yamux_aio`): the **hypervisor opens a yamux stream per request**
and speaks HTTP/1.1 on it (``httpx`` with :class:`~skywire.dmsg.http.DmsgTransport`, whose
dialer here opens yamux streams); the visor serves its control API's aiohttp application on the
streams it accepts (:class:`~skywire.dmsg.http.HTTPServer`). So requests run concurrently, and
nothing on the managed visor listens: it serves its control API only on a stream *it* dialed to
a key named in its ``hypervisors`` (dmsg streams are Noise KK, so the far end is that key).

The hypervisor's side (:class:`LinkServer`) listens on port 46, holds one session per visor
key (a newer one replaces an older), and reaches **itself** without dmsg: its own control API
is served on in-memory streams (:class:`MemoryListener`). ``changed`` wakes whoever waits for
the list of visors to change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web

from skywire.cipher import PubKey
from skywire.dmsg.addr import Addr
from skywire.dmsg.errors import DmsgError
from skywire.dmsg.http.server import HTTPServer
from skywire.visor.hypervisor.errors import VisorOfflineError
from skywire.wire.errors import WireError
from skywire.wire.stream import AcceptQueue, ByteStream, Listener
from skywire.wire.tasks import TaskTree, serve_each
from skywire.wire.yamux_aio import YamuxSession

__all__ = [
    "HYPERVISOR_PORT",
    "HypervisorClient",
    "LinkServer",
    "MemoryListener",
    "VisorLink",
]

log = logging.getLogger(__name__)

HYPERVISOR_PORT = 46
"""Upstream's ``DmsgHypervisorPort``."""

DIAL_ERRORS = (DmsgError, ConnectionError, OSError, TimeoutError, WireError)


class DmsgStreamLike(ByteStream, Protocol):
    @property
    def remote_addr(self) -> Addr: ...


class DmsgListenerLike(Protocol):
    async def accept(self) -> DmsgStreamLike: ...

    async def close(self) -> None: ...


class DmsgLike(Protocol):
    """What the link needs of a dmsg client (``skywire.dmsg.client.Client``)."""

    async def listen(self, port: int) -> DmsgListenerLike: ...

    async def dial(self, pk: PubKey, port: int) -> DmsgStreamLike: ...


# ---------------------------------------------------------------------------------- in memory


class MemoryStream:
    """One end of an in-process duplex pipe (unbounded: it carries small HTTP exchanges)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._closed = False
        self._readable = asyncio.Event()
        self.peer: MemoryStream | None = None

    async def read(self, max_bytes: int = 65536) -> bytes:
        while not self._buf:
            if self._eof or self._closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
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
        peer = self.peer
        if self._closed or peer is None or peer._closed:
            raise ConnectionResetError("write on a closed stream")
        peer._buf += data
        peer._readable.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buf.clear()
        self._readable.set()
        if self.peer is not None:
            self.peer._eof = True
            self.peer._readable.set()


class MemoryListener:
    """A :class:`Listener` whose streams come from :meth:`dial` in the same process."""

    def __init__(self, backlog: int = 64) -> None:
        self._queue: AcceptQueue[MemoryStream] = AcceptQueue(
            backlog, lambda: ConnectionResetError("listener closed")
        )

    async def dial(self) -> MemoryStream:
        near, far = MemoryStream(), MemoryStream()
        near.peer, far.peer = far, near
        if self._queue.closed:
            raise ConnectionRefusedError("the local control API is closed")
        try:
            self._queue.put_nowait(far)
        except asyncio.QueueFull as exc:
            raise ConnectionRefusedError("the local control API is busy") from exc
        return near

    async def accept(self) -> ByteStream:
        return await self._queue.get()

    async def close(self) -> None:
        for stream in self._queue.close():
            await stream.close()


class SessionListener:
    """A yamux session's incoming streams as a :class:`Listener` (closing it ends the
    session)."""

    def __init__(self, session: YamuxSession) -> None:
        self.session = session

    async def accept(self) -> ByteStream:
        return await self.session.accept()

    async def close(self) -> None:
        await self.session.close()


# ---------------------------------------------------------------------------------- hypervisor


@dataclass(frozen=True)
class VisorLink:
    """A managed visor, connected since ``since`` (seconds since the epoch)."""

    pk: PubKey
    since: float
    session: YamuxSession | None
    """None for the hypervisor's own visor."""


class LinkServer:
    """The hypervisor's side: ``async with LinkServer(dmsg, own_pk, own_app) as links``."""

    def __init__(
        self,
        dmsg: DmsgLike,
        own_pk: PubKey,
        own_app: web.Application,
        *,
        port: int = HYPERVISOR_PORT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dmsg = dmsg
        self.own_pk = own_pk
        self.port = port
        self._clock = clock
        self._own_listener = MemoryListener()
        self._own_server = HTTPServer(own_app, self._own_listener, read_header_timeout=None)
        self._links: dict[PubKey, VisorLink] = {own_pk: VisorLink(own_pk, clock(), None)}
        self._listener: DmsgListenerLike | None = None
        self._tasks = TaskTree("hypervisor-links", log)
        self.changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        try:
            await self._own_server.start()
            self._listener = await self.dmsg.listen(self.port)
            await self._tasks.start()
            self._tasks.spawn(self._accept_loop(self._listener), "hypervisor-accept")
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                await listener.close()
            except DIAL_ERRORS as exc:
                log.debug("hypervisor: closing the listener: %r", exc)
        await self._tasks.close()  # ends every session's task, which closes the session
        await self._own_server.close()

    def visors(self) -> list[VisorLink]:
        """This visor first, then the others by the time they connected."""
        own = self._links[self.own_pk]
        others = sorted((v for v in self._links.values() if v is not own), key=lambda v: v.since)
        return [own, *others]

    def get(self, pk: PubKey) -> VisorLink:
        link = self._links.get(pk)
        if link is None:
            raise VisorOfflineError(f"visor {pk} is not connected to this hypervisor")
        return link

    async def dial(self, pk: PubKey, port: int = HYPERVISOR_PORT) -> ByteStream:
        """A new stream to ``pk``'s control API (``port`` is ignored: there is one service)."""
        link = self.get(pk)
        if link.session is None:
            return await self._own_listener.dial()
        try:
            return await link.session.open_stream()
        except ConnectionError as exc:
            raise VisorOfflineError(f"visor {pk}: the link dropped ({exc})") from exc

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _accept_loop(self, listener: DmsgListenerLike) -> None:
        await serve_each(listener.accept, self._serve, ended=DIAL_ERRORS, what="visor link")

    async def _serve(self, stream: DmsgStreamLike) -> None:
        pk = stream.remote_addr.pk
        if pk == self.own_pk:
            await stream.close()
            return
        session = YamuxSession.over_stream(stream, client=False)
        link = VisorLink(pk, self._clock(), session)
        old = self._links.get(pk)
        self._links[pk] = link
        log.info("hypervisor: visor %s connected", pk)
        try:
            if old is not None and old.session is not None:
                await old.session.close()  # the visor redialed: the old link is stale
            await self._notify()
            await session.wait_closed()
        finally:
            if self._links.get(pk) is link:
                del self._links[pk]
                log.info("hypervisor: visor %s disconnected", pk)
            await session.close()
            await self._notify()


# ---------------------------------------------------------------------------------- visor


class Dial(Protocol):
    async def __call__(self, pk: PubKey, port: int) -> ByteStream: ...


@dataclass(frozen=True)
class Backoff:
    """Delays between redials: ``initial`` doubling to ``maximum``; a link that lasted
    ``stable`` seconds resets the count."""

    initial: float = 1.0
    maximum: float = 30.0
    stable: float = 10.0

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, failures - 1)))


class HypervisorClient:
    """The managed visor's side: one task per hypervisor key keeps a link open and serves
    ``app`` (the visor's control API) on it. ``async with``; :attr:`connected` says which
    hypervisors are linked now."""

    def __init__(
        self,
        dial: Dial,
        hypervisors: Sequence[PubKey],
        app: web.Application,
        *,
        port: int = HYPERVISOR_PORT,
        backoff: Backoff | None = None,
        dial_timeout: float = 20.0,
    ) -> None:
        self._dial = dial
        self.hypervisors = list(dict.fromkeys(hypervisors))
        self._app = app
        self.port = port
        self.backoff = backoff or Backoff()
        self.dial_timeout = dial_timeout
        self._runner: web.AppRunner | None = None
        self._tasks = TaskTree("hypervisor-client", log)
        self.connected: dict[PubKey, float] = {}

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        self._runner = runner
        await self._tasks.start()
        for pk in self.hypervisors:
            self._tasks.spawn(self._keep(pk, runner), f"hypervisor-link {pk.hex()[:8]}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._tasks.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _keep(self, pk: PubKey, runner: web.AppRunner) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.dial_timeout):
                    stream = await self._dial(pk, self.port)
            except DIAL_ERRORS as exc:
                log.debug("hypervisor %s: dial failed: %r", pk, exc)
            else:
                await self._serve(pk, stream, runner)
            failures = 1 if time.monotonic() - started >= self.backoff.stable else failures + 1
            await asyncio.sleep(self.backoff.delay(failures))

    async def _serve(self, pk: PubKey, stream: ByteStream, runner: web.AppRunner) -> None:
        session = YamuxSession.over_stream(stream, client=True)
        listener: Listener = SessionListener(session)
        self.connected[pk] = time.time()
        log.info("managed by hypervisor %s", pk)
        try:
            async with HTTPServer(runner, listener) as server:
                await server.wait_stopped()
        finally:
            self.connected.pop(pk, None)
            await session.close()
            log.info("link to hypervisor %s closed", pk)
