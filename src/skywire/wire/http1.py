"""One HTTP/1.1 request over a :class:`~skywire.wire.stream.ByteStream`, with ``h11``.

For a process that asks a few things and must start fast (``skywire dmsg curl``): one stream
per request (``Connection: close``), no pool, no redirects, no cookies. Its imports cost
``h11`` (~0.02 s), where aiohttp's cost ~0.2 s with the TLS contexts it builds on import, and
httpx's ~0.05 s plus ~0.1 s of certificates for every client it opens.

:func:`request` sends the request and reads the head; the caller reads the body from the
returned :class:`Response` (:meth:`Response.read` or ``async for chunk in response``) and
closes it (``async with``), which closes the stream. The peer breaking the protocol raises
:class:`HTTP1Error` (a ``ConnectionError``); the stream's own ``OSError`` and ``TimeoutError``
pass through. ``read_timeout`` bounds each read of the stream (``TimeoutError``); a limit on
the whole exchange is the caller's (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import h11

from skywire.wire.stream import ByteStream

__all__ = ["READ_CHUNK", "HTTP1Error", "Response", "request"]

READ_CHUNK = 1 << 16
"""Bytes asked of the stream at a time."""


class HTTP1Error(ConnectionError):
    """The exchange broke: a malformed, truncated or missing answer, or one over a limit."""


class Response:
    """An answer whose head is read: :attr:`status`, :attr:`reason`, :attr:`headers` (names in
    lower case); the body is read once, by :meth:`read` or by iterating (chunks of bytes)."""

    def __init__(
        self,
        conn: h11.Connection,
        stream: ByteStream,
        head: h11.Response,
        read_timeout: float | None = None,
    ) -> None:
        self._conn = conn
        self._stream = stream
        self._read_timeout = read_timeout
        self.status: int = head.status_code
        self.reason: str = head.reason.decode("latin-1")
        self.headers: tuple[tuple[str, str], ...] = tuple(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers
        )
        self._done = False

    def header(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (any case); ``default`` when there is none."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), default)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        """The next non-empty piece of the body."""
        while not self._done:
            event = await _next_event(self._conn, self._stream, self._read_timeout)
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self._done = True
            else:
                raise HTTP1Error(f"unexpected {type(event).__name__} in a response body")
        raise StopAsyncIteration

    async def read(self, limit: int | None = None) -> bytes:
        """The whole (rest of the) body; :class:`HTTP1Error` as soon as it is known to be over
        ``limit`` bytes (the rest is not read: close the response)."""
        length = self.header("content-length")
        if limit is not None and length.isdigit() and int(length) > limit:
            raise HTTP1Error(f"answer longer than {limit} bytes")
        body = bytearray()
        async for chunk in self:
            body += chunk
            if limit is not None and len(body) > limit:
                raise HTTP1Error(f"answer longer than {limit} bytes")
        return bytes(body)

    async def aclose(self) -> None:
        """Close the stream (twice is harmless)."""
        self._done = True
        await self._stream.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def request(
    stream: ByteStream,
    method: str,
    target: str,
    *,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    read_timeout: float | None = None,
) -> Response:
    """Send ``method target`` (``Host: host``, then ``headers``, then ``body``) on ``stream``
    and read the answer's head. The stream belongs to the returned response; on a failure here
    it is closed."""
    conn = h11.Connection(h11.CLIENT)
    sent = [("Host", host), *headers, ("Connection", "close")]
    if body is not None:
        sent.append(("Content-Length", str(len(body))))
    try:
        try:
            data = conn.send(h11.Request(method=method, target=target, headers=sent))
            if body:
                data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise HTTP1Error(f"cannot send this request: {exc}") from exc
        try:
            await stream.write(data)
        except OSError:
            # the peer may have answered early (e.g. 413) and closed: prefer its answer
            with contextlib.suppress(HTTP1Error, OSError):
                head = await _read_head(conn, stream, read_timeout)
                return Response(conn, stream, head, read_timeout)
            raise
        head = await _read_head(conn, stream, read_timeout)
        return Response(conn, stream, head, read_timeout)
    except BaseException:
        await stream.close()
        raise


async def _read_head(
    conn: h11.Connection, stream: ByteStream, read_timeout: float | None
) -> h11.Response:
    while True:
        event = await _next_event(conn, stream, read_timeout)
        if isinstance(event, h11.Response):
            return event
        if not isinstance(event, h11.InformationalResponse):
            raise HTTP1Error(f"unexpected {type(event).__name__} instead of a response")


async def _next_event(
    conn: h11.Connection, stream: ByteStream, read_timeout: float | None
) -> h11.Event:
    """The next event of the answer, reading from the stream as h11 needs."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HTTP1Error(f"malformed or truncated answer: {exc}") from exc
        if event is h11.NEED_DATA:
            async with asyncio.timeout(read_timeout):
                data = await stream.read(READ_CHUNK)
            if not data and conn.their_state is h11.SEND_RESPONSE and not conn.trailing_data[0]:
                raise HTTP1Error("the peer closed without answering")
            conn.receive_data(data)
            continue
        if event is h11.PAUSED:  # not reached for a client that sends one request
            raise HTTP1Error("the peer sent more than one answer")
        assert isinstance(event, h11.Event)
        return event
