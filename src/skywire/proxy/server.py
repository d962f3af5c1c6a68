"""The resolving proxy's listener: SOCKS5 and HTTP proxy on one TCP port.

The first byte tells the two apart (``0x05`` is SOCKS5, anything else is an HTTP request).
The name asked for is parsed with :mod:`skywire.proxy.hostname`; the :class:`Connector` of its
suffix opens a stream to it; bytes are then copied both ways. With a vhost in the name, every
request's ``Host`` header is rewritten on the way in, so a name-based backend serves the right
site. Every failure is answered with the SOCKS5 reply code or HTTP status of its
:class:`~skywire.proxy.errors.ProxyError`, with a readable body in HTTP mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from skywire.proxy.errors import (
    NotOverlayError,
    NotReadyError,
    ProxyError,
    ReplyCode,
    Socks5Error,
    UnreachableError,
)
from skywire.proxy.hostname import DEFAULT_ALIAS, ProxyTarget, Suffix, parse
from skywire.proxy.httpreq import (
    HTTPRequestError,
    RequestHead,
    RequestRewriter,
    error_response,
    parse_head,
    proxy_request,
)
from skywire.proxy.socks5 import ConnectRequested, DataReceived, Socks5Server, Socks5State
from skywire.wire.errors import WireError
from skywire.wire.stream import ByteStream, TcpStream
from skywire.wire.tasks import Leave, TaskTree, TaskTreeClosedError, leaving

__all__ = ["Connector", "ProxyServer", "ProxyStats"]

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
STREAM_ERRORS = (ConnectionError, OSError, WireError, EOFError)


class Connector(Protocol):
    """Opens a stream to what a resolver name asks for; raises a ``ProxyError`` subclass
    that says why not."""

    async def open(self, target: ProxyTarget) -> ByteStream: ...


@dataclass
class ProxyStats:
    accepted: int = 0
    served: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def failure(self, exc: ProxyError) -> None:
        name = type(exc).__name__
        self.failed[name] = self.failed.get(name, 0) + 1


class ProxyServer:
    """``async with ProxyServer({Suffix.DMSG: connector}, port=4445) as proxy``.

    The listener binds at start, whatever the state of the overlay behind the connectors
    (they wait, bounded, for it). One task tree owns every connection.
    """

    def __init__(
        self,
        connectors: Mapping[Suffix, Connector],
        *,
        host: str = "127.0.0.1",
        port: int = 4445,
        alias: str = DEFAULT_ALIAS,
        dial_timeout: float = 30.0,
        handshake_timeout: float = 10.0,
        name: str = "proxy",
    ) -> None:
        self.connectors = dict(connectors)
        self.host = host
        self.port = port
        self.alias = alias
        self.dial_timeout = dial_timeout
        self.handshake_timeout = handshake_timeout
        self.name = name
        self.stats = ProxyStats()
        self._tasks = TaskTree(f"{name}-{port}", log)
        self._server: asyncio.Server | None = None
        self._clients: set[TcpStream] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def active(self) -> int:
        """Client connections being served."""
        return len(self._clients)

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
        await self._tasks.start()
        try:
            self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        except BaseException:
            await self._tasks.close()
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("%s listening on %s (SOCKS5 and HTTP proxy)", self.name, self.address)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # no wait_closed(): the connections are the tree's to end
        await self._tasks.close()

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self._tasks.spawn(self._serve(TcpStream(reader, writer)), "proxy-client")
        except TaskTreeClosedError:
            writer.close()

    # ------------------------------------------------------------------ one client
    async def _serve(self, client: TcpStream) -> None:
        self.stats.accepted += 1
        self._clients.add(client)
        try:
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    first = await client.read(CHUNK)
            except (TimeoutError, *STREAM_ERRORS):
                return
            if not first:
                return
            if first[0] == 5:
                await self._socks5(client, first)
            else:
                await self._http(client, first)
        finally:
            self._clients.discard(client)
            with contextlib.suppress(*STREAM_ERRORS):
                await client.close()

    def _target(self, name: str) -> tuple[ProxyTarget, Connector]:
        target = parse(name, alias=self.alias)
        connector = self.connectors.get(target.suffix)
        if connector is None:
            raise NotOverlayError(f"this proxy does not serve .{target.suffix} names")
        return target, connector

    async def _open(self, name: str) -> tuple[ProxyTarget, ByteStream]:
        target, connector = self._target(name)
        try:
            async with asyncio.timeout(self.dial_timeout):
                return target, await connector.open(target)
        except TimeoutError:
            raise NotReadyError(f"{name}: no stream within {self.dial_timeout:g} s") from None
        except ProxyError:
            raise
        except STREAM_ERRORS as exc:
            raise UnreachableError(f"{name}: {exc or type(exc).__name__}") from exc

    async def _socks5(self, client: TcpStream, first: bytes) -> None:
        core = Socks5Server()
        data = first
        request: ConnectRequested | None = None
        try:
            async with asyncio.timeout(self.handshake_timeout):
                while request is None:
                    for event in core.receive_data(data):
                        if isinstance(event, ConnectRequested):
                            request = event
                    if out := core.data_to_send():
                        await client.write(out)
                    if request is not None:
                        break
                    if core.state is Socks5State.CLOSED:
                        return
                    data = await client.read(CHUNK)
                    if not data:
                        return
        except Socks5Error as exc:
            self.stats.failure(exc)
            log.debug("%s: SOCKS5 refused: %s", self.name, exc)
            with contextlib.suppress(Socks5Error):
                core.reply(exc.reply)
            with contextlib.suppress(*STREAM_ERRORS):
                await client.write(core.data_to_send())
            return
        except (TimeoutError, *STREAM_ERRORS):
            return
        name = f"{request.host}:{request.port}"
        try:
            target, remote = await self._open(name)
        except ProxyError as exc:
            self._failed(name, exc)
            core.reply(exc.reply)
            with contextlib.suppress(*STREAM_ERRORS):
                await client.write(core.data_to_send())
            return
        early = b"".join(
            e.data for e in core.reply(ReplyCode.SUCCEEDED) if isinstance(e, DataReceived)
        )
        try:
            await client.write(core.data_to_send())
        except STREAM_ERRORS:
            await _close(remote)
            return
        await self._pipe(client, remote, early, _rewriter(target))

    async def _http(self, client: TcpStream, first: bytes) -> None:
        buf = bytearray(first)
        try:
            async with asyncio.timeout(self.handshake_timeout):
                while (parsed := parse_head(buf)) is None:
                    data = await client.read(CHUNK)
                    if not data:
                        return
                    buf += data
            head, used = parsed
            request = proxy_request(head)
        except HTTPRequestError as exc:
            self.stats.failure(exc)
            await _answer(client, exc.status, f"bad proxy request: {exc}")
            return
        except (TimeoutError, *STREAM_ERRORS):
            return
        rest = bytes(buf[used:])
        try:
            target, remote = await self._open(request.host)
        except ProxyError as exc:
            self._failed(request.host, exc)
            await _answer(client, exc.status, str(exc))
            return
        if request.tunnel:
            try:
                await client.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            except STREAM_ERRORS:
                await _close(remote)
                return
            await self._pipe(client, remote, rest, _rewriter(target))
            return
        # The whole first request goes through a rewriter that puts it in origin form (and
        # the vhost in Host); it asks the backend to close after answering, and what the
        # client sends after that request is dropped.
        vhost = _host_editor(target)

        def forward(h: RequestHead) -> RequestHead:
            origin = proxy_request(h).head
            assert origin is not None
            return vhost(origin)

        await self._pipe(client, remote, bytes(buf), RequestRewriter(forward, once=True))

    def _failed(self, name: str, exc: ProxyError) -> None:
        self.stats.failure(exc)
        log.info("%s: %s: %s", self.name, type(exc).__name__, exc)

    async def _pipe(
        self,
        client: ByteStream,
        remote: ByteStream,
        early: bytes,
        rewriter: RequestRewriter | None,
    ) -> None:
        """Copy both ways until either side ends, then close both."""
        self.stats.served += 1

        async def upstream() -> None:
            data = early
            if rewriter is not None and data:
                data = rewriter.receive_data(data)
            if data:
                await remote.write(data)
            while chunk := await client.read(CHUNK):
                if rewriter is not None:
                    chunk = rewriter.receive_data(chunk)
                if chunk:
                    await remote.write(chunk)

        async def downstream() -> None:
            while chunk := await remote.read(CHUNK):
                await client.write(chunk)

        try:
            async with leaving() as tg:
                ends = [tg.create_task(_quiet(upstream())), tg.create_task(_quiet(downstream()))]
                await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
                await _close(remote)
                await _close(client)
                raise Leave  # the other direction is cancelled
        finally:
            await _close(remote)


def _rewriter(target: ProxyTarget) -> RequestRewriter | None:
    """Tunnels carry bytes untouched, unless a vhost asks for each Host to be rewritten."""
    return RequestRewriter(_host_editor(target)) if target.vhost else None


def _host_editor(target: ProxyTarget) -> Callable[[RequestHead], RequestHead]:
    def edit(head: RequestHead) -> RequestHead:
        if target.vhost:
            return head.with_header("Host", target.vhost)
        return head

    return edit


async def _quiet(coro: Coroutine[Any, Any, None]) -> None:
    """One direction of a pipe: ends quietly when its stream breaks or a request is bad."""
    try:
        await coro
    except (HTTPRequestError, *STREAM_ERRORS) as exc:
        log.debug("proxy pipe ended: %r", exc)


async def _close(stream: ByteStream) -> None:
    with contextlib.suppress(*STREAM_ERRORS):
        await stream.close()


async def _answer(client: ByteStream, status: int, message: str) -> None:
    with contextlib.suppress(*STREAM_ERRORS):
        await client.write(error_response(status, message))
