"""The server side of dmsghttp, part two: an aiohttp application served on a ``Listener``.

An ordinary HTTP/1.1 server runs on the streams a :class:`~skywire.wire.stream.Listener`
accepts (a dmsg port, by default 80); each stream plays the part of one TCP connection. As
upstream, the wait for request headers (3 s) and idle keep-alive connections (30 s) are bounded.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from skywire.dmsg.http.transport import StreamTransport
from skywire.wire.errors import WireError
from skywire.wire.stream import ByteStream, Listener
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = [
    "IDLE_TIMEOUT",
    "READ_HEADER_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "HTTPServer",
    "serve_app",
]

log = logging.getLogger(__name__)

READ_HEADER_TIMEOUT: Final = 3.0
"""Upstream server: seconds a new connection has to deliver its request headers."""

IDLE_TIMEOUT: Final = 30.0
"""Upstream server: seconds an idle keep-alive connection is kept open."""

SHUTDOWN_TIMEOUT: Final = 5.0
"""Seconds :meth:`HTTPServer.close` lets running requests finish before cancelling them."""


class HTTPServer:
    """Serve an aiohttp application (or an already set-up runner) on a :class:`Listener`.

    Use as ``async with HTTPServer(app, listener) as server:``. The server owns one task tree
    holding its accept loop and one task per connection. :meth:`close` (or leaving the
    ``async with``) closes the listener, lets running requests finish for up to
    ``shutdown_timeout`` seconds, then cancels them, closes every stream and awaits every task.

    ``app`` may be a ``web.Application`` (the server creates, sets up and cleans up its own
    ``web.AppRunner``, passing ``runner_kwargs`` through) or a ``web.BaseRunner`` that is
    already set up (for instance one that serves the same app on TCP); the caller keeps
    ownership of that runner, and its own keep-alive setting replaces ``idle_timeout``.
    """

    def __init__(
        self,
        app: web.Application | web.BaseRunner,
        listener: Listener,
        *,
        read_header_timeout: float | None = READ_HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        **runner_kwargs: Any,
    ) -> None:
        self._app = app
        self._listener = listener
        self._read_header_timeout = read_header_timeout
        self._idle_timeout = idle_timeout
        self._shutdown_timeout = shutdown_timeout
        self._runner_kwargs = runner_kwargs
        self._runner: web.BaseRunner | None = None
        self._owns_runner = False
        self._tasks = TaskTree("dmsghttp", log)
        self._live: dict[StreamTransport, asyncio.Protocol] = {}
        self._stopped = asyncio.Event()
        self._started = False
        self._closing = False
        self._closed = False

    @property
    def active_connections(self) -> int:
        """Connections currently being served."""
        return len(self._live)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Set the runner up and start accepting."""
        if self._started:
            raise RuntimeError("HTTPServer already started")
        self._started = True
        runner: web.BaseRunner
        if isinstance(self._app, web.Application):
            runner = web.AppRunner(
                self._app,
                keepalive_timeout=self._idle_timeout,
                shutdown_timeout=self._shutdown_timeout,
                **self._runner_kwargs,
            )
            await runner.setup()
            self._owns_runner = True
        else:
            runner = self._app
            if runner.server is None:
                raise RuntimeError("the runner given to HTTPServer must be set up")
        self._runner = runner
        await self._tasks.start()
        self._tasks.spawn(self._accept_loop(), "dmsghttp-accept")

    async def wait_stopped(self) -> None:
        """Return once the server no longer accepts (its listener closed or :meth:`close`)."""
        await self._stopped.wait()

    async def _accept_loop(self) -> None:
        try:
            while not self._closing:
                try:
                    stream = await self._listener.accept()
                except ConnectionError:
                    return
                try:
                    self._tasks.spawn(self._serve(stream), "dmsghttp-conn")
                except TaskTreeClosedError:
                    await _close_quietly(stream)
                    return
        finally:
            self._stopped.set()

    async def _serve(self, stream: ByteStream) -> None:
        assert self._runner is not None and self._runner.server is not None
        if self._closing:
            await _close_quietly(stream)
            return
        try:
            protocol = self._runner.server()
        except Exception:
            log.exception("dmsghttp: cannot create a request handler")
            await _close_quietly(stream)
            return
        transport = StreamTransport(stream, protocol, read_header_timeout=self._read_header_timeout)
        self._live[transport] = protocol
        handlers: set[asyncio.Task[Any]] = set()
        try:
            # aiohttp starts one task per connection inside connection_made() and keeps it to
            # itself; the tasks that appear during the call are that one, and this connection
            # owns them from here on.
            before = asyncio.all_tasks()
            transport.connection_made()
            handlers = {t for t in asyncio.all_tasks() - before if not t.done()}
            await transport.run()
        finally:
            del self._live[transport]
            await _close_quietly(stream)  # already closed unless connection_made() failed
            await self._finish(handlers)

    async def _finish(self, handlers: set[asyncio.Task[Any]]) -> None:
        """Wait for aiohttp's handler of a finished connection (cancelled when shutting down,
        or when this connection's own task is cancelled)."""
        pending = {t for t in handlers if not t.done()}
        if not pending:
            return
        if self._closing:
            for task in pending:
                task.cancel()
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            raise

    async def close(self) -> None:
        """Stop accepting, finish or cancel every connection, await every task."""
        if self._closed or not self._started:
            return
        self._closed = True
        self._closing = True
        try:
            await self._listener.close()
        except (ConnectionError, OSError) as exc:
            log.debug("dmsghttp: closing listener: %r", exc)
        await self._shutdown_connections()
        try:
            await self._tasks.close()
        finally:
            self._stopped.set()
            if self._owns_runner and self._runner is not None:
                await self._runner.cleanup()

    async def _shutdown_connections(self) -> None:
        """Graceful phase: idle connections close now, running requests get a grace period."""
        protocols = [p for p in self._live.values() if isinstance(p, web.RequestHandler)]
        for protocol in protocols:
            protocol.close()
        pending = [t for t in self._tasks.live() if t.get_name() == "dmsghttp-conn"]
        if not pending:
            return
        try:
            async with asyncio.timeout(self._shutdown_timeout):
                await asyncio.gather(*(p.shutdown(self._shutdown_timeout) for p in protocols))
                await asyncio.wait(pending)
        except TimeoutError:
            log.debug("dmsghttp: shutdown grace period over, cancelling connections")


async def _close_quietly(stream: ByteStream) -> None:
    try:
        await stream.close()
    except (ConnectionError, OSError, WireError) as exc:
        log.debug("dmsghttp: closing stream: %r", exc)


async def serve_app(
    app: web.Application | web.BaseRunner,
    listener: Listener,
    *,
    read_header_timeout: float | None = READ_HEADER_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    **runner_kwargs: Any,
) -> None:
    """Serve ``app`` on ``listener`` until the listener closes or the caller is cancelled."""
    async with HTTPServer(
        app,
        listener,
        read_header_timeout=read_header_timeout,
        idle_timeout=idle_timeout,
        shutdown_timeout=shutdown_timeout,
        **runner_kwargs,
    ) as server:
        await server.wait_stopped()
