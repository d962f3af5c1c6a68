"""The serving side of ``.skynet`` names: local TCP services published on routing ports.

``publisher.add(80, ("127.0.0.1", 8080))`` makes ``<this-pk>.skynet`` reach the web server on
127.0.0.1:8080. Every route group arriving on the port carries yamux (this side is the yamux
server); each yamux stream is one connection to the local service, bytes copied both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from skywire.wire.errors import WireError
from skywire.wire.stream import ByteStream, Listener, TcpStream
from skywire.wire.tasks import Leave, TaskTree, leaving, serve_each
from skywire.wire.yamux_aio import YamuxSession

__all__ = ["RouteListening", "SkynetPublisher"]

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
_STREAM_ERRORS = (ConnectionError, OSError, WireError, EOFError)


class RouteListening(Protocol):
    """The router as the publisher uses it: incoming route groups on a routing port."""

    async def listen(self, port: int) -> Listener: ...


class SkynetPublisher:
    """Serves local TCP services on routing ports until closed."""

    def __init__(self, router: RouteListening) -> None:
        self.router = router
        self.services: dict[int, tuple[str, int]] = {}
        self._listeners: dict[int, Listener] = {}
        self._tasks = TaskTree("skynet-publisher", log)
        self.connections = 0

    async def start(self) -> None:
        await self._tasks.start()

    async def close(self) -> None:
        for port in list(self._listeners):
            await self.remove(port)
        await self._tasks.close()

    def lookup(self, port: int) -> tuple[str, int] | None:
        """The local address published on ``port``, if any."""
        return self.services.get(port)

    async def add(self, port: int, address: tuple[str, int]) -> None:
        """Publish ``address`` on routing ``port`` (replacing what was there)."""
        if port in self._listeners:
            self.services[port] = address
            return
        listener = await self.router.listen(port)
        self._listeners[port] = listener
        self.services[port] = address
        self._tasks.spawn(self._accept(port, listener), f"skynet-port-{port}")
        log.info("skynet port %d serves %s:%d", port, *address)

    async def remove(self, port: int) -> None:
        listener = self._listeners.pop(port, None)
        self.services.pop(port, None)
        if listener is not None:
            with contextlib.suppress(*_STREAM_ERRORS):
                await listener.close()

    async def _accept(self, port: int, listener: Listener) -> None:
        await serve_each(
            listener.accept,
            lambda group: self._serve_group(port, group),
            what=f"skynet port {port}",
            logger=log,
        )

    async def _serve_group(self, port: int, group: ByteStream) -> None:
        session = YamuxSession.over_stream(group, client=False)
        try:
            session.start()
            await serve_each(
                session.accept,
                lambda stream: self._serve_stream(port, stream),
                what=f"skynet port {port} stream",
                logger=log,
            )
        finally:
            await session.close()
            with contextlib.suppress(*_STREAM_ERRORS):
                await group.close()

    async def _serve_stream(self, port: int, stream: ByteStream) -> None:
        address = self.services.get(port)
        try:
            if address is None:
                return
            try:
                local = await TcpStream.connect(*address)
            except OSError as exc:
                log.info("skynet port %d: %s:%d refused: %s", port, *address, exc)
                return
            self.connections += 1
            try:
                await _pipe(stream, local)
            finally:
                await local.close()
        finally:
            with contextlib.suppress(*_STREAM_ERRORS):
                await stream.close()


async def _pipe(a: ByteStream, b: ByteStream) -> None:
    """Copy both ways; when either direction ends, end both."""

    async def copy(src: ByteStream, dst: ByteStream) -> None:
        with contextlib.suppress(*_STREAM_ERRORS):
            while data := await src.read(CHUNK):
                await dst.write(data)

    async with leaving() as tg:
        ends = [tg.create_task(copy(a, b)), tg.create_task(copy(b, a))]
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        raise Leave
