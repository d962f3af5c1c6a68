"""Go ``net/rpc`` with its default gob codec: sans-I/O codecs and asyncio client/server.

Each direction of a connection is one gob stream (one encoder, so type definitions are sent once
per connection). A request is the header ``Request{ServiceMethod string; Seq uint64}`` followed
by the argument value; a response is ``Response{ServiceMethod string; Seq uint64; Error string}``
followed by the reply, or by an empty struct when ``Error`` is set. Sequence numbers start at 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from skywire.wire.errors import GobError, RPCError, WireError
from skywire.wire.gob import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    GobDecoder,
    GobEncoder,
    GobTypeRegistry,
    GoString,
    GoStruct,
    GoType,
    GoUint64,
)
from skywire.wire.stream import ByteStream

__all__ = [
    "INVALID_REQUEST",
    "REQUEST_HEADER",
    "RESPONSE_HEADER",
    "SHUTDOWN_MESSAGE",
    "RPCBodyError",
    "RPCClient",
    "RPCClientCodec",
    "RPCConnectionShutdown",
    "RPCError",
    "RPCMethod",
    "RPCRequest",
    "RPCResponse",
    "RPCServer",
    "RPCServerCodec",
    "RPCServerError",
    "RequestHeader",
    "ResponseHeader",
]

log = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "connection is shut down"
"""Go's ``rpc.ErrShutdown`` text."""

_READ_SIZE = 65536


PARTIAL_TIMEOUT = 10.0
"""Seconds a server waits for the rest of a request that has begun to arrive."""


class RPCServerError(RPCError):
    """The server answered with an error string (Go's ``rpc.ServerError``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RPCConnectionShutdown(RPCError):
    """The connection is gone: the call was not (or will not be) answered."""

    def __init__(self, message: str = SHUTDOWN_MESSAGE) -> None:
        super().__init__(message)


class RPCBodyError(RPCError):
    """A reply body could not be decoded into the requested type."""


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """Go's ``rpc.Request``."""

    service_method: str
    seq: int


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    """Go's ``rpc.Response``; a non-empty ``error`` means the call failed."""

    service_method: str
    seq: int
    error: str = ""


REQUEST_HEADER = GoStruct(
    "Request",
    [("ServiceMethod", GoString, "service_method"), ("Seq", GoUint64, "seq")],
    py_type=RequestHeader,
)
RESPONSE_HEADER = GoStruct(
    "Response",
    [
        ("ServiceMethod", GoString, "service_method"),
        ("Seq", GoUint64, "seq"),
        ("Error", GoString, "error"),
    ],
    py_type=ResponseHeader,
)
INVALID_REQUEST = GoStruct("", [])
"""The ``struct{}`` body Go sends after an error response."""


@dataclass(frozen=True, slots=True)
class RPCRequest:
    """A decoded request; ``error`` is set when the argument could not be decoded."""

    header: RequestHeader
    arg: Any
    error: GobError | None = None


@dataclass(frozen=True, slots=True)
class RPCResponse:
    """A decoded response; ``error`` is set when the reply body could not be decoded."""

    header: ResponseHeader
    reply: Any
    error: GobError | None = None


class _HeaderBodyReader:
    """Pulls (header, body) pairs off one gob stream; the body type depends on the header."""

    def __init__(self, header_type: GoType, max_message_size: int, max_depth: int) -> None:
        self.header_type = header_type
        self.decoder = GobDecoder(max_message_size=max_message_size, max_depth=max_depth)
        self._header: Any = None
        self._body_type: GoType | None = None

    @property
    def mid_message(self) -> bool:
        """Whether a message has begun and is not complete yet."""
        return self._header is not None or self.decoder.buffered > 0

    def next(self, body_type: Callable[[Any], GoType | None]) -> tuple[Any, Any, GobError | None]:
        if self._header is None:
            item = self.decoder.next_value(self.header_type)
            if item is None:
                return None, None, None
            self._header = item.value
            self._body_type = body_type(item.value)
        try:
            body = self.decoder.next_value(self._body_type)
        except GobError as exc:
            header, self._header = self._header, None
            return header, None, exc
        if body is None:
            return None, None, None
        header, self._header = self._header, None
        return header, body.value, None


