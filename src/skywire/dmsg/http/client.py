"""The client side of dmsghttp: an ``httpx`` transport that speaks HTTP/1.1 with ``h11``.

``httpx.AsyncClient(transport=DmsgTransport(dial))`` fetches ``dmsg://`` URLs. Every request
dials a **new** stream (no connection reuse, as upstream), writes the request with
``Host: <pk-hex>:<port>``, reads the response, and closes the stream once the body is done.
Every failure is an ``httpx.TransportError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

import h11
import httpx

from skywire.dmsg.http.transport import READ_CHUNK
from skywire.dmsg.http.url import DmsgURL, DmsgURLError
from skywire.wire.stream import ByteStream, Dialer

__all__ = ["DmsgTransport", "fetch", "fetch_stream"]

log = logging.getLogger(__name__)


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
