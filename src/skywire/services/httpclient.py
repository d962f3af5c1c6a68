"""The HTTP session a service client uses: its own (opened lazily, closed by ``close``) or one
the caller lends (left open), and the one place where aiohttp's errors become the client's own.

A client made with ``pooled=False`` and no session makes each request on a connection of its
own with :mod:`skywire.wire.http1` and never imports aiohttp (~0.2 s of a process's start-up,
with the TLS contexts aiohttp builds on import): for a command that asks a service a few things
and exits (``skywire dmsg curl``). Its requests fail as a pooled client's do.

A request that cannot be made (refused, reset, timed out, a broken reply, an answer over
:data:`MAX_BODY` bytes) raises the error that the client's :meth:`HTTPClientBase.unreachable`
builds, a ``ConnectionError`` of the client's own family, so callers catch
``(TheServiceError, OSError, TimeoutError)`` and nothing wider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import urlencode, urlsplit

from skywire.wire import http1
from skywire.wire.stream import TcpStream

if TYPE_CHECKING:
    import aiohttp

MAX_BODY = 64 << 20
"""Bytes of one answer a client reads at most (a transport discovery's whole list of 250,000
transports fits); a longer answer is a broken reply: a hostile or broken service must not make
a client hold an unbounded body."""


class ServiceUnreachableError(ConnectionError):
    """A service could not be asked at all; the message says which request and why."""


def describe(exc: BaseException) -> str:
    """An exception as one readable phrase, never empty (some aiohttp errors have no text)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):
        return f"timed out{f' ({text})' if text else ''}"
    return f"{name}: {text}" if text else name


@dataclass(frozen=True, slots=True)
class Fetched:
    """One answer: its status, whole body and content type."""

    status: int
    body: bytes
    content_type: str = ""


class HTTPClientBase:
    """Base of the typed service clients; usable as ``async with``.

    ``unreachable`` builds the error a request that cannot be made raises (a client's own
    ``ConnectionError`` subclass); subclasses may override :meth:`unreachable` instead.
    ``timeout`` is the seconds one request may take; ``pooled=False`` (without a session):
    one connection per request, no aiohttp.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        timeout: float,
        *,
        unreachable: Callable[[str], Exception] | None = None,
        max_body: int = MAX_BODY,
        pooled: bool = True,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self.timeout = timeout
        self.pooled = pooled or session is not None
        self._unreachable = unreachable
        self.max_body = max_body

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def unreachable(self, detail: str) -> Exception:
        """The error raised when a request cannot be made; clients return their own type."""
        if self._unreachable is not None:
            return self._unreachable(detail)
        return ServiceUnreachableError(detail)

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fetched:
        """One request: its status and whole body. aiohttp's errors and time-outs, and a body
        over :attr:`max_body` bytes, come out as :meth:`unreachable` errors naming the request."""
        if not self.pooled:
            return await self._fetch_once(method, url, data, params, headers)
        import aiohttp

        try:
            async with self._http().request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                body = await self._read_body(resp)
                if body is None:  # the rest is not read: the connection is closed, not reused
                    raise self.unreachable(
                        f"{method} {url}: answer longer than {self.max_body} bytes"
                    )
                return Fetched(resp.status, body, resp.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.unreachable(f"{method} {url}: {describe(exc)}") from exc

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes | None:
        """The whole body, or None as soon as it is known to be over :attr:`max_body` bytes."""
        if resp.content_length is not None and resp.content_length > self.max_body:
            return None
        body = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > self.max_body:
                return None
        return bytes(body)

    def _http(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _fetch_once(
        self,
        method: str,
        url: str,
        data: bytes | None,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
    ) -> Fetched:
        """:meth:`fetch` on a connection of its own (``pooled=False``)."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise self.unreachable(f"{method} {url}: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.unreachable(f"{method} {url}: not an http(s) URL")
        target = parts.path or "/"
        query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
        if query:
            target += "?" + query
        try:
            async with asyncio.timeout(self.timeout):
                stream = await _connect(parts.scheme, parts.hostname, port)
                async with await http1.request(
                    stream,
                    method,
                    target,
                    host=parts.netloc.rpartition("@")[2],
                    headers=list((headers or {}).items()),
                    body=data,
                ) as resp:
                    body = await resp.read(self.max_body)
                    content_type = resp.header("content-type", "application/octet-stream")
                    return Fetched(
                        resp.status, body, content_type.partition(";")[0].strip().lower()
                    )
        except (OSError, TimeoutError) as exc:
            raise self.unreachable(f"{method} {url}: {describe(exc)}") from exc


async def _connect(scheme: str, host: str, port: int | None) -> TcpStream:
    """A TCP (TLS for ``https``, verified against the system's certificates) stream."""
    if scheme == "https":
        import ssl

        tls = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(host, port or 443, ssl=tls)
        return TcpStream(reader, writer)
    return await TcpStream.connect(host, port or 80)
