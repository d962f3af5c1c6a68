"""dmsghttp: HTTP/1.1 over any :class:`~skywire.wire.stream.ByteStream`.

Upstream behaviour (spec dmsg.md §7):

* **Server.** An ordinary HTTP/1.1 server runs on the streams a :class:`Listener` accepts (a dmsg
  port, by default 80). Each stream plays the part of one TCP connection. Upstream bounds the
  wait for request headers (3 s) and idle keep-alive connections (30 s).
* **Client.** URLs are ``dmsg://<pk-hex>[:port]/path?query``; a missing port means 80. Every
  request dials a **new** stream (no connection reuse), writes the request with
  ``Host: <pk-hex>:<port>``, reads the response, and closes the stream once the body is done.

The server side drives aiohttp's own request handler (the protocol factory of a
``web.AppRunner``) through :class:`StreamTransport`, an ``asyncio.Transport`` that moves bytes
between the protocol and a ``ByteStream``. The client side is an ``httpx`` transport that speaks
HTTP/1.1 with ``h11``, so ``httpx.AsyncClient(transport=DmsgTransport(dial))`` fetches
``dmsg://`` URLs and every failure is an ``httpx.TransportError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from asyncio import constants as _aio_constants
from asyncio import transports as _aio_transports
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Self
from urllib.parse import urlsplit

import h11
import httpx
from aiohttp import web

from skywire.cipher import PubKey
from skywire.dmsg.addr import Addr, AddrError
from skywire.wire.stream import ByteStream, Dialer, Listener

__all__ = [
    "DEFAULT_HTTP_PORT",
    "IDLE_TIMEOUT",
    "READ_HEADER_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "DmsgTransport",
    "DmsgURL",
    "DmsgURLError",
    "HTTPServer",
    "StreamTransport",
    "fetch",
    "serve_app",
]

log = logging.getLogger(__name__)

DEFAULT_HTTP_PORT: Final = 80
"""``DefaultDmsgHTTPPort``: the dmsg port of dmsghttp when a URL names none."""

READ_HEADER_TIMEOUT: Final = 3.0
"""Upstream server: seconds a new connection has to deliver its request headers."""

IDLE_TIMEOUT: Final = 30.0
"""Upstream server: seconds an idle keep-alive connection is kept open."""

SHUTDOWN_TIMEOUT: Final = 5.0
"""Seconds :meth:`HTTPServer.close` lets running requests finish before cancelling them."""

READ_CHUNK: Final = 65536
_WRITE_COALESCE: Final = 65536
_END_OF_HEADERS = re.compile(rb"\n\r?\n")


# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------


class DmsgURLError(ValueError):
    """A ``dmsg://`` URL that does not parse (wrong scheme, bad public key or port...)."""


def _parse_host(host: str, port_text: str | None) -> Addr:
    """The dmsg address of a URL authority; ``port_text`` None (or ``~``/``0``) means 80."""
    try:
        addr = Addr.parse(host if port_text is None else f"{host}:{port_text}")
    except AddrError as exc:
        raise DmsgURLError(str(exc)) from exc
    if addr.pk.is_null():
        raise DmsgURLError(f"invalid dmsg host {host!r}: null public key")
    if addr.port == 0:
        addr = Addr(addr.pk, DEFAULT_HTTP_PORT)
    return addr