class RPCClientCodec:
    """Client side of net/rpc, sans-I/O: encodes requests, decodes responses."""

    def __init__(
        self,
        *,
        registry: GobTypeRegistry | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.encoder = GobEncoder(registry)
        self._reader = _HeaderBodyReader(RESPONSE_HEADER, max_message_size, max_depth)

    def encode_request(self, seq: int, service_method: str, arg: Any, arg_type: GoType) -> bytes:
        """Header and argument messages; nothing is recorded if encoding fails."""
        return self.encoder.encode_many(
            [(RequestHeader(service_method, seq), REQUEST_HEADER), (arg, arg_type)]
        )

    def feed(self, data: bytes) -> None:
        self._reader.decoder.feed(data)

    def next_response(
        self, reply_type: Callable[[ResponseHeader], GoType | None]
    ) -> RPCResponse | None:
        """The next complete response, or ``None``.

        ``reply_type(header)`` picks the body descriptor (``None`` decodes it as plain data, for
        discarding). A malformed header raises :class:`GobError` (the stream is then unusable).
        """
        header, reply, err = self._reader.next(reply_type)
        if header is None:
            return None
        return RPCResponse(header, reply, err)


class RPCServerCodec:
    """Server side of net/rpc, sans-I/O: decodes requests, encodes responses."""

    def __init__(
        self,
        *,
        registry: GobTypeRegistry | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.encoder = GobEncoder(registry)
        self._reader = _HeaderBodyReader(REQUEST_HEADER, max_message_size, max_depth)

    @property
    def mid_message(self) -> bool:
        """Whether a request has begun arriving and is not complete yet."""
        return self._reader.mid_message

    def feed(self, data: bytes) -> None:
        self._reader.decoder.feed(data)

    def next_request(self, arg_type: Callable[[RequestHeader], GoType | None]) -> RPCRequest | None:
        """The next complete request, or ``None``; see :meth:`RPCClientCodec.next_response`."""
        header, arg, err = self._reader.next(arg_type)
        if header is None:
            return None
        return RPCRequest(header, arg, err)

    def encode_response(
        self, header: RequestHeader, reply: Any, reply_type: GoType, error: str = ""
    ) -> bytes:
        """Header and body messages for the answer to ``header``.

        With ``error`` (or if ``reply`` cannot be encoded) the body is Go's empty struct.
        """
        if not error:
            ok = ResponseHeader(header.service_method, header.seq)
            try:
                return self.encoder.encode_many([(ok, RESPONSE_HEADER), (reply, reply_type)])
            except GobError as exc:
                error = f"rpc: gob error encoding body: {exc}"
        failed = ResponseHeader(header.service_method, header.seq, error)
        return self.encoder.encode_many([(failed, RESPONSE_HEADER), ({}, INVALID_REQUEST)])


class _Sender:
    """Writes queued byte strings in order on a stream from one owned task."""

    def __init__(self, stream: ByteStream, on_error: Callable[[BaseException], None]) -> None:
        self._stream = stream
        self._on_error = on_error
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, data: bytes) -> None:
        self._queue.put_nowait(data)

    async def _run(self) -> None:
        while True:
            data = await self._queue.get()
            if data is None:
                return
            try:
                await self._stream.write(data)
            except Exception as exc:
                self._on_error(exc)
                return

    async def flush_and_stop(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RPCClient:
    """A net/rpc client over a :class:`ByteStream` (Go's ``rpc.Client`` with the gob codec).

    Calls may run concurrently; replies are matched by sequence number. Once the connection
    fails or is closed every pending and later call raises :class:`RPCConnectionShutdown`.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        registry: GobTypeRegistry | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        read_size: int = _READ_SIZE,
    ) -> None:
        self._stream = stream
        self._codec = RPCClientCodec(
            registry=registry, max_message_size=max_message_size, max_depth=max_depth
        )
        self._read_size = read_size
        self._seq = 0
        self._pending: dict[int, tuple[asyncio.Future[Any], GoType]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._sender: _Sender | None = None
        self._shutdown: BaseException | None = None
        self._closed = False

    @property
    def is_shut_down(self) -> bool:
        return self._shutdown is not None

    async def call(
        self, service_method: str, arg: Any, arg_type: GoType, reply_type: GoType
    ) -> Any:
        """Call ``Service.Method`` and return the decoded reply.

        Raises :class:`RPCServerError` with the server's error string,
        :class:`RPCConnectionShutdown` when the connection is gone, :class:`GobError` when
        ``arg`` does not fit ``arg_type`` (nothing is sent then) and :class:`RPCBodyError` when
        the reply cannot be decoded.
        """
        if self._shutdown is not None:
            raise RPCConnectionShutdown() from self._shutdown
        loop = asyncio.get_running_loop()
        if self._sender is None:
            self._sender = _Sender(self._stream, self._fail)
            self._reader = loop.create_task(self._read_loop())
        seq = self._seq
        data = self._codec.encode_request(seq, service_method, arg, arg_type)
        self._seq += 1
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[seq] = (fut, reply_type)
        self._sender.send(data)
        try:
            return await fut
        finally:
            self._pending.pop(seq, None)

    def _reply_type(self, header: ResponseHeader) -> GoType | None:
        entry = self._pending.get(header.seq)
        if entry is None or header.error or entry[0].done():
            return None
        return entry[1]

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._stream.read(self._read_size)
                if not data:
                    raise RPCConnectionShutdown("rpc: connection closed by the server")
                self._codec.feed(data)
                while (resp := self._codec.next_response(self._reply_type)) is not None:
                    self._dispatch(resp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _dispatch(self, resp: RPCResponse) -> None:
        entry = self._pending.pop(resp.header.seq, None)
        if entry is None or entry[0].done():
            return
        fut = entry[0]
        if resp.header.error:
            fut.set_exception(RPCServerError(resp.header.error))
        elif resp.error is not None:
            err = RPCBodyError(f"reading body {resp.error}")
            err.__cause__ = resp.error
            fut.set_exception(err)
        else:
            fut.set_result(resp.reply)

    def _fail(self, exc: BaseException) -> None:
        if self._shutdown is None:
            self._shutdown = exc
            if not isinstance(exc, RPCConnectionShutdown):
                log.debug("rpc client: connection failed: %r", exc)
        for fut, _ in self._pending.values():
            if not fut.done():
                err = RPCConnectionShutdown()
                err.__cause__ = exc
                fut.set_exception(err)
        self._pending.clear()

    async def close(self) -> None:
        """Fail pending calls, stop the owned tasks and close the stream."""
        if self._closed:
            return
        self._closed = True
        self._fail(RPCConnectionShutdown())
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._sender is not None:
            await self._sender.cancel()
        await self._stream.close()

    async def __aenter__(self) -> RPCClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


Handler = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class RPCMethod:
    """A served method: an async handler taking the argument and returning the reply."""

    handler: Handler
    arg_type: GoType
    reply_type: GoType


class RPCServer:
    """A net/rpc server (Go's ``rpc.Server`` with the gob codec).

    Requests on one connection are handled concurrently and answered in completion order. A
    handler signals failure by raising; the exception text becomes ``Response.Error``.
    """

    def __init__(
        self,
        *,
        registry: GobTypeRegistry | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        read_size: int = _READ_SIZE,
        partial_timeout: float | None = None,
    ) -> None:
        self._services: dict[str, dict[str, RPCMethod]] = {}
        self._registry = registry
        self._max_message_size = max_message_size
        self._max_depth = max_depth
        self._read_size = read_size
        # A connection may idle between requests, but a request once begun must arrive whole
        # within this many seconds: a peer cannot hold a handler with half a message.
        self.partial_timeout = PARTIAL_TIMEOUT if partial_timeout is None else partial_timeout

    def register(self, name: str, methods: Mapping[str, RPCMethod]) -> None:
        """Serve ``methods`` as ``name.Method``."""
        if not name or "." in name:
            raise ValueError(f"rpc: bad service name {name!r}")
        if name in self._services:
            raise ValueError(f"rpc: service already defined: {name}")
        self._services[name] = dict(methods)

    def lookup(self, service_method: str) -> RPCMethod | str:
        """The method for ``service_method``, or Go's error text when there is none."""
        dot = service_method.rfind(".")
        if dot < 0:
            return "rpc: service/method request ill-formed: " + service_method
        service = self._services.get(service_method[:dot])
        if service is None:
            return "rpc: can't find service " + service_method
        method = service.get(service_method[dot + 1 :])
        if method is None:
            return "rpc: can't find method " + service_method
        return method

    async def serve(self, stream: ByteStream) -> None:
        """Serve one connection until the peer stops sending, then close the stream.

        Answers to requests already received are sent before closing. Cancelling ``serve``
        cancels the running handlers and closes the stream.
        """
        await _ServerConn(self, stream).run()


class _ServerConn:
    def __init__(self, server: RPCServer, stream: ByteStream) -> None:
        self.server = server
        self.stream = stream
        self.codec = RPCServerCodec(
            registry=server._registry,
            max_message_size=server._max_message_size,
            max_depth=server._max_depth,
        )
        self.handlers: asyncio.TaskGroup | None = None  # one task per request being handled
        self.sender: _Sender | None = None
        self.write_failed = False

    def _arg_type(self, header: RequestHeader) -> GoType | None:
        found = self.server.lookup(header.service_method)
        return None if isinstance(found, str) else found.arg_type

    async def run(self) -> None:
        self.sender = _Sender(self.stream, self._write_failed)
        try:
            # Leaving the group waits for the requests already received to be answered;
            # cancelling run() cancels them.
            async with asyncio.TaskGroup() as handlers:
                self.handlers = handlers
                try:
                    while True:
                        if self.codec.mid_message:
                            async with asyncio.timeout(self.server.partial_timeout):
                                data = await self.stream.read(self.server._read_size)
                        else:
                            data = await self.stream.read(self.server._read_size)
                        if not data:
                            break
                        self.codec.feed(data)
                        while (req := self.codec.next_request(self._arg_type)) is not None:
                            self._dispatch(req)
                except Exception as exc:  # bad bytes or a broken stream: stop reading
                    log.debug("rpc server: stop reading: %r", exc)
            await self.sender.flush_and_stop()
        finally:
            self.handlers = None
            await self.sender.cancel()
            await self.stream.close()

    def _write_failed(self, exc: BaseException) -> None:
        self.write_failed = True
        log.debug("rpc server: write failed: %r", exc)

    def _send(self, data: bytes) -> None:
        if self.sender is not None and not self.write_failed:
            self.sender.send(data)

    def _dispatch(self, req: RPCRequest) -> None:
        found = self.server.lookup(req.header.service_method)
        if isinstance(found, str):
            self._send(self.codec.encode_response(req.header, None, INVALID_REQUEST, found))
            return
        if req.error is not None:
            self._send(
                self.codec.encode_response(req.header, None, INVALID_REQUEST, str(req.error))
            )
            return
        assert self.handlers is not None
        self.handlers.create_task(self._handle(req, found))

    async def _handle(self, req: RPCRequest, method: RPCMethod) -> None:
        try:
            reply = await method.handler(req.arg)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            self._send(self.codec.encode_response(req.header, None, INVALID_REQUEST, message))
            return
        try:
            data = self.codec.encode_response(req.header, reply, method.reply_type)
        except (WireError, TypeError, ValueError) as exc:  # a reply that does not fit its type
            log.warning("rpc server: %s: cannot encode the reply: %s", req.header, exc)
            data = self.codec.encode_response(req.header, None, INVALID_REQUEST, f"reply: {exc}")
        self._send(data)