@dataclass(frozen=True, slots=True)
class DmsgURL:
    """``dmsg://<pk-hex>[:port]/path?query``, with the port defaulted to 80."""

    addr: Addr
    path: str = "/"
    query: str = ""

    @classmethod
    def parse(cls, text: str) -> DmsgURL:
        """Parse a ``dmsg://`` URL; any defect raises :class:`DmsgURLError`."""
        try:
            parts = urlsplit(text)
        except ValueError as exc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: {exc}") from exc
        if parts.scheme.lower() != "dmsg":
            raise DmsgURLError(f"invalid dmsg URL {text!r}: scheme must be dmsg://")
        netloc = parts.netloc
        if not netloc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: missing host")
        if "@" in netloc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: user info is not allowed")
        host, sep, port_text = netloc.rpartition(":")
        if not sep:
            host, port_text = netloc, ""
        if not host:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: missing public key")
        try:
            addr = _parse_host(host, port_text or None)
        except DmsgURLError as exc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: {exc}") from exc
        return cls(addr, parts.path or "/", parts.query)

    @classmethod
    def from_httpx(cls, url: httpx.URL) -> DmsgURL:
        """The dmsg address and target of an ``httpx.URL`` (scheme ``dmsg`` or ``http``)."""
        if url.scheme not in ("dmsg", "http"):
            raise DmsgURLError(f"unsupported scheme {url.scheme!r} for dmsg HTTP")
        if not url.host:
            raise DmsgURLError(f"invalid dmsg URL {str(url)!r}: missing public key")
        port = url.port
        addr = _parse_host(url.host, None if port is None else str(port))
        target = url.raw_path.decode("ascii")
        path, _, query = target.partition("?")
        return cls(addr, path or "/", query)

    @property
    def pk(self) -> PubKey:
        return self.addr.pk

    @property
    def port(self) -> int:
        return self.addr.port

    @property
    def host(self) -> str:
        """The ``Host`` header value: ``<pk-hex>:<port>``."""
        return f"{self.addr.pk.hex()}:{self.addr.port}"

    @property
    def target(self) -> str:
        """The request target: path plus query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def __str__(self) -> str:
        return f"dmsg://{self.host}{self.target}"


# --------------------------------------------------------------------------------------------
# Server side: an asyncio transport over a ByteStream
# --------------------------------------------------------------------------------------------


def _addr_info(stream: ByteStream, addr_attr: str, tcp_attr: str) -> tuple[str, int] | None:
    """``(pk-hex, port)`` for a dmsg stream, ``(host, port)`` for a TCP one, else None."""
    addr = getattr(stream, addr_attr, None)
    if isinstance(addr, Addr):
        return (addr.pk.hex(), addr.port)
    value = getattr(stream, tcp_attr, None)
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


class StreamTransport(_aio_transports._FlowControlMixin):
    """An ``asyncio.Transport`` that carries a protocol's bytes over a :class:`ByteStream`.

    :meth:`run` is the connection: it calls ``connection_made``, feeds ``data_received`` and
    ``eof_received`` from a reading task, flushes ``write()`` calls to the stream from a
    writing task (pausing the protocol above the high-water mark), and ends, after closing the
    stream, with exactly one ``connection_lost``. Both tasks belong to :meth:`run`;
    cancelling it aborts the connection.

    ``get_extra_info`` knows ``peername``/``sockname`` (``(pk-hex, port)`` for dmsg streams
    that have ``remote_addr``/``local_addr``; the TCP pair for ``TcpStream``) and ``stream``.

    ``read_header_timeout`` aborts the connection if no end of headers (an empty line) has
    arrived that many seconds after the start: the upstream ``ReadHeaderTimeout``, applied to
    the first request of the connection.
    """

    # asyncio's private flow-control base is subclassed only so that loop.sendfile() (used by
    # aiohttp's FileResponse) accepts this transport and falls back to plain writes; the
    # attributes that fallback reads are kept here.
    _sendfile_compatible: ClassVar[_aio_constants._SendfileMode] = (
        _aio_constants._SendfileMode.FALLBACK
    )
    _loop: asyncio.AbstractEventLoop
    _protocol_paused: bool

    def __init__(
        self,
        stream: ByteStream,
        protocol: asyncio.Protocol,
        *,
        read_header_timeout: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        info: dict[str, Any] = {
            "peername": _addr_info(stream, "remote_addr", "peername"),
            "sockname": _addr_info(stream, "local_addr", "sockname"),
            "stream": stream,
        }
        info.update(extra or {})
        asyncio.Transport.__init__(self, info)
        self._loop = asyncio.get_running_loop()
        self._protocol_paused = False
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._stream = stream
        self._protocol: asyncio.Protocol = protocol
        self._replaced: asyncio.Protocol | None = None  # the protocol set_protocol() swapped out
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._wakeup = asyncio.Event()  # the writer has something to do
        self._finished = asyncio.Event()  # flushed after close(), or aborted
        self._can_read = asyncio.Event()  # cleared by pause_reading()
        self._can_read.set()
        self._closing = False
        self._exc: Exception | None = None
        self._header_timeout = read_header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_tail = b""
        self._started = False

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self) -> None:
        """Hand the transport to the protocol; :meth:`run` calls it if nobody did before."""
        if self._started:
            return
        self._started = True
        if self._header_timeout is not None:
            self._header_timer = self._loop.call_later(
                self._header_timeout, self._on_header_timeout
            )
        self._protocol.connection_made(self)

    async def run(self) -> None:
        """Serve the connection until it is closed or aborted, then close the stream."""
        self.connection_made()
        reader = asyncio.create_task(self._read_loop(), name="dmsghttp-read")
        writer = asyncio.create_task(self._write_loop(), name="dmsghttp-write")
        try:
            await self._finished.wait()
        except asyncio.CancelledError:
            self._abort(None)
            raise
        finally:
            if self._header_timer is not None:
                self._header_timer.cancel()
            # Close the stream first so that a pending read or write ends by itself; cancel
            # whatever is left.
            try:
                await self._stream.close()
            except Exception as exc:  # the stream is gone either way
                log.debug("dmsghttp: closing stream: %r", exc)
            for task in (reader, writer):
                task.cancel()
            await asyncio.wait((reader, writer))
            self._connection_lost()

    def _connection_lost(self) -> None:
        self._closing = True
        try:
            self._protocol.connection_lost(self._exc)
        except Exception:
            log.exception("dmsghttp: protocol.connection_lost failed")

    async def _read_loop(self) -> None:
        try:
            while not self._closing:
                await self._can_read.wait()
                if self._closing:
                    return
                data = await self._stream.read(READ_CHUNK)
                if not data:
                    if not self._closing and not self._protocol.eof_received():
                        self.close()
                    return
                self._watch_headers(data)
                await self._can_read.wait()  # pause_reading() holds data already read
                if self._closing:
                    return
                self._protocol.data_received(data)
        except Exception as exc:
            self._abort(exc)

    async def _write_loop(self) -> None:
        try:
            while True:
                if self._buffer:
                    chunk = self._take(_WRITE_COALESCE)
                    await self._stream.write(chunk)
                    if self._finished.is_set():
                        return
                    self._buffered -= len(chunk)
                    self._maybe_resume_writing()
                    continue
                if self._closing:
                    self._finished.set()
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except Exception as exc:
            self._abort(exc)

    def _take(self, limit: int) -> bytes:
        first = self._buffer.popleft()
        if not self._buffer or len(first) >= limit:
            return first
        parts = [first]
        size = len(first)
        while self._buffer and size + len(self._buffer[0]) <= limit:
            part = self._buffer.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    def _watch_headers(self, data: bytes) -> None:
        if self._header_timer is None:
            return
        seen = self._header_tail + data
        if _END_OF_HEADERS.search(seen):
            self._header_timer.cancel()
            self._header_timer = None
        else:
            self._header_tail = seen[-2:]

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        log.debug("dmsghttp: no request headers within %ss, closing", self._header_timeout)
        self._abort(None)

    def _abort(self, exc: Exception | None) -> None:
        if self._finished.is_set():
            return
        self._closing = True
        if exc is not None and self._exc is None:
            self._exc = exc
        self._buffer.clear()
        self._buffered = 0
        self._can_read.set()
        self._wakeup.set()
        self._finished.set()

    # -- asyncio.BaseTransport -----------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, flush what was written, then close the stream."""
        if self._closing:
            return
        self._closing = True
        self._can_read.set()
        self._wakeup.set()

    def abort(self) -> None:
        """Drop unsent data and close the stream now."""
        self._abort(None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        if protocol is self._replaced:
            # loop.sendfile()'s fallback (aiohttp's FileResponse) swaps its own protocol in, then
            # the original back, which it leaves resumed whatever the pause state: forget a pause
            # sent to the fallback protocol, or the original would get a resume_writing() it did
            # not expect. The next write() pauses it if the buffer is still above the mark.
            self._replaced = None
            self._protocol_paused = False
        else:
            self._replaced = self._protocol
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # -- asyncio.ReadTransport ------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._closing and self._can_read.is_set()

    def pause_reading(self) -> None:
        if not self._closing:
            self._can_read.clear()

    def resume_reading(self) -> None:
        self._can_read.set()

    # -- asyncio.WriteTransport -----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        if self._closing or not data:
            return
        chunk = bytes(data)
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self._wakeup.set()
        self._maybe_pause_writing()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def _maybe_pause_writing(self) -> None:
        if self._protocol_paused or self._buffered <= self._high_water:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except Exception:
            log.exception("dmsghttp: protocol.pause_writing failed")

    def _maybe_resume_writing(self) -> None:
        if not self._protocol_paused or self._buffered > self._low_water:
            return
        self._protocol_paused = False
        try:
            self._protocol.resume_writing()
        except Exception:
            log.exception("dmsghttp: protocol.resume_writing failed")


# --------------------------------------------------------------------------------------------
# Server side: serving an aiohttp application on a Listener
# --------------------------------------------------------------------------------------------


class HTTPServer:
    """Serve an aiohttp application (or an already set-up runner) on a :class:`Listener`.

    Use as ``async with HTTPServer(app, listener) as server:``. The server owns a TaskGroup
    holding its accept loop and one task per connection. :meth:`close` (or leaving the
    ``async with``) closes the listener, lets running requests finish for up to
    ``shutdown_timeout`` seconds, then cancels them, closes every stream and awaits every task.
    It must run in the task that entered it.

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
        self._tg: asyncio.TaskGroup | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._live: dict[StreamTransport, asyncio.Protocol] = {}
        self._stopped = asyncio.Event()
        self._closing = False
        self._closed = False

    @property
    def active_connections(self) -> int:
        """Connections currently being served."""
        return len(self._conn_tasks)

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
        if self._tg is not None:
            raise RuntimeError("HTTPServer already started")
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
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        self._accept_task = tg.create_task(self._accept_loop(), name="dmsghttp-accept")

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
                if self._closing:
                    await stream.close()
                    return
                assert self._tg is not None
                task = self._tg.create_task(self._serve(stream), name="dmsghttp-conn")
                self._conn_tasks.add(task)
                task.add_done_callback(self._conn_tasks.discard)
        finally:
            self._stopped.set()

    async def _serve(self, stream: ByteStream) -> None:
        assert self._runner is not None and self._runner.server is not None
        try:
            protocol = self._runner.server()
        except Exception:
            log.exception("dmsghttp: cannot create a request handler")
            await stream.close()
            return
        transport = StreamTransport(stream, protocol, read_header_timeout=self._read_header_timeout)
        self._live[transport] = protocol
        handler: asyncio.Task[None] | None = None
        try:
            transport.connection_made()
            # aiohttp runs each connection in a task of its own, made in connection_made(); it
            # is awaited here so that it has an owner.
            handler = getattr(protocol, "_task_handler", None)
            await transport.run()
        except Exception:
            log.exception("dmsghttp: connection failed")
        finally:
            del self._live[transport]
            await _close_quietly(stream)  # already closed unless connection_made() failed
            if handler is not None and not handler.done():
                if self._closing:
                    handler.cancel()
                try:
                    await asyncio.wait((handler,))
                except asyncio.CancelledError:
                    handler.cancel()
                    await asyncio.wait((handler,))
                    raise

    async def close(self) -> None:
        """Stop accepting, finish or cancel every connection, await every task."""
        if self._closed or self._tg is None:
            return
        self._closed = True
        self._closing = True
        try:
            await self._listener.close()
        except Exception as exc:
            log.debug("dmsghttp: closing listener: %r", exc)
        if self._accept_task is not None:
            self._accept_task.cancel()
        await self._shutdown_connections()
        for task in list(self._conn_tasks):
            task.cancel()
        tg, self._tg = self._tg, None
        try:
            await tg.__aexit__(None, None, None)
        finally:
            self._stopped.set()
            if self._owns_runner and self._runner is not None:
                await self._runner.cleanup()

    async def _shutdown_connections(self) -> None:
        """Graceful phase: idle connections close now, running requests get a grace period."""
        protocols = [p for p in self._live.values() if isinstance(p, web.RequestHandler)]
        for protocol in protocols:
            protocol.close()
        pending = set(self._conn_tasks)
        if not pending:
            return
        try:
            async with asyncio.timeout(self._shutdown_timeout):
                await asyncio.gather(*(p.shutdown(self._shutdown_timeout) for p in protocols))
                await asyncio.wait(pending)
        except TimeoutError:
            log.debug("dmsghttp: shutdown grace period over, cancelling connections")


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


# --------------------------------------------------------------------------------------------
# Client side: an httpx transport
# --------------------------------------------------------------------------------------------


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    value = request.extensions.get("timeout", {})
    return dict(value) if isinstance(value, Mapping) else {}


async def _write(
    stream: ByteStream, data: bytes, timeout: float | None, request: httpx.Request
) -> None:
    if not data:
        return
    try:
        async with asyncio.timeout(timeout):
            await stream.write(data)
    except TimeoutError as exc:
        raise httpx.WriteTimeout("dmsg: writing the request timed out", request=request) from exc
    except Exception as exc:
        raise httpx.WriteError(f"dmsg: writing the request failed: {exc!r}", request=request) from (
            exc
        )


async def _next_event(
    conn: h11.Connection, stream: ByteStream, timeout: float | None, request: httpx.Request
) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
    """The next h11 event of the response, reading from the stream as needed."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(
                f"dmsg: malformed or truncated response: {exc}", request=request
            ) from exc
        if event is not h11.NEED_DATA:
            return event
        try:
            async with asyncio.timeout(timeout):
                data = await stream.read(READ_CHUNK)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("dmsg: reading the response timed out", request=request) from (
                exc
            )
        except Exception as exc:
            raise httpx.ReadError(
                f"dmsg: reading the response failed: {exc!r}", request=request
            ) from (exc)
        if not data and conn.their_state is h11.SEND_RESPONSE and not conn.trailing_data[0]:
            raise httpx.RemoteProtocolError(
                "dmsg: server closed the stream without sending a response", request=request
            )
        conn.receive_data(data)


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one response; closing it (or reaching its end) closes the dmsg stream.

    It is its own async iterator (not an async generator), so an abandoned iteration leaves no
    generator for the event loop to finalise in a task of its own.
    """

    def __init__(
        self,
        owner: DmsgTransport,
        conn: h11.Connection,
        stream: ByteStream,
        request: httpx.Request,
        read_timeout: float | None,
    ) -> None:
        self._owner = owner
        self._conn = conn
        self._stream = stream
        self._request = request
        self._read_timeout = read_timeout
        self._iterating = False
        self._done = False
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterating or self._closed:
            raise httpx.StreamConsumed() if self._iterating else httpx.StreamClosed()
        self._iterating = True
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            while True:
                if self._closed:
                    raise httpx.StreamClosed()
                event = await _next_event(
                    self._conn, self._stream, self._read_timeout, self._request
                )
                if isinstance(event, h11.Data):
                    if event.data:
                        return bytes(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
                else:
                    raise httpx.RemoteProtocolError(
                        f"dmsg: unexpected response event {event!r}", request=self._request
                    )
        except BaseException:
            self._done = True
            await self.aclose()
            raise
        self._done = True
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner._open.discard(self)
        await _close_quietly(self._stream)


async def _close_quietly(stream: ByteStream) -> None:
    try:
        await stream.close()
    except Exception as exc:
        log.debug("dmsghttp: closing stream: %r", exc)


class DmsgTransport(httpx.AsyncBaseTransport):
    """``httpx`` transport for ``dmsg://<pk>[:port]/...``: one new stream per request.

    ``dial`` opens a stream to ``(pk, port)`` (a dmsg client's ``dial``). Requests may also use
    ``http://<pk>[:port]/...``. Errors are ``httpx.TransportError`` subclasses: ``ConnectError``
    (bad host or dial failure), ``ConnectTimeout``, ``WriteError``/``WriteTimeout``,
    ``ReadError``/``ReadTimeout``, ``RemoteProtocolError`` (malformed or truncated response).
    The httpx timeouts apply: ``connect`` to the dial, ``write`` and ``read`` to each
    stream operation.
    """

    def __init__(self, dial: Dialer) -> None:
        self._dial = dial
        self._open: set[_ResponseStream] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("DmsgTransport is closed")
        try:
            url = DmsgURL.from_httpx(request.url)
        except DmsgURLError as exc:
            if request.url.scheme not in ("dmsg", "http"):
                raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
            raise httpx.ConnectError(str(exc), request=request) from exc
        timeouts = _timeouts(request)
        stream = await self._connect(url, timeouts.get("connect"), request)
        try:
            conn = h11.Connection(h11.CLIENT)
            response = await self._exchange(conn, stream, url, request, timeouts)
        except BaseException:
            await _close_quietly(stream)
            raise
        body = _ResponseStream(self, conn, stream, request, timeouts.get("read"))
        self._open.add(body)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers.raw_items(),
            stream=body,
            extensions={
                "http_version": b"HTTP/" + bytes(response.http_version),
                "reason_phrase": bytes(response.reason),
            },
        )

    async def _connect(
        self, url: DmsgURL, timeout: float | None, request: httpx.Request
    ) -> ByteStream:
        try:
            async with asyncio.timeout(timeout):
                return await self._dial(url.pk, url.port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"dmsg: dialing {url.host} timed out", request=request
            ) from exc
        except Exception as exc:
            raise httpx.ConnectError(
                f"dmsg: dialing {url.host} failed: {exc}", request=request
            ) from exc

    async def _exchange(
        self,
        conn: h11.Connection,
        stream: ByteStream,
        url: DmsgURL,
        request: httpx.Request,
        timeouts: Mapping[str, float | None],
    ) -> h11.Response:
        headers = [(b"Host", url.host.encode("ascii"))]
        headers += [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
        write_timeout = timeouts.get("write")
        try:
            head = conn.send(
                h11.Request(method=request.method, target=request.url.raw_path, headers=headers)
            )
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        try:
            await _write(stream, head or b"", write_timeout, request)
            await self._send_body(conn, stream, request, write_timeout)
        except httpx.WriteError:
            # The server may have answered early (e.g. 413) and closed: prefer its response.
            with contextlib.suppress(httpx.TransportError):
                return await self._read_head(conn, stream, request, timeouts.get("read"))
            raise
        return await self._read_head(conn, stream, request, timeouts.get("read"))

    @staticmethod
    async def _send_body(
        conn: h11.Connection,
        stream: ByteStream,
        request: httpx.Request,
        timeout: float | None,
    ) -> None:
        body = request.stream
        if not isinstance(body, httpx.AsyncByteStream):
            raise RuntimeError("DmsgTransport needs an async request body (use AsyncClient)")
        try:
            async for chunk in body:
                if chunk:
                    await _write(stream, conn.send(h11.Data(data=chunk)) or b"", timeout, request)
            await _write(stream, conn.send(h11.EndOfMessage()) or b"", timeout, request)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc

    @staticmethod
    async def _read_head(
        conn: h11.Connection,
        stream: ByteStream,
        request: httpx.Request,
        timeout: float | None,
    ) -> h11.Response:
        while True:
            event = await _next_event(conn, stream, timeout, request)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise httpx.RemoteProtocolError(
                    f"dmsg: unexpected response event {event!r}", request=request
                )

    async def aclose(self) -> None:
        """Close the streams of responses still open."""
        self._closed = True
        while self._open:
            await self._open.pop().aclose()


async def fetch(
    dial: Dialer,
    url: str | DmsgURL,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: float | httpx.Timeout | None = 20.0,
) -> httpx.Response:
    """One request over dmsg; returns the response with its body read."""
    async with httpx.AsyncClient(transport=DmsgTransport(dial), timeout=timeout) as client:
        response = await client.request(method, str(url), headers=headers, content=content)
        await response.aread()
        return response


@contextlib.asynccontextmanager
async def fetch_stream(
    dial: Dialer,
    url: str | DmsgURL,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: float | httpx.Timeout | None = 20.0,
) -> AsyncIterator[httpx.Response]:
    """One request over dmsg whose body is read by the caller (``resp.aiter_bytes()``)."""
    async with (
        httpx.AsyncClient(transport=DmsgTransport(dial), timeout=timeout) as client,
        client.stream(method, str(url), headers=headers, content=content) as response,
    ):
        yield response
